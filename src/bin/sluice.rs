//! The `sluice` command line.

use clap::{Parser, Subcommand};

use sluice::config::{BrokerConfig, ServeArgs};
use sluice::server::Broker;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Kafka-compatible thread-per-core message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it starts afterwards);
/// [`wait_for_signal`] then receives them synchronously.
fn block_signals() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = BrokerConfig::from_serve_args(&args)?;
    let set = block_signals();
    let broker = Broker::start(config)?;
    let sig = wait_for_signal(&set);
    tracing::info!(signal = sig, "shutting down");
    broker.shutdown()
}

fn main() {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve(a),
    };
    if let Err(e) = result {
        eprintln!("sluice: {e:#}");
        std::process::exit(1);
    }
}
