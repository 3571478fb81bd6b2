//! The `sluice` command line: the broker, admin and quick tools, the load generator.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::cli;
use sluice::config::{BrokerConfig, ServeArgs};
use sluice::server::Broker;

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Kafka-compatible thread-per-core message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per tool; each carries its clap `Args` and has a `run`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Create, list, describe, delete topics; add partitions.
    Topic(cli::topic::TopicArgs),
    /// List, describe (lag), delete consumer groups; reset their offsets.
    Group(cli::group::GroupArgs),
    /// Send messages (stdin lines or --value) to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Print messages of a topic, one value per line.
    Consume(cli::consume::ConsumeArgs),
    /// Load generator with latency histograms (embedded broker unless --bootstrap).
    Bench(Box<cli::bench::BenchArgs>),
}

/// Logs go to stderr; RUST_LOG overrides the default level (info for the broker, warn for tools).
fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" });
    let result = match cli.command {
        Command::Serve(a) => serve(a),
        Command::Topic(a) => cli::topic::run(a),
        Command::Group(a) => cli::group::run(a),
        Command::Produce(a) => cli::produce::run(a),
        Command::Consume(a) => cli::consume::run(a),
        Command::Bench(a) => cli::bench::run(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
