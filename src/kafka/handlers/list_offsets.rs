//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3) and by timestamp.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::error;
use crate::kafka::{on_partition, RequestContext};
use crate::runtime::owner_shard;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 8 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(ctx: RequestContext, req: ListOffsetsRequest) -> Option<ListOffsetsResponse> {
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut topics = Vec::new();
    for t in req.topics {
        let meta = snap.topic(t.name.0.as_str());
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_timestamp(-1).with_offset(-1);
            if ctx.version() >= 4 {
                pr.leader_epoch = 0;
            }
            let Some(m) = meta.filter(|m| p.partition_index >= 0 && p.partition_index < m.partitions) else {
                pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                partitions.push(pr);
                continue;
            };
            let (part, ts) = (p.partition_index, p.timestamp);
            let r = on_partition(&ctx.shard, owner_shard(&m.id, part, n), m.name.clone(), part, move |log| async move {
                match ts {
                    LATEST => Ok((-1, log.high_watermark())),
                    EARLIEST => Ok((-1, log.log_start_offset())),
                    MAX_TIMESTAMP => Ok(max_timestamp_record(&log).await),
                    ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
                        Ok(Some((batch_offset, batch_ts))) => Ok(first_record_at_or_after(&log, batch_offset, ts, batch_offset).await.unwrap_or((batch_ts, batch_offset))),
                        Ok(None) => Ok((-1, -1)),
                        Err(e) => Err((error::storage(&e), e.to_string())),
                    },
                    _ => Err((ResponseError::InvalidRequest.code(), String::new())),
                }
            })
            .await
            .map_err(|e| e.0);
            match r {
                Ok((ts, off)) => {
                    pr.timestamp = ts;
                    pr.offset = off;
                }
                Err(code) => pr.error_code = code,
            }
            partitions.push(pr);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    Some(ListOffsetsResponse::default().with_topics(topics))
}

/// MAX_TIMESTAMP (-3): storage knows the largest timestamp and the batch carrying it first;
/// Kafka (since 3.8, KAFKA-16310) answers with the first *record* of that batch with that
/// timestamp, not the batch's last offset, so look inside the batch as for a timestamp lookup.
/// (Falls back to the batch's last offset when the batch cannot be read.)
async fn max_timestamp_record(log: &crate::storage::PartitionLog) -> (i64, i64) {
    let (ts, batch_last) = log.max_timestamp();
    if batch_last < 0 {
        return (ts, batch_last);
    }
    first_record_at_or_after(log, batch_last, ts, log.log_start_offset()).await.unwrap_or((ts, batch_last))
}

/// Storage finds the first batch whose max timestamp is at or after `ts`; Kafka answers with
/// the first *record* at or after it, so look inside that batch, streaming through its codec
/// (protocol/records.rs). None when the batch cannot be read or decoded, or would inflate past
/// `TIMESTAMP_LOOKUP_DECOMPRESSED_BYTES_MAX` (a compression bomb): the caller then answers with
/// the batch's base offset, which is at or before the exact answer, so a consumer seeking there
/// misses nothing (it reads a few earlier records of that batch too).
/// `batch_offset` is any offset of the batch to look in; records below `min_offset` are skipped.
async fn first_record_at_or_after(log: &crate::storage::PartitionLog, batch_offset: i64, ts: i64, min_offset: i64) -> Option<(i64, i64)> {
    let slice = log.read(batch_offset, 1, true).await.ok()?;
    let bytes = super::fetch::read_slice(&slice).await.ok()?;
    let limit = crate::limits::TIMESTAMP_LOOKUP_DECOMPRESSED_BYTES_MAX;
    match crate::protocol::records::first_record_at_or_after(&bytes, ts, min_offset, limit) {
        Ok(found) => found,
        Err(e) => {
            if crate::recorder::log_allowed("list_offsets.batch_undecodable") {
                let dir = log.dir().display();
                tracing::warn!(%dir, batch_offset, error = %e, "ListOffsets by timestamp: answering with the batch's base offset");
            }
            None
        }
    }
}
