//! `sluice group list|describe|delete|reset-offsets`, like Kafka's kafka-consumer-groups.sh:
//! reset-offsets is a dry run unless `--execute`, and only for a group without active members.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{Client, ClientError};

/// Manage consumer groups on any Kafka-compatible broker (single coordinator: the bootstrap).
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// Broker to bootstrap from.
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
    /// Per partition: committed offset, log end offset, lag, owning member.
    Describe { group: String },
    /// Delete a group without active members, with its committed offsets.
    Delete { group: String },
    /// Move a group's committed offsets of one topic (dry run unless --execute).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        to: ResetTo,
        /// Commit the new offsets (default: only print them).
        #[arg(long)]
        execute: bool,
    },
}

/// Where reset-offsets moves each partition (exactly one).
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ResetTo {
    /// The log start offset.
    #[arg(long)]
    pub to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    pub to_latest: bool,
    /// This offset (clamped to the log's range).
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// The first offset at or after this time, e.g. 2026-11-25T21:00:00Z or 2026-11-25T21:00:00.000+01:00.
    #[arg(long)]
    pub to_datetime: Option<String>,
    /// The committed offset plus N (N may be negative), clamped to the log's range.
    #[arg(long, allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_owned()))
}

/// Runs a group subcommand, printing to stdout.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    super::block_on(run_to(args, &mut out))
}

/// Parses ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` (no zone = UTC) to Unix milliseconds.
pub fn parse_datetime_ms(s: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!("--to-datetime: expected YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM], got '{s}'")
    };
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|i| *i >= 8) {
        let (t, z) = rest.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (zh, zm) = z[1..].split_once(':').ok_or_else(bad)?;
        (t, sign * (num(zh)? * 60 + num(zm)?))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return Err(bad());
    }
    let (h, mi, se) = (num(t[0])?, num(t[1])?, num(t[2])?);
    let ms = num(&format!("{:0<3}", &frac[..frac.len().min(3)]))?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + se * 1000 + ms)
}

/// The partitions of a ConsumerProtocolAssignment (version, [topic, [partition]], user data).
fn parse_assignment(b: &[u8]) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    let mut p = 2usize;
    let rd_i32 = |p: &mut usize| -> Option<i32> {
        let v = i32::from_be_bytes(b.get(*p..*p + 4)?.try_into().ok()?);
        *p += 4;
        Some(v)
    };
    let Some(n) = rd_i32(&mut p) else { return out };
    for _ in 0..n.max(0) {
        let Some(len) = b.get(p..p + 2).map(|x| i16::from_be_bytes([x[0], x[1]])) else {
            return out;
        };
        p += 2;
        let len = len.max(0) as usize;
        let Some(name) = b.get(p..p + len) else {
            return out;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        p += len;
        let Some(k) = rd_i32(&mut p) else { return out };
        for _ in 0..k.max(0) {
            let Some(part) = rd_i32(&mut p) else {
                return out;
            };
            out.push((name.clone(), part));
        }
    }
    out
}

struct GroupView {
    state: String,
    /// (topic, partition) -> (member id, client host, client id)
    owners: BTreeMap<(String, i32), (String, String, String)>,
}

