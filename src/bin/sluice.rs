//! The `sluice` command line: the broker, admin and quick tools, the load generator.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::cli;
use sluice::config::{LogFormat, LogSettings, ServeArgs, ServeConfig};
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
    /// Cluster status: brokers, controller, partitions without leader or under-replicated.
    Cluster(cli::cluster::ClusterArgs),
    /// Move partition replicas between brokers (reassign); list reassignments in progress.
    Partition(cli::partition::PartitionArgs),
    /// Send messages (stdin lines or --value) to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Print messages of a topic, one value per line.
    Consume(cli::consume::ConsumeArgs),
    /// Load generator with latency histograms (embedded broker unless --bootstrap).
    Bench(Box<cli::bench::BenchArgs>),
    /// Show the broker configuration.
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration of `sluice serve` with the same flags (and the same
    /// SLUICE_* environment), as a TOML file `--config` accepts, each value with its source.
    Print(ServeArgs),
}

/// Logs go to stderr. The filter: `settings.level` when set (`--log-level`, SLUICE_LOG_LEVEL,
/// `log.level`), else RUST_LOG, else `default_level`. Human-readable or JSON lines.
fn init_tracing(settings: &LogSettings, default_level: &str) {
    let filter = match settings.level.as_deref() {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
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

fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let set = block_signals();
    let broker = Broker::start(config.broker)?;
    let sig = wait_for_signal(&set);
    tracing::info!(signal = sig, "shutting down");
    broker.shutdown()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => match ServeConfig::load(&a, std::env::vars_os()) {
            Ok(config) => {
                init_tracing(&config.log, "info");
                serve(config)
            }
            Err(e) => Err(e.into()),
        },
        Command::Config(ConfigArgs { command: ConfigCommand::Print(a) }) => {
            ServeConfig::load(&a, std::env::vars_os()).map(|c| print!("{}", c.to_toml())).map_err(Into::into)
        }
        command => {
            init_tracing(&LogSettings::default(), "warn");
            match command {
                Command::Topic(a) => cli::topic::run(a),
                Command::Group(a) => cli::group::run(a),
                Command::Cluster(a) => cli::cluster::run(a),
                Command::Partition(a) => cli::partition::run(a),
                Command::Produce(a) => cli::produce::run(a),
                Command::Consume(a) => cli::consume::run(a),
                Command::Bench(a) => cli::bench::run(*a),
                Command::Serve(_) | Command::Config(_) => Ok(()), // handled above
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
