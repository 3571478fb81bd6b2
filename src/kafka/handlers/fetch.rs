//! Fetch: whole record batches as stored, up to the high watermark, with long-poll.
//!
//! Each partition is read on the shard that owns it, which answers with a [`ReadSlice`]: a
//! handle to the segment file and a byte range. This shard (the connection's) then reads that
//! range with io_uring. A fetch that has less than `min_bytes` waits until an owner reports a
//! new high watermark or `max_wait_ms` passes; owners wake it, nothing polls.
//! Fetch sessions (KIP-227) are not kept: every response says session 0, so clients send
//! full fetch requests, which Kafka clients support.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::driver::op::BufResultExt;
use futures::channel::oneshot;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::VersionRange;

use crate::kafka::error;
use crate::kafka::RequestContext;
use crate::limits;
use crate::runtime::{owner_shard, Shard};
use crate::storage::ReadSlice;

pub const VERSIONS: VersionRange = VersionRange { min: 4, max: 16 };

/// One requested partition, resolved against the catalog.
struct Wanted {
    topic_index: usize,
    topic: Option<String>,
    partition: i32,
    owner: usize,
    fetch_offset: i64,
    partition_max_bytes: i32,
}

/// Reads `slice` from its segment file with io_uring on this shard.
pub async fn read_slice(slice: &ReadSlice) -> std::io::Result<Bytes> {
    let len = slice.len as usize;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let file: Arc<std::fs::File> = slice.file.clone();
    while buf.len() < len {
        let done = buf.len();
        let op = compio::driver::op::ReadAt::new(file.clone(), slice.position + done as u64, buf.slice(done..));
        // SAFETY: the kernel wrote `n` bytes into the slice; map_advanced records them.
        let BufResult(res, slice) = unsafe { compio::runtime::submit(op).await.into_inner().map_advanced() };
        buf = slice.into_inner();
        match res {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment shorter than its index says")),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Bytes::from(buf))
}

pub async fn handle(ctx: RequestContext, req: FetchRequest) -> Option<FetchResponse> {
    let version = ctx.version();
    if req.session_id != 0 {
        // We never hand out sessions; the client falls back to full fetches.
        return Some(FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()));
    }
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = if version >= 13 { snap.topic_by_id(&t.topic_id) } else { snap.topic(t.topic.0.as_str()) };
        topics.push(FetchableTopicResponse::default().with_topic(t.topic.clone()).with_topic_id(t.topic_id));
        for p in &t.partitions {
            let (topic, owner) = match meta {
                Some(m) if p.partition >= 0 && p.partition < m.partitions => (Some(m.name.clone()), owner_shard(&m.id, p.partition, n)),
                _ => (None, 0),
            };
            wanted.push(Wanted {
                topic_index: ti,
                topic,
                partition: p.partition,
                owner,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
            });
        }
    }
    let unknown = if version >= 13 { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, limits::FETCH_WAIT_MS_MAX) as u64);
    let deadline = Instant::now() + max_wait;
    let max_bytes = if req.max_bytes <= 0 { limits::FETCH_RESPONSE_BYTES_MAX } else { req.max_bytes.min(limits::FETCH_RESPONSE_BYTES_MAX) };
    let min_bytes = req.min_bytes.max(0) as usize;
    loop {
        let mut out: Vec<PartitionData> = Vec::with_capacity(wanted.len());
        let mut total = 0usize;
        let mut any_error = false;
        let mut seen_hwm = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let mut pd = PartitionData::default().with_partition_index(w.partition).with_high_watermark(-1).with_last_stable_offset(-1).with_log_start_offset(-1);
            let Some(topic) = w.topic.clone() else {
                pd.error_code = unknown.code();
                any_error = true;
                seen_hwm.push(None);
                out.push(pd);
                continue;
            };
            let budget = (max_bytes as usize).saturating_sub(total).min(w.partition_max_bytes.max(0) as usize) as u32;
            let min_one = total == 0;
            let (p, off) = (w.partition, w.fetch_offset);
            let r = ctx
                .shard
                .run_on(w.owner, move |s| async move {
                    match s.log(&topic, p) {
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                        Some(log) => log.read(off, budget, min_one).await.map_err(|e| {
                            if !matches!(e, crate::storage::StorageError::OffsetOutOfRange { .. }) && crate::metrics::log_allowed("fetch.read_failed") {
                                tracing::warn!(topic = %topic, partition = p, error = %e, "read failed");
                            }
                            error::storage(&e)
                        }),
                    }
                })
                .await
                .unwrap_or_else(|e| Err(error::shard_gone(&e)));
            match r {
                Ok(slice) => {
                    pd.high_watermark = slice.high_watermark;
                    pd.last_stable_offset = slice.high_watermark;
                    pd.log_start_offset = slice.log_start_offset;
                    seen_hwm.push(Some(slice.high_watermark));
                    if slice.len > 0 && (budget > 0 || min_one) {
                        match read_slice(&slice).await {
                            Ok(bytes) => {
                                crate::metrics::topic_out(w.topic.as_deref().unwrap_or(""), &bytes);
                                total += bytes.len();
                                pd.records = Some(bytes);
                            }
                            Err(e) => {
                                tracing::error!(partition = w.partition, error = %e, "reading segment failed");
                                pd.error_code = ResponseError::KafkaStorageError.code();
                                any_error = true;
                            }
                        }
                    } else {
                        pd.records = Some(Bytes::new());
                    }
                }
                Err(code) => {
                    pd.error_code = code;
                    any_error = true;
                    seen_hwm.push(None);
                }
            }
            out.push(pd);
        }
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || wanted.is_empty() {
            for (w, pd) in wanted.iter().zip(out) {
                if let Some(t) = topics.get_mut(w.topic_index) {
                    t.partitions.push(pd);
                }
            }
            return Some(FetchResponse::default().with_session_id(0).with_responses(topics));
        }
        wait_for_any(&ctx.shard, &wanted, &seen_hwm, deadline - now).await;
    }
}

/// Waits until one of the partitions' high watermark moves past what we saw, or `timeout`.
async fn wait_for_any(shard: &Rc<Shard>, wanted: &[Wanted], seen: &[Option<i64>], timeout: Duration) {
    // Dropping `_cancel` (when this function returns) ends every remote waiter.
    let (_cancel, cancelled) = oneshot::channel::<()>();
    let cancelled = cancelled.shared();
    let mut waits = Vec::new();
    for (w, hwm) in wanted.iter().zip(seen) {
        let (Some(topic), Some(hwm)) = (w.topic.clone(), *hwm) else { continue };
        let p = w.partition;
        let cancelled = cancelled.clone();
        waits.push(Box::pin(shard.run_on(w.owner, move |s| async move {
            let Some(log) = s.log(&topic, p) else { return };
            if log.high_watermark() != hwm {
                return;
            }
            futures::future::select(Box::pin(log.hwm_changed()), cancelled).await;
        })));
    }
    if waits.is_empty() {
        compio::time::sleep(timeout).await;
        return;
    }
    let _ = compio::time::timeout(timeout, futures::future::select_all(waits)).await;
}
