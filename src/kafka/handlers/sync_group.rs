//! SyncGroup: the leader's assignment is stored and handed to every member; followers wait.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group::{self, Reply, SyncResult};
use crate::kafka::RequestContext;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: RequestContext, req: SyncGroupRequest) -> Option<SyncGroupResponse> {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let resp = SyncGroupResponse::default();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(resp.with_error_code(e.code()));
    }
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        let assignments = req
            .assignments
            .iter()
            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
            .collect();
        let instance = if version >= 3 {
            req.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        };
        let reply = shard.groups().sync(
            &gid,
            &req.member_id,
            instance.as_deref(),
            req.generation_id,
            req.protocol_type.as_deref(),
            req.protocol_name.as_deref(),
            assignments,
            now_ms(),
        );
        match reply {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| SyncResult {
                error: ResponseError::CoordinatorNotAvailable.code(),
                ..Default::default()
            }),
        }
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => SyncResult {
            error: e.code(),
            ..Default::default()
        },
    };
    Some(
        resp.with_error_code(r.error)
            .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
            .with_assignment(r.assignment),
    )
}
