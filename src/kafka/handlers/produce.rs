//! Produce (acks 0, 1 and all).
//!
//! Two phases, so that one connection's pipelined produce requests are appended in the order
//! they arrived while still sharing fsyncs: [`submit`] appends every partition's batches (the
//! connection reads its next request only after this), then the returned future waits for
//! durability (acks=all) and builds the response. Each partition's append runs on the shard
//! that owns it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::kafka::error;
use crate::kafka::{on_partition, KafkaError, Reply, RequestContext};
use crate::protocol;
use crate::recorder::{produce_stage, ProduceStage};
use crate::runtime::{owner_shard, Shard};
use crate::storage::AppendInfo;
use crate::cluster::ClusterOf;
use crate::cluster::ClusterShard;

pub const VERSIONS: VersionRange = VersionRange { min: 3, max: 11 };

/// Where one partition stands: its append's result, or the error code and message.
type Outcome = Result<AppendInfo, KafkaError>;

struct PartitionJob {
    topic_index: usize,
    partition: i32,
    owner: usize,
    topic: String,
    outcome: Outcome,
    /// When its append finished writing (single node; for the stage timings).
    written_at: Option<Instant>,
}

fn fail(code: ResponseError, msg: impl Into<String>) -> Outcome {
    Err((code.code(), msg.into()))
}

