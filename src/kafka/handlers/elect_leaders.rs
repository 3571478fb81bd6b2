//! ElectLeaders (`kafka-leader-election`, `Admin.electLeaders`). Sluice never moves a leader on
//! request: a one-node broker leads every partition itself (its only replica, so the preferred
//! one), and in cluster mode each partition's Raft group elects its leader. So a partition whose
//! leader is already the one asked for answers ELECTION_NOT_NEEDED, as Kafka does; a cluster
//! partition led by another replica than the preferred (first) one answers
//! PREFERRED_LEADER_NOT_AVAILABLE, one without a leader the election type's "not available".
//! With no partitions named (all of them), Kafka leaves out those that needed no election.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::catalog::TopicMeta;
use crate::cluster::ClusterOf;
use crate::kafka::RequestContext;
use crate::limits;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

fn result(p: i32, e: ResponseError, message: String) -> PartitionResult {
    PartitionResult::default().with_partition_id(p).with_error_code(e.code()).with_error_message(Some(StrBytes::from_string(message)))
}

/// The answer for one existing partition.
fn elect(ctx: &RequestContext, t: &TopicMeta, p: i32, election: i8) -> PartitionResult {
    let not_needed = || PartitionResult::default().with_partition_id(p).with_error_code(ResponseError::ElectionNotNeeded.code());
    let Some(c) = ctx.shard.shared.cluster() else {
        return not_needed();
    };
    let leader = c.leader(&(t.id, p)).map(|l| l.leader).filter(|&l| l != 0);
    let preferred = t.replicas.get(p as usize).and_then(|r| r.first().copied());
    match (leader, election) {
        (Some(l), PREFERRED) if Some(l) == preferred => not_needed(),
        (Some(_), UNCLEAN) => not_needed(),
        (Some(l), _) => result(
            p,
            ResponseError::PreferredLeaderNotAvailable,
            format!("partition {}-{p} is led by {l}, not its preferred replica {}; Sluice's Raft groups elect their own leaders and do not move one on request", t.name, preferred.map_or(-1, |b| b as i64)),
        ),
        (None, UNCLEAN) => result(p, ResponseError::EligibleLeadersNotAvailable, format!("partition {}-{p} has no leader yet", t.name)),
        (None, _) => result(p, ResponseError::PreferredLeaderNotAvailable, format!("partition {}-{p} has no leader yet", t.name)),
    }
}

pub async fn handle(ctx: RequestContext, req: ElectLeadersRequest) -> Option<ElectLeadersResponse> {
    let election = if ctx.version() >= 1 { req.election_type } else { PREFERRED };
    let resp = ElectLeadersResponse::default();
    if election != PREFERRED && election != UNCLEAN {
        return Some(resp.with_error_code(ResponseError::InvalidRequest.code()));
    }
    let snap = ctx.shard.shared.catalog.snapshot();
    let mut results = Vec::new();
    match req.topic_partitions {
        None => {
            for t in snap.topics() {
                let partitions: Vec<_> = (0..t.partitions)
                    .map(|p| elect(&ctx, t, p, election))
                    .filter(|r| r.error_code != ResponseError::ElectionNotNeeded.code())
                    .collect();
                if !partitions.is_empty() {
                    results.push(ReplicaElectionResult::default().with_topic(TopicName(StrBytes::from_string(t.name.clone()))).with_partition_result(partitions));
                }
            }
        }
        Some(asked) => {
            for tp in asked.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
                let name = tp.topic.0.to_string();
                let topic = snap.topic(&name);
                let partitions = tp
                    .partitions
                    .into_iter()
                    .map(|p| match topic {
                        Some(t) if (0..t.partitions).contains(&p) => elect(&ctx, t, p, election),
                        Some(_) => result(p, ResponseError::UnknownTopicOrPartition, format!("No such partition as {name}-{p}")),
                        None => result(p, ResponseError::UnknownTopicOrPartition, format!("No such topic as {name}")),
                    })
                    .collect();
                results.push(ReplicaElectionResult::default().with_topic(tp.topic).with_partition_result(partitions));
            }
        }
    }
    Some(resp.with_replica_election_results(results))
}
