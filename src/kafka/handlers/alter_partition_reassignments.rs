//! AlterPartitionReassignments (cluster mode): move partitions to new replica sets. The change
//! goes through the metadata log; the partition's Raft leader then changes the group's voters
//! step by step (see `cluster::replica::reconcile`). A null replica list cancels a reassignment
//! that has not completed. A one-node broker has nowhere to move a replica: each partition's
//! answer says so, except that moving it to this node (where it is) succeeds at once, as on a
//! one-node Kafka (`kafka-reassign-partitions --execute` with the plan `--generate` proposes).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::cluster::metadata::{self, MetaOp};
use crate::kafka::RequestContext;
use crate::limits;
use crate::cluster::ClusterOf;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: RequestContext, req: AlterPartitionReassignmentsRequest) -> Option<AlterPartitionReassignmentsResponse> {
    let resp = AlterPartitionReassignmentsResponse::default();
    let mut responses = Vec::new();
    for t in req.topics.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
        let name = t.name.0.to_string();
        let mut partitions = Vec::new();
        for p in t.partitions.into_iter().take(limits::PARTITIONS_PER_TOPIC_MAX as usize) {
            let target = p.replicas.map(|r| r.into_iter().map(|b| b.0 as u64).collect::<Vec<u64>>());
            let r = if ctx.shard.shared.cluster().is_none() {
                one_node(&ctx, &name, p.partition_index, target)
            } else {
                reassign(&ctx, &name, p.partition_index, target).await
            };
            let mut pr = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            if let Err((code, msg)) = r {
                pr.error_code = code.code();
                pr.error_message = Some(StrBytes::from_string(msg));
            }
            partitions.push(pr);
        }
        responses.push(ReassignableTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    Some(resp.with_responses(responses))
}

/// A one-node broker: the only valid target is this node alone, where the partition already is.
fn one_node(ctx: &RequestContext, name: &str, partition: i32, target: Option<Vec<u64>>) -> Result<(), (ResponseError, String)> {
    let exists = ctx.shard.shared.catalog.snapshot().topic(name).is_some_and(|m| partition >= 0 && partition < m.partitions);
    if !exists {
        return Err((ResponseError::UnknownTopicOrPartition, format!("{name}-{partition} does not exist")));
    }
    let node = ctx.shard.config().node_id;
    match target {
        None => Err((ResponseError::NoReassignmentInProgress, format!("no reassignment of {name}-{partition} is in progress"))),
        Some(t) if t.len() == 1 && i64::try_from(t[0]).ok() == Some(i64::from(node)) => Ok(()),
        Some(t) => Err((
            ResponseError::InvalidReplicaAssignment,
            format!("replicas {t:?}: this broker (node {node}) is not part of a cluster, its partitions stay on it (start it with --node-id and --cluster to move them)"),
        )),
    }
}

async fn reassign(ctx: &RequestContext, name: &str, partition: i32, target: Option<Vec<u64>>) -> Result<(), (ResponseError, String)> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let Some(meta) = snap.topic(name).filter(|m| partition >= 0 && partition < m.partitions) else {
        return Err((ResponseError::UnknownTopicOrPartition, format!("{name}-{partition} does not exist")));
    };
    if let Some(t) = &target {
        let mut sorted = t.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if t.is_empty() || sorted.len() != t.len() {
            return Err((ResponseError::InvalidReplicaAssignment, "the replica list must be non-empty without duplicates".into()));
        }
        if let Some(b) = t.iter().find(|b| !snap.data.brokers.contains_key(b)) {
            return Err((ResponseError::InvalidReplicaAssignment, format!("broker {b} is not registered in the cluster")));
        }
    } else if !meta.targets.contains_key(&partition) {
        return Err((ResponseError::NoReassignmentInProgress, format!("no reassignment of {name}-{partition} is in progress")));
    }
    let op = MetaOp::Reassign { name: name.to_string(), id: meta.id, partition, target };
    metadata::propose(&ctx.shard, op).await.map_err(|e| (crate::kafka::error::meta(&e), e.message))
}
