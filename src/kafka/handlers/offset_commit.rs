//! OffsetCommit: validated against the group's membership, acknowledged once durable.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::protocol::VersionRange;

use crate::group::{self, CommitEntry};
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::now_ms;
use crate::group::GroupShard;

/// v9+ carry a KIP-848 member epoch in the generation field (checked for consumer-protocol
/// groups); v10 (topic ids) is not offered.
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

pub async fn handle(ctx: RequestContext, req: OffsetCommitRequest) -> Option<OffsetCommitResponse> {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let mut entries = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            entries.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
    }
    let codes = if let Err(e) = group::validate_group_id(&group_id) {
        vec![e.code(); entries.len()]
    } else if entries.len() > limits::PARTITIONS_TOTAL_MAX {
        vec![kafka_protocol::error::ResponseError::InvalidRequest.code(); entries.len()]
    } else {
        let n = entries.len();
        let gid = group_id.clone();
        let member = req.member_id.to_string();
        let instance = if version >= 7 {
            req.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        };
        let generation = req.generation_id_or_member_epoch;
        let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let catalog = shard.shared.catalog.snapshot();
            shard
                .groups()
                .commit(
                    &gid,
                    &member,
                    instance.as_deref(),
                    generation,
                    entries,
                    &catalog,
                    now_ms(),
                )
                .await
        })
        .await;
        r.unwrap_or_else(|e| vec![e.code(); n])
    };
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(group::NONE))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Some(OffsetCommitResponse::default().with_topics(topics))
}
