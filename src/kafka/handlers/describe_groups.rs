//! DescribeGroups: state, protocol and members (with metadata and assignment) of each group.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::group;
use crate::kafka::RequestContext;
use crate::limits;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

pub async fn handle(
    ctx: RequestContext,
    req: DescribeGroupsRequest,
) -> Option<DescribeGroupsResponse> {
    let version = ctx.version();
    let mut out = Vec::new();
    for gid in req.groups.into_iter().take(limits::TOPICS_PER_REQUEST_MAX) {
        let id = gid.0.to_string();
        let d = DescribedGroup::default()
            .with_group_id(gid)
            .with_authorized_operations(i32::MIN);
        if let Err(e) = group::validate_group_id(&id) {
            out.push(
                d.with_error_code(e.code())
                    .with_group_state(StrBytes::from_static_str("Dead")),
            );
            continue;
        }
        let key = id.clone();
        match group::on_coordinator(
            &ctx.shard,
            &key,
            move |s| async move { s.groups().describe(&id) },
        )
        .await
        {
            Err(e) => out.push(d.with_error_code(e.code())),
            // v6 (KIP-1043) answers GROUP_ID_NOT_FOUND for a group that does not exist, where
            // older versions describe it as Dead; the Java client turns it into
            // GroupIdNotFoundException.
            Ok(g) if version >= 6 && g.state == "Dead" && g.members.is_empty() => {
                let msg = format!("Group {} not found.", d.group_id.0.as_str());
                out.push(
                    d.with_error_code(kafka_protocol::error::ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(StrBytes::from_string(msg)))
                        .with_group_state(StrBytes::from_static_str("Dead")),
                );
            }
            Ok(g) => {
                let members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                            .with_client_id(StrBytes::from_string(m.client_id))
                            .with_client_host(StrBytes::from_string(m.client_host))
                            .with_member_metadata(m.metadata)
                            .with_member_assignment(m.assignment)
                    })
                    .collect();
                out.push(
                    d.with_group_state(StrBytes::from_static_str(g.state))
                        .with_protocol_type(StrBytes::from_string(g.protocol_type))
                        .with_protocol_data(StrBytes::from_string(g.protocol))
                        .with_members(members),
                );
            }
        }
    }
    Some(DescribeGroupsResponse::default().with_groups(out))
}
