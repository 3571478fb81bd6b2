//! DescribeTopicPartitions (KIP-966; what Kafka 4's `Admin.describeTopics` and `kafka-topics
//! --describe` ask): the Metadata answer for the named topics (all of them when none is named),
//! sorted by name, paged: at most `response_partition_limit` partitions (capped at Kafka's
//! default 2000), resuming from the request's cursor and giving the next one when cut short.
//! Sluice has no eligible leader replicas (ELR): both ELR lists are present and empty, as on a
//! Kafka whose partitions are all in sync.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::kafka::handlers::metadata;
use crate::kafka::RequestContext;
use crate::limits;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Kafka's `max.request.partition.size.limit` default.
const PARTITION_LIMIT_MAX: i32 = 2000;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub async fn handle(ctx: RequestContext, req: DescribeTopicPartitionsRequest) -> Option<DescribeTopicPartitionsResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let mut names: Vec<String> = if req.topics.is_empty() {
        snap.topics().map(|t| t.name.clone()).collect()
    } else {
        req.topics.iter().take(limits::TOPICS_PER_REQUEST_MAX).map(|t| t.name.0.to_string()).collect()
    };
    names.sort_unstable();
    names.dedup();
    let (cursor_topic, mut first_partition) = match &req.cursor {
        Some(c) => (Some(c.topic_name.0.to_string()), c.partition_index.max(0)),
        None => (None, 0),
    };
    if let Some(ct) = &cursor_topic {
        if !names.contains(ct) {
            return Some(DescribeTopicPartitionsResponse::default().with_topics(vec![
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(topic_name(ct)))
                    .with_topic_authorized_operations(i32::MIN),
            ]));
        }
        names.retain(|n| n >= ct);
    }
    let mut budget = req.response_partition_limit.clamp(1, PARTITION_LIMIT_MAX);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names {
        let Some(t) = snap.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(topic_name(&name)))
                    .with_topic_id(Uuid::nil())
                    .with_topic_authorized_operations(i32::MIN),
            );
            first_partition = 0;
            continue;
        };
        if budget == 0 {
            next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(0));
            break;
        }
        let md = metadata::topic_response(&ctx, t);
        let mut partitions = Vec::new();
        for p in md.partitions.into_iter().filter(|p| p.partition_index >= first_partition) {
            if budget == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(p.partition_index));
                break;
            }
            budget -= 1;
            partitions.push(
                DescribeTopicPartitionsResponsePartition::default()
                    .with_error_code(p.error_code)
                    .with_partition_index(p.partition_index)
                    .with_leader_id(p.leader_id)
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replica_nodes)
                    .with_isr_nodes(p.isr_nodes)
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(p.offline_replicas),
            );
        }
        first_partition = 0;
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(t.id)
                .with_is_internal(false)
                .with_partitions(partitions)
                .with_topic_authorized_operations(i32::MIN),
        );
        if next_cursor.is_some() {
            break;
        }
    }
    Some(DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor))
}
