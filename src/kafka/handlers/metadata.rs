//! Metadata: brokers (this one), topics with partitions, leaders and topic ids.
//! Auto-creates requested topics when `auto.create.topics.enable` and the client allows it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::catalog::TopicMeta;
use crate::kafka::topics::{self, NewTopic};
use crate::kafka::RequestContext;
use crate::limits;
use crate::cluster::ClusterOf;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// The host and port clients should connect to: the advertised listener, or else the address
/// this client reached us on.
pub fn advertised(ctx: &RequestContext) -> (String, i32) {
    match &ctx.shard.config().advertised_listener {
        Some((h, p)) => (h.clone(), *p as i32),
        None => (
            ctx.local_addr.ip().to_string(),
            ctx.local_addr.port() as i32,
        ),
    }
}

/// The brokers, controller and cluster id clients are told about: this broker alone, or in
/// cluster mode every registered node, the metadata leader and the cluster's shared id.
pub struct ClusterView {
    /// (node id, host, port, rack)
    pub brokers: Vec<(i32, String, i32, Option<String>)>,
    pub controller: i32,
    pub cluster_id: String,
}

pub fn cluster_view(ctx: &RequestContext) -> ClusterView {
    let snap = ctx.shard.shared.catalog.snapshot();
    match ctx.shard.shared.cluster() {
        Some(c) => ClusterView {
            brokers: snap
                .data
                .brokers
                .iter()
                .map(|(id, b)| (*id as i32, b.host.clone(), i32::from(b.port), b.rack.clone()))
                .collect(),
            controller: match c.controller() {
                0 => -1,
                id => id as i32,
            },
            cluster_id: c.cluster_id.clone(),
        },
        None => {
            let (host, port) = advertised(ctx);
            let node = ctx.shard.config().node_id;
            ClusterView {
                brokers: vec![(node, host, port, ctx.shard.config().broker_rack.clone())],
                controller: node,
                cluster_id: snap.data.cluster_id.clone(),
            }
        }
    }
}

pub fn topic_response(ctx: &RequestContext, t: &TopicMeta) -> MetadataResponseTopic {
    let node = ctx.shard.config().node_id;
    let cluster = ctx.shard.shared.cluster();
    let partitions = (0..t.partitions)
        .map(|p| {
            let r = MetadataResponsePartition::default().with_partition_index(p);
            let Some(c) = cluster else {
                return r
                    .with_leader_id(BrokerId(node))
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![BrokerId(node)])
                    .with_isr_nodes(vec![BrokerId(node)]);
            };
            let ids = |v: &[u64]| v.iter().map(|id| BrokerId(*id as i32)).collect::<Vec<_>>();
            let replicas = t.replicas.get(p as usize).cloned().unwrap_or_default();
            match c.leader(&(t.id, p)) {
                Some(l) if l.leader != 0 => r
                    .with_leader_id(BrokerId(l.leader as i32))
                    .with_leader_epoch(l.term as i32)
                    .with_replica_nodes(ids(&replicas))
                    .with_isr_nodes(ids(&l.isr)),
                _ => r
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_leader_epoch(-1)
                    .with_replica_nodes(ids(&replicas))
                    .with_isr_nodes(vec![]),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}

fn error_topic(name: Option<String>, id: Uuid, e: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(e.code())
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}

pub async fn handle(ctx: RequestContext, req: MetadataRequest) -> Option<MetadataResponse> {
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version() == 0,
    };
    // v0..v3 always auto-create; v4+ say whether the client allows it.
    let allow_create = ctx.shard.config().auto_create_topics
        && (ctx.version() < 4 || req.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        let snap = ctx.shard.shared.catalog.snapshot();
        topics.extend(snap.topics().map(|t| topic_response(&ctx, t)));
    } else {
        let requested = req.topics.unwrap_or_default();
        for rt in requested.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
            let snap = ctx.shard.shared.catalog.snapshot();
            // A non-zero topic id wins over the name, as in Kafka: the Java client sends
            // `{topic_id, name: ""}` when it describes topics by id.
            let name = if rt.topic_id.is_nil() { rt.name.map(|n| n.0.to_string()) } else { None };
            let found = match &name {
                Some(n) => snap.topic(n).cloned(),
                None => snap.topic_by_id(&rt.topic_id).cloned(),
            };
            match (found, name) {
                (Some(t), _) => topics.push(topic_response(&ctx, &t)),
                (None, None) => topics.push(error_topic(
                    None,
                    rt.topic_id,
                    ResponseError::UnknownTopicId,
                )),
                (None, Some(n)) => {
                    if let Err(e) = topics::validate_topic_name(&n) {
                        topics.push(error_topic(
                            Some(n),
                            Uuid::nil(),
                            ResponseError::try_from_code(e.code)
                                .unwrap_or(ResponseError::InvalidTopicException),
                        ));
                        continue;
                    }
                    if !allow_create {
                        topics.push(error_topic(
                            Some(n),
                            Uuid::nil(),
                            ResponseError::UnknownTopicOrPartition,
                        ));
                        continue;
                    }
                    let new = NewTopic {
                        name: n.clone(),
                        partitions: -1,
                        replication_factor: -1,
                        configs: Default::default(),
                        assignment: Vec::new(),
                    };
                    match topics::create_topic(&ctx.shard, new, false).await {
                        Ok(t) => topics.push(topic_response(&ctx, &t)),
                        Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                            // Created concurrently by another request: answer with it.
                            match ctx.shard.shared.catalog.snapshot().topic(&n) {
                                Some(t) => topics.push(topic_response(&ctx, t)),
                                None => topics.push(error_topic(
                                    Some(n),
                                    Uuid::nil(),
                                    ResponseError::LeaderNotAvailable,
                                )),
                            }
                        }
                        Err(e) => {
                            if crate::recorder::log_allowed("metadata.auto_create_failed") {
                                tracing::warn!(topic = %n, error = %e.message, "auto-creation failed");
                            }
                            topics.push(error_topic(
                                Some(n),
                                Uuid::nil(),
                                ResponseError::try_from_code(e.code)
                                    .unwrap_or(ResponseError::UnknownServerError),
                            ));
                        }
                    }
                }
            }
        }
    }
    let view = cluster_view(&ctx);
    Some(
        MetadataResponse::default()
            .with_brokers(
                view.brokers
                    .into_iter()
                    .map(|(id, host, port, rack)| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(id))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port)
                            // v0 has no rack field.
                            .with_rack(rack.filter(|_| ctx.version() >= 1).map(StrBytes::from_string))
                    })
                    .collect(),
            )
            .with_cluster_id(Some(StrBytes::from_string(view.cluster_id)))
            .with_controller_id(BrokerId(view.controller))
            .with_topics(topics)
            .with_cluster_authorized_operations(i32::MIN),
    )
}
