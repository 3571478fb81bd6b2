//! LeaveGroup: one member (v0-2) or a batch of member identities (v3+, KIP-345).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group;
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: RequestContext, req: LeaveGroupRequest) -> Option<LeaveGroupResponse> {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let resp = LeaveGroupResponse::default();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(resp.with_error_code(e.code()));
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .take(limits::GROUP_MEMBERS_MAX_DEFAULT)
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let gid = group_id.clone();
    let asked = members.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        shard.groups().leave(&gid, &members, now_ms())
    })
    .await;
    let codes = match r {
        Ok(c) => c,
        Err(e) => return Some(resp.with_error_code(e.code())),
    };
    if version < 3 {
        return Some(resp.with_error_code(codes.first().copied().unwrap_or(group::NONE)));
    }
    let members = asked
        .into_iter()
        .zip(codes)
        .map(|((m, i), c)| {
            MemberResponse::default()
                .with_member_id(StrBytes::from_string(m))
                .with_group_instance_id(i.map(StrBytes::from_string))
                .with_error_code(c)
        })
        .collect();
    Some(resp.with_members(members))
}
