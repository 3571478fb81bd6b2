//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); -1 where none.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group::{self, offsets::Committed, Code};
use crate::kafka::RequestContext;
use crate::limits;
use crate::group::GroupShard;

/// v9 adds a KIP-848 member id and epoch per group (accepted, not checked: fetching offsets
/// changes nothing); v10 (topic ids) is not offered.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

type Rows = group::FetchedOffsets;

async fn fetch_one(
    ctx: &RequestContext,
    group_id: String,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> (Code, Rows) {
    if let Err(e) = group::validate_group_id(&group_id) {
        return (e.code(), Vec::new());
    }
    // Cluster mode: a new coordinator first applies every offset committed before it.
    if let Err(e) = crate::cluster::metadata::sync_offsets(&ctx.shard).await {
        return (e.code(), Vec::new());
    }
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        shard.groups().fetch(&gid, wanted)
    })
    .await;
    match r {
        Ok(rows) => (group::NONE, rows),
        Err(e) => (e.code(), Vec::new()),
    }
}

fn part(p: i32, c: Option<Committed>) -> (i32, i64, i32, StrBytes) {
    match c {
        Some(c) => (
            p,
            c.offset,
            c.leader_epoch,
            StrBytes::from_string(c.metadata),
        ),
        None => (p, -1, -1, StrBytes::default()),
    }
}

pub async fn handle(ctx: RequestContext, req: OffsetFetchRequest) -> Option<OffsetFetchResponse> {
    let version = ctx.version();
    let resp = OffsetFetchResponse::default();
    if version >= 8 {
        let mut groups = Vec::new();
        for g in req.groups.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
            let wanted = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let (code, rows) = fetch_one(&ctx, g.group_id.0.to_string(), wanted).await;
            let topics = rows
                .into_iter()
                .map(|(t, ps)| {
                    let partitions = ps
                        .into_iter()
                        .map(|(p, c)| {
                            let (p, o, e, m) = part(p, c);
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(Some(m))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(StrBytes::from_string(t)))
                        .with_partitions(partitions)
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(code)
                    .with_topics(topics),
            );
        }
        return Some(resp.with_groups(groups));
    }
    // v1 requires a topic list; v2+ accept null for "all committed offsets".
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let (code, rows) = fetch_one(&ctx, req.group_id.0.to_string(), wanted).await;
    let topics = rows
        .into_iter()
        .map(|(t, ps)| {
            let partitions = ps
                .into_iter()
                .map(|(p, c)| {
                    let (p, o, e, m) = part(p, c);
                    // v1 has no top-level error: the group error goes on every partition.
                    let pcode = if version < 2 { code } else { group::NONE };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(o)
                        .with_committed_leader_epoch(e)
                        .with_metadata(Some(m))
                        .with_error_code(pcode)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(partitions)
        })
        .collect();
    Some(resp.with_topics(topics).with_error_code(code))
}
