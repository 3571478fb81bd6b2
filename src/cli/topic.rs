//! `sluice topic create|list|describe|delete|add-partitions`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::client::Client;

/// Manage topics on any Kafka-compatible broker.
#[derive(Debug, Args)]
pub struct TopicArgs {
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, global = true, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: TopicCommand,
}

/// Topic subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// Topic config as key=value (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topic names, one per line.
    List,
    /// Show partitions, leaders and configs of a topic.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Raise the partition count of a topic.
    AddPartitions {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: i32,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

/// Runs a topic subcommand, printing to stdout.
pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out))
}

/// Runs a topic subcommand, writing human output to `out`.
pub async fn run_to(args: TopicArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            if partitions < 1 {
                bail!("--partitions must be at least 1");
            }
            client
                .create_topic(&name, partitions, replication_factor, &configs)
                .await?;
            writeln!(out, "Created topic {name} with {partitions} partitions.")?;
        }
        TopicCommand::List => {
            for t in client.metadata(None).await? {
                writeln!(out, "{}", t.name)?;
            }
        }
        TopicCommand::Describe { name } => {
            let t = client
                .metadata(Some(std::slice::from_ref(&name)))
                .await?
                .into_iter()
                .find(|t| t.name == name)
                .with_context(|| format!("topic '{name}' does not exist"))?;
            let rf = t.partitions.first().map(|p| p.replicas.len()).unwrap_or(0);
            let configs = match client.describe_topic_configs(&name).await {
                Ok(cs) => cs
                    .into_iter()
                    .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(","),
                Err(e) => format!("(unavailable: {e})"),
            };
            writeln!(
                out,
                "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                t.name,
                t.topic_id,
                t.partitions.len(),
                rf,
                configs
            )?;
            for p in &t.partitions {
                writeln!(
                    out,
                    "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                    t.name,
                    p.partition,
                    p.leader,
                    join(&p.replicas),
                    join(&p.isr)
                )?;
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            writeln!(out, "Deleted topic {name}.")?;
        }
        TopicCommand::AddPartitions { name, partitions } => {
            client.create_partitions(&name, partitions).await?;
            writeln!(out, "Topic {name} now has {partitions} partitions.")?;
        }
    }
    Ok(())
}

fn join(v: &[i32]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
