//! ConsumerGroupHeartbeat (KIP-848, `group.protocol=consumer`): joins, leaves and reconciles a
//! member with server-side assignment (see `crate::group::consumer`).

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group::{self, consumer::HeartbeatParams};
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(
    ctx: RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> Option<ConsumerGroupHeartbeatResponse> {
    let group_id = req.group_id.0.to_string();
    let resp = ConsumerGroupHeartbeatResponse::default();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(resp.with_error_code(e.code()).with_member_epoch(-1));
    }
    if req
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        tracing::debug!(group = %group_id, regex = ?req.subscribed_topic_regex, "ConsumerGroupHeartbeat with a regex refused");
        return Some(
            resp.with_error_code(kafka_protocol::error::ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "regex subscriptions are not supported",
                )))
                .with_member_epoch(-1),
        );
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .take(limits::PARTITIONS_TOTAL_MAX)
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .take(limits::PARTITIONS_PER_TOPIC_MAX as usize)
                    .map(move |p| (t.topic_id, *p))
            })
            .collect::<BTreeSet<_>>()
    });
    let params = HeartbeatParams {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|i| i.to_string()),
        rack_id: req.rack_id.as_ref().map(|r| r.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed: req.subscribed_topic_names.as_ref().map(|ts| {
            ts.iter()
                .take(limits::TOPICS_PER_REQUEST_MAX)
                .map(|t| t.0.to_string())
                .collect()
        }),
        server_assignor: req.server_assignor.as_ref().map(|a| a.to_string()),
        owned,
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer_addr.ip()),
    };
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        let snap = shard.shared.catalog.snapshot();
        let topics = |name: &str| snap.topic(name).map(|t| (t.id, t.partitions));
        shard
            .groups()
            .consumer_heartbeat(&gid, params, &topics, now_ms())
    })
    .await;
    let (r, interval) = match r {
        Ok(x) => x,
        Err(e) => return Some(resp.with_error_code(e.code()).with_member_epoch(-1)),
    };
    if r.error != group::NONE {
        tracing::debug!(group = %group_id, error = r.error, message = ?r.error_message, "ConsumerGroupHeartbeat refused");
    }
    let assignment = r.assignment.map(|a| {
        Assignment::default().with_topic_partitions(
            a.into_iter()
                .map(|(id, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(ps)
                })
                .collect(),
        )
    });
    Some(
        resp.with_error_code(r.error)
            .with_error_message(r.error_message.map(StrBytes::from_string))
            .with_member_id(if r.member_id.is_empty() {
                None
            } else {
                Some(StrBytes::from_string(r.member_id))
            })
            .with_member_epoch(r.member_epoch)
            .with_heartbeat_interval_ms(interval)
            .with_assignment(assignment),
    )
}
