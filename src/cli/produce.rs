//! `sluice produce`: send stdin lines (or one `--value`) as messages.

use std::io::BufRead;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;

use crate::client::records::{encode_batch, parse_compression, NewRecord};
use crate::client::{Acks, Client};
use crate::limits;

/// Send messages to a topic: one per stdin line, or the single --value.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    /// Key for every message (its hash picks the partition unless --partition is given).
    #[arg(long)]
    pub key: Option<String>,
    /// Partition to write to (default: by key hash, else round-robin per batch).
    #[arg(long)]
    pub partition: Option<i32>,
    /// 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: Acks,
    /// Send this single value instead of reading stdin.
    #[arg(long)]
    pub value: Option<String>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
}

/// Produces from stdin (or `--value`).
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let n = super::block_on(run_from(args, stdin.lock()))?;
    eprintln!("Produced {n} messages.");
    Ok(())
}

/// Produces the lines of `input` (or `--value`); returns how many messages were sent.
pub async fn run_from(args: ProduceArgs, input: impl BufRead) -> anyhow::Result<u64> {
    let compression = parse_compression(&args.compression).map_err(anyhow::Error::msg)?;
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    let topic = client.topic(&args.topic).await?;
    let count = topic.partitions.len();
    if count == 0 {
        bail!("topic '{}' has no partitions", args.topic);
    }
    if let Some(p) = args.partition {
        if p < 0 || p as usize >= count {
            bail!(
                "topic '{}' has no partition {p} (it has {count})",
                args.topic
            );
        }
    }
    let key = args
        .key
        .as_ref()
        .map(|k| Bytes::from(k.clone().into_bytes()));
    let fixed_partition = args
        .partition
        .or_else(|| key.as_ref().map(|k| super::partition_for_key(k, count)));
    let mut next_rr = 0usize;
    let mut sent = 0u64;
    let mut batch: Vec<NewRecord> = Vec::new();

    let mut flush = |batch: Vec<NewRecord>| {
        let partition = fixed_partition.unwrap_or_else(|| {
            let p = (next_rr % count) as i32;
            next_rr += 1;
            p
        });
        (batch, partition)
    };

    let lines: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>>> = match &args.value {
        Some(v) => Box::new(std::iter::once(Ok(v.clone().into_bytes()))),
        None => Box::new(read_lines(input)),
    };
    for line in lines {
        let line = line.context("cannot read stdin")?;
        batch.push(NewRecord {
            key: key.clone(),
            value: Some(Bytes::from(line)),
            timestamp_ms: now_ms(),
        });
        if batch.len() >= limits::CLI_PRODUCE_BATCH_RECORDS_MAX {
            let (b, p) = flush(std::mem::take(&mut batch));
            sent += send(&client, &args.topic, p, &b, args.acks, compression).await?;
        }
    }
    if !batch.is_empty() {
        let (b, p) = flush(batch);
        sent += send(&client, &args.topic, p, &b, args.acks, compression).await?;
    }
    Ok(sent)
}

async fn send(
    client: &Client,
    topic: &str,
    partition: i32,
    batch: &[NewRecord],
    acks: Acks,
    compression: kafka_protocol::records::Compression,
) -> anyhow::Result<u64> {
    let encoded = encode_batch(batch, compression)?;
    client.produce(topic, partition, encoded, acks).await?;
    Ok(batch.len() as u64)
}

/// Lines without their trailing newline, each bounded by `CLI_PRODUCE_LINE_BYTES_MAX`.
fn read_lines(mut input: impl BufRead) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    std::iter::from_fn(move || {
        let mut line = Vec::new();
        let mut limited =
            std::io::Read::take(&mut input, limits::CLI_PRODUCE_LINE_BYTES_MAX as u64 + 1);
        match limited.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                } else if line.len() > limits::CLI_PRODUCE_LINE_BYTES_MAX {
                    return Some(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "a line is longer than {} bytes",
                            limits::CLI_PRODUCE_LINE_BYTES_MAX
                        ),
                    )));
                }
                Some(Ok(line))
            }
            Err(e) => Some(Err(e)),
        }
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lines_are_split_and_bounded() {
        let input = b"a\r\nbb\n\nccc".as_slice();
        let lines: Vec<Vec<u8>> = read_lines(input).map(|l| l.unwrap()).collect();
        assert_eq!(
            lines,
            vec![b"a".to_vec(), b"bb".to_vec(), b"".to_vec(), b"ccc".to_vec()]
        );
        let long = vec![b'x'; limits::CLI_PRODUCE_LINE_BYTES_MAX + 10];
        let mut it = read_lines(long.as_slice());
        assert!(it.next().unwrap().is_err());
    }
}
