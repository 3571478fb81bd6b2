//! Fetch: whole record batches as stored, up to the high watermark, with long-poll.
//!
//! Each partition is read on the shard that owns it, which answers with a [`ReadSlice`]: a
//! handle to the segment file and a byte range. The response is encoded here by hand (see
//! [`encode`]) around those ranges: small ones are read into the frame with io_uring, large
//! ones become [`Part::File`] and the connection splices them from the file to the socket
//! (zero-copy). A fetch that has less than `min_bytes` waits until an owner reports a
//! new high watermark or `max_wait_ms` passes; owners wake it, nothing polls.
//! Fetch sessions (KIP-227) are not kept: every response says session 0, so clients send
//! full fetch requests, which Kafka clients support.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::driver::op::BufResultExt;
use futures::channel::oneshot;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::kafka::error;
use crate::kafka::{on_partition, Part, Reply, RequestContext};
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

/// Ranges up to this size are read into the response frame; larger ones are spliced.
const INLINE_RECORDS_BYTES_MAX: u32 = 32 * 1024;

/// What one partition answers.
pub struct PartitionOut {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: RecordsOut,
}

pub enum RecordsOut {
    Empty,
    Bytes(Bytes),
    File { file: Arc<std::fs::File>, position: u64, len: u32 },
}

pub struct TopicOut {
    pub name: StrBytes,
    pub id: Uuid,
    pub partitions: Vec<PartitionOut>,
}

pub async fn handle(ctx: RequestContext, req: FetchRequest) -> Reply {
    let version = ctx.version();
    let correlation_id = ctx.header.correlation_id;
    let read_committed = req.isolation_level == 1;
    if req.session_id != 0 {
        // We never hand out sessions; the client falls back to full fetches.
        let code = ResponseError::FetchSessionIdNotFound.code();
        return Reply::Parts(encode(version, correlation_id, code, &[], read_committed));
    }
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut topics: Vec<TopicOut> = Vec::new();
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = if version >= 13 { snap.topic_by_id(&t.topic_id) } else { snap.topic(t.topic.0.as_str()) };
        topics.push(TopicOut { name: t.topic.0.clone(), id: t.topic_id, partitions: Vec::new() });
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
        let mut out: Vec<PartitionOut> = Vec::with_capacity(wanted.len());
        let mut total = 0usize;
        let mut any_error = false;
        let mut seen_hwm = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let mut po = PartitionOut { index: w.partition, error_code: 0, high_watermark: -1, log_start_offset: -1, records: RecordsOut::Empty };
            let Some(topic) = w.topic.clone() else {
                po.error_code = unknown.code();
                any_error = true;
                seen_hwm.push(None);
                out.push(po);
                continue;
            };
            let budget = (max_bytes as usize).saturating_sub(total).min(w.partition_max_bytes.max(0) as usize) as u32;
            let min_one = total == 0;
            let (p, off) = (w.partition, w.fetch_offset);
            let r = on_partition(&ctx.shard, w.owner, topic.clone(), p, move |log| async move {
                log.read(off, budget, min_one).await.map_err(|e| {
                    if !matches!(e, crate::storage::StorageError::OffsetOutOfRange { .. }) && crate::recorder::log_allowed("fetch.read_failed") {
                        tracing::warn!(topic = %topic, partition = p, error = %e, "read failed");
                    }
                    (error::storage(&e), e.to_string())
                })
            })
            .await
            .map_err(|e| e.0);
            match r {
                Ok(slice) => {
                    po.high_watermark = slice.high_watermark;
                    po.log_start_offset = slice.log_start_offset;
                    seen_hwm.push(Some(slice.high_watermark));
                    if slice.len == 0 {
                        // nothing new
                    } else if slice.len <= INLINE_RECORDS_BYTES_MAX {
                        match read_slice(&slice).await {
                            Ok(bytes) => {
                                crate::recorder::topic_out(w.topic.as_deref().unwrap_or(""), &bytes);
                                total += bytes.len();
                                po.records = RecordsOut::Bytes(bytes);
                            }
                            Err(e) => {
                                if crate::recorder::log_allowed("fetch.segment_read_failed") {
                                    tracing::error!(partition = w.partition, error = %e, "reading segment failed");
                                }
                                po.error_code = ResponseError::KafkaStorageError.code();
                                any_error = true;
                            }
                        }
                    } else {
                        crate::recorder::topic_out_zero_copy(w.topic.as_deref().unwrap_or(""), slice.len);
                        total += slice.len as usize;
                        po.records = RecordsOut::File { file: slice.file.clone(), position: slice.position, len: slice.len };
                    }
                }
                Err(code) => {
                    po.error_code = code;
                    any_error = true;
                    seen_hwm.push(None);
                }
            }
            out.push(po);
        }
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || wanted.is_empty() {
            for (w, po) in wanted.iter().zip(out) {
                if let Some(t) = topics.get_mut(w.topic_index) {
                    t.partitions.push(po);
                }
            }
            return Reply::Parts(encode(version, correlation_id, 0, &topics, read_committed));
        }
        wait_for_any(&ctx.shard, &wanted, &seen_hwm, deadline - now).await;
    }
}

