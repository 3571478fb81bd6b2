//! ListGroups: the groups of every coordinator shard, optionally filtered by state (v4+) and
//! type (v5+: "classic" or "consumer").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::RequestContext;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: RequestContext, req: ListGroupsRequest) -> Option<ListGroupsResponse> {
    let mut groups = Vec::new();
    for shard in 0..ctx.shard.shared.shard_count() {
        match ctx
            .shard
            .run_on(shard, |s| async move { s.groups().list() })
            .await
        {
            Ok(l) => groups.extend(l),
            Err(e) => {
                return Some(
                    ListGroupsResponse::default()
                        .with_error_code(crate::kafka::error::shard_gone(&e)),
                )
            }
        }
    }
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let listed = groups
        .into_iter()
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|(_, _, _, kind)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(id, pt, state, kind)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(pt))
                .with_group_state(StrBytes::from_static_str(state))
                .with_group_type(StrBytes::from_static_str(kind))
        })
        .collect();
    Some(ListGroupsResponse::default().with_groups(listed))
}
