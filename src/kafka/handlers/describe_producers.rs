//! DescribeProducers (`kafka-transactions describe-producers`, `Admin.describeProducers`): the
//! idempotent producers a partition remembers, from its log's producer table: id, epoch, last
//! sequence and the timestamp of its last batch. Sluice has no transactions, so no coordinator
//! epoch and no open transaction (-1 for both, as Kafka answers for a non-transactional producer).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::{on_partition, RequestContext};
use crate::limits;
use crate::runtime::owner_shard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: RequestContext, req: DescribeProducersRequest) -> Option<DescribeProducersResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut topics = Vec::new();
    for t in req.topics.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
        let meta = snap.topic(t.name.0.as_str());
        let mut partitions = Vec::new();
        for p in t.partition_indexes {
            let pr = PartitionResponse::default().with_partition_index(p);
            let Some(m) = meta.filter(|m| p >= 0 && p < m.partitions) else {
                partitions.push(pr.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let r = on_partition(&ctx.shard, owner_shard(&m.id, p, n), m.name.clone(), p, |log| async move { Ok(log.producers()) }).await;
            partitions.push(match r {
                Ok(producers) => pr.with_active_producers(
                    producers
                        .into_iter()
                        .map(|(id, epoch, last_seq, last_ts)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(i32::from(epoch))
                                .with_last_sequence(last_seq)
                                .with_last_timestamp(last_ts)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect(),
                ),
                Err((code, message)) => pr
                    .with_error_code(code)
                    .with_error_message((!message.is_empty()).then(|| StrBytes::from_string(message))),
            });
        }
        topics.push(TopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    Some(DescribeProducersResponse::default().with_topics(topics))
}