/// Encodes a Fetch response (v4..=16) around its records, which stay where they are.
///
/// Layout (Kafka's FetchResponse schema): throttle_time_ms, error_code and session_id (v7+),
/// then topics (name up to v12, id from v13) of partitions: index, error_code, high_watermark,
/// last_stable_offset, log_start_offset (v5+), aborted_transactions (null for
/// read_uncommitted, empty otherwise), preferred_read_replica (v11+), records. v12+ is the
/// flexible encoding: compact arrays/strings/bytes and an empty tagged-field section after the
/// header, each struct, and the body.
pub fn encode(version: i16, correlation_id: i32, error_code: i16, topics: &[TopicOut], read_committed: bool) -> Vec<Part> {
    let flexible = version >= 12;
    let mut parts: Vec<Part> = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // frame length, patched below
    buf.put_i32(correlation_id);
    if flexible {
        buf.put_u8(0); // header tagged fields
    }
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(error_code);
        buf.put_i32(0); // session_id: no fetch sessions
    }
    let put_len = |buf: &mut BytesMut, n: usize| {
        if flexible {
            put_uvarint(buf, n as u64 + 1);
        } else {
            buf.put_i32(n as i32);
        }
    };
    put_len(&mut buf, topics.len());
    for t in topics {
        if version >= 13 {
            buf.put_slice(t.id.as_bytes());
        } else {
            put_len(&mut buf, t.name.len());
            if !flexible {
                // Non-flexible strings carry an i16 length: undo the i32 written above.
                let at = buf.len() - 4;
                buf.truncate(at);
                buf.put_i16(t.name.len() as i16);
            }
            buf.put_slice(t.name.as_bytes());
        }
        put_len(&mut buf, t.partitions.len());
        for p in &t.partitions {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.high_watermark); // last_stable_offset: no transactions
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            if read_committed {
                put_len(&mut buf, 0);
            } else if flexible {
                buf.put_u8(0); // null compact array
            } else {
                buf.put_i32(-1); // null array
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            match &p.records {
                RecordsOut::Empty => put_len(&mut buf, 0),
                RecordsOut::Bytes(b) => {
                    put_len(&mut buf, b.len());
                    buf.put_slice(b);
                }
                RecordsOut::File { file, position, len } => {
                    put_len(&mut buf, *len as usize);
                    parts.push(Part::Bytes(buf.split().freeze()));
                    parts.push(Part::File { file: file.clone(), position: *position, len: *len });
                }
            }
            if flexible {
                buf.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        buf.put_u8(0); // body tagged fields
    }
    parts.push(Part::Bytes(buf.freeze()));
    let total: usize = parts
        .iter()
        .map(|p| match p {
            Part::Bytes(b) => b.len(),
            Part::File { len, .. } => *len as usize,
        })
        .sum();
    // Patch the frame length into the first part (it starts with the 4 placeholder bytes).
    if let Some(Part::Bytes(first)) = parts.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
        *first = b.freeze();
    }
    parts
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
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
