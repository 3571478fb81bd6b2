//! `sluice cluster status`: brokers, controller, and the leadership and replication state of
//! every partition, from Metadata (works against any Kafka-compatible cluster).

use std::collections::BTreeMap;
use std::io::Write;

use clap::{Args, Subcommand};
use kafka_protocol::messages::MetadataRequest;

use crate::client::Client;

/// Inspect a cluster.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, global = true, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers (with the partitions each leads and holds), the controller, and every partition
    /// that has no leader or is under-replicated (ISR smaller than its replicas).
    Status {
        /// List every partition, not only the unhealthy ones.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out))
}

pub async fn run_to(args: ClusterArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    let ClusterCommand::Status { all } = args.command;
    let conn = client.any_conn().await?;
    let resp = conn.call(&MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false)).await?;
    let cluster_id = resp.cluster_id.as_ref().map(|s| s.to_string()).unwrap_or_default();
    writeln!(out, "cluster id: {cluster_id}")?;
    writeln!(out, "controller: {}", if resp.controller_id.0 >= 0 { resp.controller_id.0.to_string() } else { "none".into() })?;
    let mut leads: BTreeMap<i32, usize> = BTreeMap::new();
    let mut holds: BTreeMap<i32, usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let (mut total, mut leaderless, mut under) = (0, 0, 0);
    for t in &resp.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        for p in &t.partitions {
            total += 1;
            let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
            let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            for r in &replicas {
                *holds.entry(*r).or_default() += 1;
            }
            let state = if p.leader_id.0 < 0 {
                leaderless += 1;
                "NO LEADER"
            } else if isr.len() < replicas.len() {
                *leads.entry(p.leader_id.0).or_default() += 1;
                under += 1;
                "UNDER-REPLICATED"
            } else {
                *leads.entry(p.leader_id.0).or_default() += 1;
                "ok"
            };
            if all || state != "ok" {
                rows.push((name.clone(), p.partition_index, p.leader_id.0, p.leader_epoch, replicas, isr, state));
            }
        }
    }
    writeln!(out, "{:<6} {:<28} {:>8} {:>8}", "broker", "address", "leaders", "replicas")?;
    let mut brokers: Vec<_> = resp.brokers.iter().collect();
    brokers.sort_by_key(|b| b.node_id.0);
    for b in brokers {
        let id = b.node_id.0;
        let mark = if id == resp.controller_id.0 { " (controller)" } else { "" };
        writeln!(out, "{:<6} {:<28} {:>8} {:>8}{mark}", id, format!("{}:{}", b.host.as_str(), b.port), leads.get(&id).unwrap_or(&0), holds.get(&id).unwrap_or(&0))?;
    }
    writeln!(out, "partitions: {total}, without leader: {leaderless}, under-replicated: {under}")?;
    if !rows.is_empty() {
        writeln!(out, "{:<24} {:>9} {:>6} {:>6} {:<12} {:<12} state", "topic", "partition", "leader", "epoch", "replicas", "isr")?;
        let ids = |v: &[i32]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        for (t, p, l, e, r, i, s) in rows {
            writeln!(out, "{t:<24} {p:>9} {l:>6} {e:>6} {:<12} {:<12} {s}", ids(&r), ids(&i))?;
        }
    }
    Ok(())
}
