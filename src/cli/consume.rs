//! `sluice consume`: print message values, one per line.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::client::records::{decode_records, next_offset_after};
use crate::client::{fetch_on, Client, ClientError};

/// Read messages from a topic and print their values, one per line.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at the earliest offset (default: the end, only new messages).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (needs --partition, or applies to every partition).
    #[arg(long)]
    pub offset: Option<i64>,
    /// Exit after printing this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit when no message arrives for this long.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Print "key<TAB>value" instead of the value alone.
    #[arg(long)]
    pub print_key: bool,
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
}

/// Consumes to stdout.
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out)).map(|_| ())
}

/// Consumes, writing each message as a line to `out`; returns how many were written.
pub async fn run_to(args: ConsumeArgs, out: &mut impl Write) -> anyhow::Result<u64> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    let topic = client.topic(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            if !topic.partitions.iter().any(|x| x.partition == p) {
                bail!(
                    "topic '{}' has no partition {p} (it has {})",
                    args.topic,
                    topic.partitions.len()
                );
            }
            vec![p]
        }
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    // Starting offsets.
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    for &p in &partitions {
        let off = match (args.offset, args.from_beginning) {
            (Some(o), _) => o,
            (None, true) => client.list_offset(&args.topic, p, -2).await?,
            (None, false) => client.list_offset(&args.topic, p, -1).await?,
        };
        offsets.insert(p, off);
    }
    // Group partitions by leader so one Fetch serves all partitions on a broker.
    let mut by_leader: HashMap<SocketAddr, Vec<i32>> = HashMap::new();
    for &p in &partitions {
        let conn = client.leader(&args.topic, p).await?;
        by_leader.entry(conn.addr()).or_default().push(p);
    }
    let groups: Vec<Vec<i32>> = by_leader.into_values().collect();
    let max_wait_ms: i32 = if groups.len() > 1 { 100 } else { 500 };

    let mut printed = 0u64;
    let mut last_message = Instant::now();
    loop {
        if let Some(max) = args.max_messages {
            if printed >= max {
                break;
            }
        }
        if let Some(t) = args.timeout_ms {
            if last_message.elapsed() >= Duration::from_millis(t) {
                break;
            }
        }
        let wait = match args.timeout_ms {
            Some(t) => (t.saturating_sub(last_message.elapsed().as_millis() as u64) as i32)
                .clamp(1, max_wait_ms),
            None => max_wait_ms,
        };
        for group in &groups {
            let Some(&first) = group.first() else {
                continue;
            };
            let conn = client.leader(&args.topic, first).await?;
            let parts: Vec<(String, i32, i64)> = group
                .iter()
                .map(|p| (args.topic.clone(), *p, offsets.get(p).copied().unwrap_or(0)))
                .collect();
            for pf in fetch_on(&conn, &parts, wait, 1).await? {
                if pf.error_code != 0 {
                    if pf.error_code
                        == kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code()
                    {
                        return Err(ClientError::UnknownTopic(args.topic.clone()).into());
                    }
                    ClientError::check(
                        "Fetch",
                        || format!("{}-{}", pf.topic, pf.partition),
                        pf.error_code,
                        None,
                    )?;
                }
                let from = offsets.get(&pf.partition).copied().unwrap_or(0);
                let after = next_offset_after(&pf.records);
                let mut stopped_early = false;
                for r in decode_records(pf.records, from)? {
                    if let Some(max) = args.max_messages {
                        if printed >= max {
                            stopped_early = true;
                            break;
                        }
                    }
                    if args.print_key {
                        out.write_all(r.key.as_deref().unwrap_or(b""))?;
                        out.write_all(b"\t")?;
                    }
                    out.write_all(r.value.as_deref().unwrap_or(b""))?;
                    out.write_all(b"\n")?;
                    printed += 1;
                    last_message = Instant::now();
                    offsets.insert(pf.partition, r.offset + 1);
                }
                // Skip past batches that held nothing to print (control records).
                if let (false, Some(next)) = (stopped_early, after) {
                    let cur = offsets.entry(pf.partition).or_insert(next);
                    *cur = (*cur).max(next);
                }
            }
        }
        out.flush()?;
    }
    Ok(printed)
}
