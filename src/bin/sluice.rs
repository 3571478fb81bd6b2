//! The `sluice` command line: admin and quick tools, the load generator, (and the broker).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::cli;

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Kafka-compatible thread-per-core message broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per tool; each carries its clap `Args` and has a `run`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, delete topics; add partitions.
    Topic(cli::topic::TopicArgs),
    /// Send messages (stdin lines or --value) to a topic.
    Produce(cli::produce::ProduceArgs),
    /// Print messages of a topic, one value per line.
    Consume(cli::consume::ConsumeArgs),
    /// Load generator with latency histograms (embedded broker unless --bootstrap).
    Bench(Box<cli::bench::BenchArgs>),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Topic(a) => cli::topic::run(a),
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
