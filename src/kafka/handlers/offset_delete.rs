//! OffsetDelete: removes committed offsets of partitions the group no longer subscribes to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::VersionRange;

use crate::group;
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::now_ms;
use crate::group::GroupShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: RequestContext, req: OffsetDeleteRequest) -> Option<OffsetDeleteResponse> {
    let group_id = req.group_id.0.to_string();
    let resp = OffsetDeleteResponse::default();
    if let Err(e) = group::validate_group_id(&group_id) {
        return Some(resp.with_error_code(e.code()));
    }
    let parts: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .take(limits::PARTITIONS_TOTAL_MAX)
        .collect();
    let gid = group_id.clone();
    let r = group::on_coordinator(&ctx.shard, &group_id, move |shard| async move {
        shard.groups().delete_offsets(&gid, parts, now_ms()).await
    })
    .await;
    let (code, codes) = match r {
        Ok(x) => x,
        Err(e) => return Some(resp.with_error_code(e.code())),
    };
    if code != group::NONE {
        return Some(resp.with_error_code(code));
    }
    let mut codes = codes.into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(group::NONE))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Some(resp.with_topics(topics))
}