/// Phase 1: validate and append. Returns the future of phase 2 (durability + response).
pub async fn submit(ctx: RequestContext, mut body: Bytes) -> LocalBoxFuture<'static, Reply> {
    let version = ctx.version();
    let received = Instant::now();
    let req: ProduceRequest = match protocol::decode_body(&mut body, version) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("malformed Produce v{version} request: {e}");
            return async move { Reply::Close(msg) }.boxed_local();
        }
    };
    let acks = req.acks;
    let snap = ctx.shard.shared.catalog.snapshot();
    let n = ctx.shard.shared.shard_count();
    let mut jobs = Vec::new();
    let mut topic_names = Vec::new();
    let mut appends = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        topic_names.push(td.name.clone());
        let meta = snap.topic(td.name.0.as_str());
        for pd in td.partition_data {
            let p = pd.index;
            let mut job = PartitionJob {
                topic_index: ti,
                partition: p,
                owner: 0,
                topic: td.name.0.to_string(),
                outcome: fail(ResponseError::UnknownServerError, ""),
                written_at: None,
            };
            let pre = if !(-1..=1).contains(&acks) {
                Some(fail(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be 0, 1 or -1, got {acks}"),
                ))
            } else if req.transactional_id.is_some() {
                Some(fail(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not supported yet",
                ))
            } else {
                match meta {
                    Some(m) if p >= 0 && p < m.partitions => match &pd.records {
                        Some(r) if !r.is_empty() => {
                            job.owner = owner_shard(&m.id, p, n);
                            None
                        }
                        _ => Some(fail(
                            ResponseError::CorruptMessage,
                            "no record batch in the request",
                        )),
                    },
                    _ => Some(fail(
                        ResponseError::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )),
                }
            };
            match pre {
                Some(o) => job.outcome = o,
                None => {
                    let mut records = pd.records.unwrap_or_default();
                    // Topic compression.type other than `producer`: Kafka recompresses on the
                    // broker. Done here, on the shard that read the request.
                    let codec = meta
                        .and_then(|m| m.configs.get("compression.type"))
                        .and_then(|c| crate::protocol::records::codec_of_compression_type(c));
                    if let Some(codec) = codec {
                        match crate::protocol::records::recompress(&records, codec, crate::limits::RECOMPRESS_DECOMPRESSED_BYTES_MAX) {
                            Ok(Some(b)) => records = b,
                            Ok(None) => {}
                            Err(e) => {
                                let code = match e {
                                    crate::protocol::records::ScanError::TooLarge { .. } => ResponseError::MessageTooLarge,
                                    crate::protocol::records::ScanError::Corrupt(_) => ResponseError::CorruptMessage,
                                };
                                job.outcome = fail(code, e.to_string());
                                jobs.push(job);
                                continue;
                            }
                        }
                    }
                    let topic = job.topic.clone();
                    appends.push((
                        jobs.len(),
                        append_on_owner(&ctx.shard, job.owner, topic, p, records, received),
                    ));
                }
            }
            jobs.push(job);
        }
    }
    // Appends to different partitions proceed together; each partition keeps arrival order
    // because this connection submits its next request only after these are written.
    let (idx, futs): (Vec<usize>, Vec<_>) = appends.into_iter().unzip();
    for (i, (r, written_at)) in idx.into_iter().zip(futures::future::join_all(futs).await) {
        jobs[i].outcome = r;
        jobs[i].written_at = written_at;
    }
    if acks == 0 {
        return async { Reply::Nothing }.boxed_local();
    }
    let shard = ctx.shard.clone();
    let correlation_id = ctx.header.correlation_id;
    let timeout_ms = req.timeout_ms.clamp(0, 300_000) as u64;
    async move {
        let mut durable = Vec::new();
        if acks == -1 {
            let waits = jobs.iter().map(|j| {
                let Ok(info) = &j.outcome else { return None };
                let (topic, p, last) = (j.topic.clone(), j.partition, info.last_offset);
                Some(wait_durable_on_owner(&shard, j.owner, topic, p, last, j.written_at))
            });
            let waits: Vec<_> = waits.collect();
            let all = futures::future::join_all(waits.into_iter().map(|w| async move {
                match w {
                    Some(w) => Some(w.await),
                    None => None,
                }
            }));
            match compio::time::timeout(Duration::from_millis(timeout_ms.max(1)), all).await {
                Ok(results) => {
                    for (j, r) in jobs.iter_mut().zip(results) {
                        match r {
                            Some(Err(e)) => j.outcome = Err(e),
                            Some(Ok(Some(durable_at))) => durable.push(durable_at),
                            _ => {}
                        }
                    }
                }
                Err(_) => {
                    for j in jobs.iter_mut() {
                        if j.outcome.is_ok() {
                            j.outcome = fail(
                                ResponseError::RequestTimedOut,
                                "not durable within the request timeout",
                            );
                        }
                    }
                }
            }
        }
        let mut topics: Vec<TopicProduceResponse> = topic_names
            .into_iter()
            .map(|name| TopicProduceResponse::default().with_name(name))
            .collect();
        for j in jobs {
            let mut pr = PartitionProduceResponse::default()
                .with_index(j.partition)
                .with_log_append_time_ms(-1);
            match j.outcome {
                Ok(info) => {
                    pr.base_offset = info.base_offset;
                    pr.log_start_offset = info.log_start_offset;
                }
                Err((code, msg)) => {
                    pr.error_code = code;
                    pr.base_offset = -1;
                    pr.log_start_offset = -1;
                    pr.error_message = Some(StrBytes::from_string(msg));
                }
            }
            if let Some(t) = topics.get_mut(j.topic_index) {
                t.partition_responses.push(pr);
            }
        }
        let resp = ProduceResponse::default().with_responses(topics);
        let reply = match protocol::encode_response(ApiKey::Produce, version, correlation_id, &resp) {
            Ok(f) => Reply::Frame(f),
            Err(e) => Reply::Close(e.to_string()),
        };
        let now = Instant::now();
        for at in durable {
            produce_stage(ProduceStage::Respond, now.saturating_duration_since(at));
        }
        reply
    }
    .boxed_local()
}

async fn append_on_owner(
    shard: &Rc<Shard>,
    owner: usize,
    topic: String,
    p: i32,
    records: Bytes,
    received: Instant,
) -> (Outcome, Option<Instant>) {
    if shard.shared.cluster().is_some() {
        return (propose_on_owner(shard, owner, topic, p, records).await, None);
    }
    let r = on_partition(shard, owner, topic.clone(), p, move |log| async move {
        let bytes = records.len() as u64;
        let start = Instant::now();
        produce_stage(ProduceStage::Queued, start.saturating_duration_since(received));
        let r = log.append(records, 0).await;
        let written_at = Instant::now();
        produce_stage(ProduceStage::Write, written_at - start);
        let r = r.map_err(|e| {
            if !matches!(
                e,
                crate::storage::StorageError::CorruptRecord(_)
                    | crate::storage::StorageError::RecordTooLarge { .. }
            ) && crate::recorder::log_allowed("produce.append_failed")
            {
                tracing::warn!(topic = %topic, partition = p, error = %e, "append failed");
            }
            (error::storage(&e), e.to_string())
        });
        if let Some(info) = r.as_ref().ok().filter(|i| !i.duplicate) {
            crate::recorder::topic_in(
                &topic,
                bytes,
                (info.last_offset - info.base_offset + 1).max(0) as u64,
            );
        }
        r.map(|info| (info, written_at))
    })
    .await;
    match r {
        Ok((info, written_at)) => (Ok(info), Some(written_at)),
        Err(e) => (Err(e), None),
    }
}