async fn describe_group(client: &Client, group: &str) -> anyhow::Result<GroupView> {
    let conn = client.any_conn().await?;
    let resp = conn
        .call(&DescribeGroupsRequest::default().with_groups(vec![gid(group)]))
        .await?;
    let g = resp
        .groups
        .first()
        .context("DescribeGroups answered no group")?;
    ClientError::check("DescribeGroups", || group.to_owned(), g.error_code, None)?;
    let mut owners = BTreeMap::new();
    if g.protocol_type.as_str() == "consumer" {
        for m in &g.members {
            for tp in parse_assignment(&m.member_assignment) {
                owners.insert(
                    tp,
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    Ok(GroupView {
        state: g.group_state.to_string(),
        owners,
    })
}

/// Committed offsets of every partition the group has committed: (topic, partition) -> offset.
async fn committed(client: &Client, group: &str) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let conn = client.any_conn().await?;
    let resp = conn
        .call(
            &OffsetFetchRequest::default()
                .with_group_id(gid(group))
                .with_topics(None),
        )
        .await?;
    ClientError::check("OffsetFetch", || group.to_owned(), resp.error_code, None)?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            ClientError::check(
                "OffsetFetch",
                || format!("{}-{}", t.name.0, p.partition_index),
                p.error_code,
                None,
            )?;
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// Runs a group subcommand, writing human output to `out`.
pub async fn run_to(args: GroupArgs, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let client = Client::connect(&args.bootstrap, super::CLIENT_ID).await?;
    match args.command {
        GroupCommand::List => {
            let resp = client
                .any_conn()
                .await?
                .call(&ListGroupsRequest::default())
                .await?;
            ClientError::check("ListGroups", String::new, resp.error_code, None)?;
            let mut groups: Vec<_> = resp
                .groups
                .iter()
                .map(|g| {
                    (
                        g.group_id.0.to_string(),
                        g.group_state.to_string(),
                        g.protocol_type.to_string(),
                    )
                })
                .collect();
            groups.sort();
            writeln!(out, "{:<40} {:<20} PROTOCOL-TYPE", "GROUP", "STATE")?;
            for (g, s, p) in groups {
                writeln!(out, "{g:<40} {s:<20} {p}")?;
            }
        }
        GroupCommand::Describe { group } => {
            let view = describe_group(&client, &group).await?;
            let offsets = committed(&client, &group).await?;
            let mut rows: BTreeMap<(String, i32), Option<i64>> =
                offsets.iter().map(|(k, v)| (k.clone(), Some(*v))).collect();
            for k in view.owners.keys() {
                rows.entry(k.clone()).or_insert(None);
            }
            writeln!(out, "Group {group} is {}.", view.state)?;
            writeln!(
                out,
                "{:<30} {:>9} {:>15} {:>15} {:>10}  {:<40} {:<16} CLIENT-ID",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST"
            )?;
            for ((t, p), cur) in rows {
                let end = client.list_offset(&t, p, -1).await.ok();
                let lag = match (cur, end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => "-".into(),
                };
                let (m, h, c) = view.owners.get(&(t.clone(), p)).cloned().unwrap_or((
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ));
                let show = |x: Option<i64>| x.map_or("-".to_string(), |v| v.to_string());
                writeln!(
                    out,
                    "{t:<30} {p:>9} {:>15} {:>15} {lag:>10}  {m:<40} {h:<16} {c}",
                    show(cur),
                    show(end)
                )?;
            }
        }
        GroupCommand::Delete { group } => {
            let resp = client
                .any_conn()
                .await?
                .call(&DeleteGroupsRequest::default().with_groups_names(vec![gid(&group)]))
                .await?;
            let r = resp
                .results
                .first()
                .context("DeleteGroups answered no group")?;
            ClientError::check("DeleteGroups", || group.clone(), r.error_code, None)?;
            writeln!(out, "Deleted group {group}.")?;
        }
        GroupCommand::ResetOffsets {
            group,
            topic,
            to,
            execute,
        } => {
            let view = describe_group(&client, &group).await?;
            if view.state != "Empty" && view.state != "Dead" {
                bail!(
                    "group {group} has active members (state {}); stop its consumers first",
                    view.state
                );
            }
            let info = client.topic(&topic).await?;
            let offsets = committed(&client, &group).await?;
            let ts = match &to.to_datetime {
                Some(s) => Some(parse_datetime_ms(s)?),
                None => None,
            };
            let mut plan = Vec::new();
            for p in info.partitions.iter().map(|p| p.partition) {
                let start = client.list_offset(&topic, p, -2).await?;
                let end = client.list_offset(&topic, p, -1).await?;
                let current = offsets.get(&(topic.clone(), p)).copied();
                let target = if to.to_earliest {
                    start
                } else if to.to_latest {
                    end
                } else if let Some(o) = to.to_offset {
                    o
                } else if let Some(ts) = ts {
                    match client.list_offset(&topic, p, ts).await? {
                        o if o < 0 => end,
                        o => o,
                    }
                } else if let Some(n) = to.shift_by {
                    current.unwrap_or(start).saturating_add(n)
                } else {
                    bail!("say where to reset to (--to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by)");
                };
                plan.push((p, current, target.clamp(start, end)));
            }
            writeln!(
                out,
                "{:<30} {:<30} {:>9} {:>15} {:>11}",
                "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"
            )?;
            for (p, cur, new) in &plan {
                let cur = cur.map_or("-".to_string(), |c| c.to_string());
                writeln!(out, "{group:<30} {topic:<30} {p:>9} {cur:>15} {new:>11}")?;
            }
            if !execute {
                writeln!(out, "Dry run: nothing committed (add --execute to apply).")?;
                return Ok(());
            }
            let req = OffsetCommitRequest::default()
                .with_group_id(gid(&group))
                .with_generation_id_or_member_epoch(-1)
                .with_member_id(StrBytes::default())
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(
                        plan.iter()
                            .map(|(p, _, new)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*new)
                                    .with_committed_leader_epoch(-1)
                            })
                            .collect(),
                    )]);
            let resp = client.any_conn().await?.call(&req).await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    ClientError::check(
                        "OffsetCommit",
                        || format!("{}-{}", t.name.0, p.partition_index),
                        p.error_code,
                        None,
                    )?;
                }
            }
            writeln!(out, "Committed new offsets for {} partitions.", plan.len())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert_eq!(
            parse_datetime_ms("2026-11-25T21:00:00Z").unwrap(),
            1_795_640_400_000
        );
        assert_eq!(
            parse_datetime_ms("2026-11-25T22:00:00+01:00").unwrap(),
            1_795_640_400_000
        );
        assert_eq!(
            parse_datetime_ms("2026-11-25T21:00:00").unwrap(),
            1_795_640_400_000
        );
        assert!(parse_datetime_ms("yesterday").is_err());
        assert!(parse_datetime_ms("2026-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn assignment_bytes() {
        let mut b = vec![
            0u8, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            parse_assignment(&b),
            vec![("t".to_string(), 3), ("t".to_string(), 5)]
        );
        assert!(parse_assignment(&[0, 0, 0, 0, 0, 9]).is_empty());
    }
}
