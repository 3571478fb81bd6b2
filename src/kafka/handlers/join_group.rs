//! JoinGroup: routed to the group's coordinator shard, where it may wait for the rebalance.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group::{self, JoinParams, JoinResult, Reply};
use crate::kafka::RequestContext;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let members = r
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(s(&m.member_id))
                .with_group_instance_id(m.instance_id.as_deref().map(s))
                .with_metadata(m.metadata)
        })
        .collect();
    // protocol_name is nullable only from v7.
    let protocol_name = match r.protocol_name {
        Some(p) => Some(s(&p)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(r.error)
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.as_deref().map(s))
        .with_protocol_name(protocol_name)
        .with_leader(s(&r.leader))
        .with_skip_assignment(r.skip_assignment && version >= 9)
        .with_member_id(s(&r.member_id))
        .with_members(members)
}

fn error(version: i16, code: i16, member_id: &str) -> JoinGroupResponse {
    response(
        version,
        JoinResult {
            error: code,
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        },
    )
}

pub async fn handle(ctx: RequestContext, req: JoinGroupRequest) -> Option<JoinGroupResponse> {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(error(version, e.code(), &req.member_id));
    }
    if req.protocols.len() > crate::limits::GROUP_PROTOCOLS_PER_MEMBER_MAX {
        return Some(error(
            version,
            ResponseError::InvalidRequest.code(),
            &req.member_id,
        ));
    }
    let params = JoinParams {
        member_id: req.member_id.to_string(),
        instance_id: if version >= 5 {
            req.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        },
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer_addr.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = params.member_id.clone();
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        match shard.groups().join(&gid, params, now_ms()) {
            Reply::Now(r) => r,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult {
                error: ResponseError::CoordinatorNotAvailable.code(),
                generation: -1,
                ..Default::default()
            }),
        }
    })
    .await;
    Some(match r {
        Ok(r) => response(version, r),
        Err(e) => error(version, e.code(), &member_id),
    })
}