/// Cluster mode: each batch becomes one Raft entry, proposed on the leader; resolves once it is
/// written and fdatasynced on the leader (the acks=1 point) with its offsets.
async fn propose_on_owner(
    shard: &Rc<Shard>,
    owner: usize,
    topic: String,
    p: i32,
    records: Bytes,
) -> Outcome {
    let t = topic.clone();
    let bytes = records.len() as u64;
    let r = shard
        .run_on(owner, move |s| async move {
            let Some(replica) = s.replica_of(&t, p) else {
                return Err((
                    ResponseError::NotLeaderOrFollower.code(),
                    format!("this broker holds no replica of {t}-{p}"),
                ));
            };
            let max = replica.log().config().message_max_bytes;
            let batches = match crate::storage::batch::validate_all(&records, max) {
                Ok(b) => b,
                Err(e) => {
                    let e = crate::storage::StorageError::from(e);
                    return Err((error::storage(&e), e.to_string()));
                }
            };
            // One entry per batch (a Raft entry is exactly one batch of the log); proposed
            // together, so they stay in order.
            let mut props = Vec::with_capacity(batches.len());
            for (i, (pos, h)) in batches.iter().enumerate() {
                let end = batches.get(i + 1).map_or(records.len(), |(next, _)| *next);
                debug_assert_eq!(end - pos, h.total_bytes() as usize);
                props.push(replica.propose(records.slice(*pos..end)));
            }
            let mut first: Option<AppendInfo> = None;
            let mut last = None;
            for r in futures::future::join_all(props).await {
                let info = r.map_err(|e| error::replica(&e))?;
                first.get_or_insert(info);
                last = Some(info);
            }
            match (first, last) {
                (Some(f), Some(l)) => Ok(AppendInfo {
                    last_offset: l.last_offset,
                    ..f
                }),
                _ => Err((
                    ResponseError::CorruptMessage.code(),
                    "no record batch".to_string(),
                )),
            }
        })
        .await;
    let r = r.unwrap_or_else(|e| Err((error::shard_gone(&e), e.to_string())));
    if let Some(info) = r.as_ref().ok().filter(|i| !i.duplicate) {
        crate::recorder::topic_in(
            &topic,
            bytes,
            (info.last_offset - info.base_offset + 1).max(0) as u64,
        );
    }
    r
}

async fn wait_durable_on_owner(
    shard: &Rc<Shard>,
    owner: usize,
    topic: String,
    p: i32,
    last: i64,
    written_at: Option<Instant>,
) -> Result<Option<Instant>, KafkaError> {
    if shard.shared.cluster().is_some() {
        // acks=all in a cluster: committed (a majority has it fdatasynced).
        let r = shard
            .run_on(owner, move |s| async move {
                match s.replica_of(&topic, p) {
                    Some(r) => r.wait_committed(last).await.map(|()| None).map_err(|e| error::replica(&e)),
                    None => Err((
                        ResponseError::NotLeaderOrFollower.code(),
                        format!("this broker holds no replica of {topic}-{p}"),
                    )),
                }
            })
            .await;
        return r.unwrap_or_else(|e| Err((error::shard_gone(&e), e.to_string())));
    }
    on_partition(shard, owner, topic, p, move |log| async move {
        let times = log
            .wait_durable_timed(last)
            .await
            .map_err(|e| (error::storage(&e), e.to_string()))?;
        // A relaxed topic (no fsync) or a log that never flushed: no fsync stages.
        let (Some(t), Some(w)) = (times, written_at) else { return Ok(None) };
        if t.ended < w {
            return Ok(None); // durable by an fsync older than the write: flush policy relaxed
        }
        produce_stage(ProduceStage::FsyncWait, t.started.saturating_duration_since(w));
        produce_stage(ProduceStage::Fsync, t.ended - t.started);
        Ok(Some(t.ended))
    })
    .await
}
