//! `sluice group list|describe|delete|reset-offsets`, like kafka-consumer-groups.sh.
//!
//! Speaks only the Kafka protocol (FindCoordinator, ListGroups, DescribeGroups, OffsetFetch,
//! OffsetCommit, DeleteGroups, ListOffsets), so it works against any Kafka-compatible broker.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::client::{Client, ClientError};

/// Manage consumer groups on any Kafka-compatible broker.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Brokers to bootstrap from: `host:port[,host:port...]`, the first that answers is used.
    #[arg(long, global = true, default_value = super::DEFAULT_BOOTSTRAP, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: String,
    #[command(subcommand)]
    pub command: GroupCommand,
}

/// Group subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups: id, state, protocol type.
    List,
    /// Per partition: committed offset, log end offset, lag, and the member that owns it.
    Describe { group: String },
    /// Delete a group (it must have no members) and its committed offsets.
    Delete { group: String },
    /// Compute new committed offsets for a group; print them, and commit them with --execute.
    /// The group must have no active members.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
pub struct ResetArgs {
    pub group: String,
    /// Topic whose partitions are reset (repeatable); all its partitions.
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    #[arg(long)]
    pub to_earliest: bool,
    #[arg(long)]
    pub to_latest: bool,
    /// An absolute offset (clamped to the partition's earliest..latest).
    #[arg(long, allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// The first offset at or after this time: YYYY-MM-DDTHH:MM:SS[.mmm][Z|±HH:MM] (UTC without a zone).
    #[arg(long)]
    pub to_datetime: Option<String>,
    /// Move the committed offset by N (negative = back), clamped.
    #[arg(long, allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it: dry run, nothing changes).
    #[arg(long)]
    pub execute: bool,
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out))
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_owned()))
}

fn check(api: &'static str, what: impl FnOnce() -> String, code: i16) -> Result<(), ClientError> {
    ClientError::check(api, what, code, None)
}

/// Committed offsets of `group`: topic → partition → offset (-1 = none).
async fn committed(client: &Client, group: &str) -> anyhow::Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let conn = client.coordinator(group).await?;
    let req = OffsetFetchRequest::default().with_group_id(gid(group)).with_topics(None);
    let resp = conn.call(&req).await?;
    check("OffsetFetch", || format!("group '{group}'"), resp.error_code)?;
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            check("OffsetFetch", || format!("{}-{}", t.name.0.as_str(), p.partition_index), p.error_code)?;
            out.entry(t.name.0.to_string()).or_default().insert(p.partition_index, p.committed_offset);
        }
    }
    Ok(out)
}

/// Which member holds each partition, from the classic consumer protocol's assignments.
fn owners(members: &[kafka_protocol::messages::describe_groups_response::DescribedGroupMember]) -> BTreeMap<(String, i32), (String, String, String)> {
    let mut out = BTreeMap::new();
    for m in members {
        let mut b: Bytes = m.member_assignment.clone();
        if b.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([b[0], b[1]]);
        let _ = bytes::Buf::get_i16(&mut b);
        let Ok(a) = crate::protocol::guard(|| ConsumerProtocolAssignment::decode(&mut b, version)) else { continue };
        for tp in a.assigned_partitions {
            for p in tp.partitions {
                out.insert((tp.topic.0.to_string(), p), (m.member_id.to_string(), m.client_host.to_string(), m.client_id.to_string()));
            }
        }
    }
    out
}

