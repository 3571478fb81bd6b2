//! DeleteGroups: an empty group and its committed offsets are removed durably.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::group;
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub async fn handle(ctx: RequestContext, req: DeleteGroupsRequest) -> Option<DeleteGroupsResponse> {
    let mut results = Vec::new();
    for gid in req
        .groups_names
        .into_iter()
        .take(limits::TOPICS_PER_REQUEST_MAX)
    {
        let id = gid.0.to_string();
        let code = match group::validate_group_id(&id) {
            Err(e) => e.code(),
            Ok(()) => {
                let key = id.clone();
                group::on_coordinator(&ctx.shard, &key, move |s| async move {
                    s.groups().delete_group(&id, now_ms()).await
                })
                .await
                .unwrap_or_else(|e| e.code())
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(gid)
                .with_error_code(code),
        );
    }
    Some(DeleteGroupsResponse::default().with_results(results))
}
