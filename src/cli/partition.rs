//! `sluice partition reassign|reassignments`: move a partition's replicas (Kafka's
//! AlterPartitionReassignments / ListPartitionReassignments, sent to the controller).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;

/// Move partition replicas between brokers of a cluster.
#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, global = true, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: PartitionCommand,
}

#[derive(Debug, Subcommand)]
pub enum PartitionCommand {
    /// Move a partition to a new replica list (the first is the preferred leader); waits until
    /// the move is complete unless --no-wait.
    Reassign {
        topic: String,
        #[arg(long)]
        partition: i32,
        /// Target replicas as broker ids, e.g. 2,3,4.
        #[arg(long, value_delimiter = ',', required = true)]
        replicas: Vec<i32>,
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
    },
    /// List reassignments in progress.
    Reassignments,
}

pub fn run(args: PartitionArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out))
}

pub async fn run_to(args: PartitionArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    let conn = client.any_conn().await?;
    match args.command {
        PartitionCommand::Reassign { topic, partition, replicas, no_wait, timeout_s } => {
            let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(30_000).with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(partition)
                    .with_replicas(Some(replicas.iter().map(|b| BrokerId(*b)).collect()))])]);
            let resp = conn.call(&req).await?;
            if resp.error_code != 0 {
                bail!("reassignment refused (error {}): {}", resp.error_code, resp.error_message.map(|m| m.to_string()).unwrap_or_default());
            }
            for t in &resp.responses {
                for p in &t.partitions {
                    if p.error_code != 0 {
                        bail!("{topic}-{partition}: error {}: {}", p.error_code, p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default());
                    }
                }
            }
            writeln!(out, "reassignment of {topic}-{partition} to {replicas:?} started")?;
            if no_wait {
                return Ok(());
            }
            let deadline = Instant::now() + Duration::from_secs(timeout_s);
            loop {
                let list = conn.call(&ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(None)).await?;
                let ongoing = list.topics.iter().any(|t| t.name.0.as_str() == topic && t.partitions.iter().any(|p| p.partition_index == partition));
                if !ongoing {
                    writeln!(out, "reassignment of {topic}-{partition} complete")?;
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("reassignment of {topic}-{partition} still in progress after {timeout_s} s");
                }
                compio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        PartitionCommand::Reassignments => {
            let list = conn.call(&ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(None)).await?;
            writeln!(out, "{:<24} {:>9} {:<12} {:<12} {:<12}", "topic", "partition", "replicas", "adding", "removing")?;
            let ids = |v: &[BrokerId]| v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",");
            for t in &list.topics {
                for p in &t.partitions {
                    writeln!(out, "{:<24} {:>9} {:<12} {:<12} {:<12}", t.name.0.as_str(), p.partition_index, ids(&p.replicas), ids(&p.adding_replicas), ids(&p.removing_replicas))?;
                }
            }
            Ok(())
        }
    }
}
