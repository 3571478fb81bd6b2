//! DeleteRecords: move a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::error;
use crate::kafka::{on_partition, RequestContext};
use crate::runtime::owner_shard;
use crate::cluster::ClusterOf;
use crate::cluster::ClusterShard;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub async fn handle(
    ctx: RequestContext,
    req: DeleteRecordsRequest,
) -> Option<DeleteRecordsResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut topics = Vec::new();
    for t in req.topics {
        let meta = snap.topic(t.name.0.as_str());
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(m) =
                meta.filter(|m| p.partition_index >= 0 && p.partition_index < m.partitions)
            else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                partitions.push(pr);
                continue;
            };
            let (part, offset) = (p.partition_index, p.offset);
            if ctx.shard.shared.cluster().is_some() {
                match replicated(&ctx, owner_shard(&m.id, part, n), m.name.clone(), part, offset).await {
                    Ok(low) => pr.low_watermark = low,
                    Err(code) => pr.error_code = code,
                }
                partitions.push(pr);
                continue;
            }
            let r = on_partition(
                &ctx.shard,
                owner_shard(&m.id, part, n),
                m.name.clone(),
                part,
                move |log| async move {
                    // -1 means "up to the high watermark".
                    let target = if offset == -1 {
                        log.high_watermark()
                    } else {
                        offset
                    };
                    if target < 0 || target > log.high_watermark() {
                        return Err((ResponseError::OffsetOutOfRange.code(), String::new()));
                    }
                    log.delete_records(target)
                        .await
                        .map_err(|e| (error::storage(&e), e.to_string()))
                },
            )
            .await
            .map_err(|e| e.0);
            match r {
                Ok(low) => pr.low_watermark = low,
                Err(code) => pr.error_code = code,
            }
            partitions.push(pr);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    Some(DeleteRecordsResponse::default().with_topics(topics))
}

/// Cluster mode: the deletion is a Raft entry every replica applies in log order; answered
/// once it is committed and applied here (the leader).
async fn replicated(ctx: &RequestContext, owner: usize, topic: String, p: i32, offset: i64) -> Result<i64, i16> {
    let r = ctx
        .shard
        .run_on(owner, move |s| async move {
            let Some(replica) = s.replica_of(&topic, p) else {
                return Err(ResponseError::NotLeaderOrFollower.code());
            };
            if !replica.is_leader() {
                return Err(ResponseError::NotLeaderOrFollower.code());
            }
            let log = replica.log();
            let target = if offset == -1 { log.high_watermark() } else { offset };
            if target < 0 || target > log.high_watermark() {
                return Err(ResponseError::OffsetOutOfRange.code());
            }
            if target <= log.log_start_offset() {
                return Ok(log.log_start_offset());
            }
            let info = replica.propose(crate::cluster::replica::delete_records_entry(target)).await.map_err(|e| error::replica(&e).0)?;
            replica.wait_committed(info.last_offset).await.map_err(|e| error::replica(&e).0)?;
            Ok(replica.log().log_start_offset())
        })
        .await;
    r.unwrap_or_else(|e| Err(error::shard_gone(&e)))
}
