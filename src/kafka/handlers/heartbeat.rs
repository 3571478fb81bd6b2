//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::protocol::VersionRange;

use crate::group;
use crate::kafka::RequestContext;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub async fn handle(ctx: RequestContext, req: HeartbeatRequest) -> Option<HeartbeatResponse> {
    let group_id = req.group_id.0.to_string();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(HeartbeatResponse::default().with_error_code(e.code()));
    }
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
        shard.groups().heartbeat(
            &gid,
            &req.member_id,
            instance.as_deref(),
            req.generation_id,
            now_ms(),
        )
    })
    .await;
    Some(HeartbeatResponse::default().with_error_code(r.unwrap_or_else(|e| e.code())))
}
