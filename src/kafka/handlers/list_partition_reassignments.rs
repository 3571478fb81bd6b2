//! ListPartitionReassignments: the reassignments in progress (cluster mode), from the
//! replicated metadata: replicas = current + target, adding = target - current,
//! removing = current - target.

use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: RequestContext, req: ListPartitionReassignmentsRequest) -> Option<ListPartitionReassignmentsResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let wanted = |topic: &str, p: i32| match &req.topics {
        None => true,
        Some(ts) => ts.iter().any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&p)),
    };
    let ids = |v: Vec<u64>| v.into_iter().map(|b| BrokerId(b as i32)).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for t in snap.topics() {
        let mut partitions = Vec::new();
        for (&p, target) in &t.targets {
            if !wanted(&t.name, p) {
                continue;
            }
            let current = t.replicas.get(p as usize).cloned().unwrap_or_default();
            let mut all = current.clone();
            all.extend(target.iter().filter(|b| !current.contains(b)));
            partitions.push(
                OngoingPartitionReassignment::default()
                    .with_partition_index(p)
                    .with_replicas(ids(all))
                    .with_adding_replicas(ids(target.iter().copied().filter(|b| !current.contains(b)).collect()))
                    .with_removing_replicas(ids(current.iter().copied().filter(|b| !target.contains(b)).collect())),
            );
        }
        if !partitions.is_empty() {
            topics.push(OngoingTopicReassignment::default().with_name(TopicName(StrBytes::from_string(t.name.clone()))).with_partitions(partitions));
        }
    }
    Some(ListPartitionReassignmentsResponse::default().with_topics(topics))
}