pub async fn run_to(args: GroupArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    match args.command {
        GroupCommand::List => {
            let resp = client.any_conn().await?.call(&ListGroupsRequest::default()).await?;
            check("ListGroups", String::new, resp.error_code)?;
            let mut groups: Vec<_> = resp.groups.into_iter().collect();
            groups.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
            writeln!(out, "{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE")?;
            for g in groups {
                let state = if g.group_state.is_empty() { "-" } else { g.group_state.as_str() };
                writeln!(out, "{:<40} {:<20} {}", g.group_id.0.as_str(), state, g.protocol_type.as_str())?;
            }
        }
        GroupCommand::Describe { group } => {
            let conn = client.coordinator(&group).await?;
            let resp = conn.call(&DescribeGroupsRequest::default().with_groups(vec![gid(&group)])).await?;
            let g = resp.groups.into_iter().next().context("the broker described no group")?;
            check("DescribeGroups", || format!("group '{group}'"), g.error_code)?;
            let owners = owners(&g.members);
            let offsets = committed(&client, &group).await?;
            if offsets.is_empty() && g.members.is_empty() {
                bail!("consumer group '{group}' does not exist (no members, no committed offsets)");
            }
            writeln!(out, "Group {group}: state {}, {} member(s)", g.group_state.as_str(), g.members.len())?;
            writeln!(out, "{:<24} {:>9} {:>15} {:>15} {:>10}  CONSUMER-ID HOST CLIENT-ID", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG")?;
            // Every partition with a commit or an owner.
            let mut rows: BTreeMap<(String, i32), Option<i64>> = BTreeMap::new();
            for (t, ps) in &offsets {
                for (p, o) in ps {
                    rows.insert((t.clone(), *p), Some(*o).filter(|o| *o >= 0));
                }
            }
            for k in owners.keys() {
                rows.entry(k.clone()).or_insert(None);
            }
            for ((t, p), current) in rows {
                let end = client.list_offset(&t, p, -1).await.ok();
                let lag = match (current, end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => "-".into(),
                };
                let owner = owners.get(&(t.clone(), p)).map(|(m, h, c)| format!("{m} {h} {c}")).unwrap_or_else(|| "-".into());
                let cur = current.map(|c| c.to_string()).unwrap_or_else(|| "-".into());
                let end = end.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
                writeln!(out, "{t:<24} {p:>9} {cur:>15} {end:>15} {lag:>10}  {owner}")?;
            }
        }
        GroupCommand::Delete { group } => {
            let conn = client.coordinator(&group).await?;
            let resp = conn.call(&DeleteGroupsRequest::default().with_groups_names(vec![gid(&group)])).await?;
            for r in resp.results {
                if r.error_code == ResponseError::NonEmptyGroup.code() {
                    bail!("group '{group}' still has active members; stop its consumers first");
                }
                check("DeleteGroups", || format!("group '{group}'"), r.error_code)?;
            }
            writeln!(out, "Deleted group {group}.")?;
        }
        GroupCommand::ResetOffsets(r) => reset(&client, r, out).await?,
    }
    Ok(())
}

async fn reset(client: &Client, r: ResetArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let current = committed(client, &r.group).await?;
    let when = r.to_datetime.as_deref().map(parse_datetime_ms).transpose()?;
    let mut plan: Vec<(String, i32, i64)> = Vec::new();
    for topic in &r.topics {
        let t = client.topic(topic).await?;
        for p in t.partitions.iter().map(|p| p.partition) {
            let earliest = client.list_offset(topic, p, -2).await?;
            let latest = client.list_offset(topic, p, -1).await?;
            let clamp = |o: i64| o.clamp(earliest, latest);
            let target = if r.to_earliest {
                earliest
            } else if r.to_latest {
                latest
            } else if let Some(o) = r.to_offset {
                clamp(o)
            } else if let Some(ts) = when {
                match client.list_offset(topic, p, ts).await? {
                    -1 => latest,
                    o => clamp(o),
                }
            } else if let Some(n) = r.shift_by {
                let c = current.get(topic).and_then(|ps| ps.get(&p)).copied().filter(|c| *c >= 0);
                let c = c.with_context(|| format!("{topic}-{p} has no committed offset in group '{}' to shift", r.group))?;
                clamp(c.saturating_add(n))
            } else {
                bail!("choose one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by");
            };
            plan.push((topic.clone(), p, target));
        }
    }
    writeln!(out, "{:<24} {:<24} {:>9} {:>12}", "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET")?;
    for (t, p, o) in &plan {
        writeln!(out, "{:<24} {t:<24} {p:>9} {o:>12}", r.group)?;
    }
    if !r.execute {
        writeln!(out, "Dry run: nothing committed (add --execute).")?;
        return Ok(());
    }
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (t, p, o) in &plan {
        topics.entry(t.as_str()).or_default().push(OffsetCommitRequestPartition::default().with_partition_index(*p).with_committed_offset(*o));
    }
    // Generation -1 and no member id: an admin commit, which a group with live members refuses.
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(&r.group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| OffsetCommitRequestTopic::default().with_name(TopicName(StrBytes::from_string(t.to_owned()))).with_partitions(ps))
                .collect(),
        );
    let resp = client.coordinator(&r.group).await?.call(&req).await?;
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code == ResponseError::UnknownMemberId.code() || p.error_code == ResponseError::RebalanceInProgress.code() || p.error_code == ResponseError::IllegalGeneration.code() {
                bail!("group '{}' has active members; stop its consumers before resetting offsets", r.group);
            }
            check("OffsetCommit", || format!("{}-{}", t.name.0.as_str(), p.partition_index), p.error_code)?;
        }
    }
    writeln!(out, "Committed {} offset(s) for group {}.", plan.len(), r.group)?;
    Ok(())
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (UTC when no zone).
pub fn parse_datetime_ms(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--to-datetime '{s}': expected YYYY-MM-DDTHH:MM:SS[.mmm][Z|+HH:MM]");
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || rest.len() < 8 {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (h, mi, se) = (num(&rest[0..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    if &rest[2..3] != ":" || &rest[5..6] != ":" || !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let mut tail = &rest[8..];
    let mut ms = 0i64;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return Err(bad());
        }
        ms = num(&format!("{:0<3}", &digits[..digits.len().min(3)]))?;
        tail = &frac[digits.len()..];
    }
    let offset_min = match tail {
        "" | "Z" => 0,
        z if (z.starts_with('+') || z.starts_with('-')) && z.len() == 6 && &z[3..4] == ":" => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (num(&z[1..3])? * 60 + num(&z[4..6])?)
        }
        _ => return Err(bad()),
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3600 + mi * 60 + se) - offset_min * 60) * 1000 + ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime_ms("2026-11-25T21:00:00Z").unwrap(), 1_795_640_400_000);
        assert_eq!(parse_datetime_ms("2026-11-25T22:00:00.5+01:00").unwrap(), 1_795_640_400_500);
        assert_eq!(parse_datetime_ms("2000-02-29T12:34:56.789").unwrap(), 951_827_696_789);
        for bad in ["2026-11-25", "2026-13-01T00:00:00", "2026-11-25T25:00:00", "x", "2026-11-25T00:00:00+0100"] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad}");
        }
    }
}
