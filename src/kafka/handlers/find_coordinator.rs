//! FindCoordinator: this broker coordinates every group (the owning shard is an internal
//! detail); transaction coordinators do not exist yet and are refused with a clear message.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;
use crate::limits;
use crate::cluster::ClusterOf;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

const KEY_TYPE_GROUP: i8 = 0;

fn answer(ctx: &RequestContext, key: &StrBytes, key_type: i8) -> Coordinator {
    let (host, port) = super::metadata::advertised(ctx);
    let c = Coordinator::default().with_key(key.clone());
    if key_type != KEY_TYPE_GROUP {
        return c
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "transactions are not supported by this broker yet",
            )));
    }
    if let Err(e) = crate::group::validate_group_id(key) {
        return c
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(e.code())
            .with_error_message(Some(StrBytes::from_static_str("invalid group id")));
    }
    if let Some(cluster) = ctx.shard.shared.cluster() {
        // Cluster mode: groups are coordinated by the controller (the metadata leader).
        let id = cluster.controller();
        let broker = ctx
            .shard
            .shared
            .catalog
            .snapshot()
            .data
            .brokers
            .get(&id)
            .cloned();
        return match broker {
            Some(b) => c
                .with_node_id(BrokerId(id as i32))
                .with_host(StrBytes::from_string(b.host))
                .with_port(i32::from(b.port)),
            None => c
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_error_message(Some(StrBytes::from_static_str("no controller elected yet"))),
        };
    }
    c.with_node_id(BrokerId(ctx.shard.config().node_id))
        .with_host(StrBytes::from_string(host))
        .with_port(port)
}

pub async fn handle(
    ctx: RequestContext,
    req: FindCoordinatorRequest,
) -> Option<FindCoordinatorResponse> {
    let resp = FindCoordinatorResponse::default();
    if ctx.version() >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .take(limits::TOPICS_PER_REQUEST_MAX)
            .map(|k| answer(&ctx, k, req.key_type))
            .collect();
        return Some(resp.with_coordinators(coordinators));
    }
    let c = answer(&ctx, &req.key, req.key_type);
    Some(
        resp.with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port),
    )
}
