//! Kafka API handling: one handler file per API under [`handlers`], each declaring the
//! versions it supports; [`handlers::APIS`] is the one table ApiVersions is derived from.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `kafka` uses the services (`cluster`, `group`), `runtime` and the bottom rows.

pub mod configs;
pub mod error;
pub mod handlers;
pub mod topics;

use std::net::SocketAddr;
use std::rc::Rc;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::runtime::Shard;
use crate::cluster::ClusterOf;
use crate::cluster::ClusterShard;

/// What a handler sees of the request besides its body.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub header: RequestHeader,
    pub api: ApiKey,
    /// The address the client connected to (advertised in Metadata when no
    /// `--advertised-listener` is set).
    pub local_addr: SocketAddr,
    pub peer_addr: SocketAddr,
}

impl RequestContext {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
}

/// The outcome of one request.
pub enum Reply {
    /// A complete response frame.
    Frame(Bytes),
    /// A response frame in pieces: bytes, and byte ranges of segment files that the
    /// connection sends from the file to the socket without copying them through user space.
    Parts(Vec<Part>),
    /// No response is sent (Produce with acks=0).
    Nothing,
    /// The request cannot be answered: close the connection (Kafka does the same for
    /// requests it cannot parse).
    Close(String),
}

/// A piece of a response frame.
pub enum Part {
    Bytes(Bytes),
    /// `len` bytes of `file` from `position` (a segment; valid even if since deleted).
    File {
        file: Arc<std::fs::File>,
        position: u64,
        len: u32,
    },
}

/// A Kafka error code with the message for the response (where the version has one).
pub type KafkaError = (i16, String);

/// Runs `f` with the log of `topic`/`partition` on `owner`, the shard that owns it.
/// UNKNOWN_TOPIC_OR_PARTITION when that shard has no such log (deleted meanwhile); a shard
/// that is gone (shutdown) maps to a retriable error.
pub async fn on_partition<T, F, Fut>(
    shard: &Rc<Shard>,
    owner: usize,
    topic: String,
    partition: i32,
    f: F,
) -> Result<T, KafkaError>
where
    F: FnOnce(crate::storage::PartitionLog) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, KafkaError>> + 'static,
    T: Send + 'static,
{
    let r = shard
        .run_on(owner, move |s| async move {
            // Cluster mode: only the leader serves a partition; clients re-route on this code.
            if let Some(r) = s.shared.cluster().and_then(|_| s.replica_of(&topic, partition)) {
                if !r.is_leader() {
                    return Err((
                        kafka_protocol::error::ResponseError::NotLeaderOrFollower.code(),
                        format!("this broker is not the leader of {topic}-{partition} (leader: node {})", r.leader_id()),
                    ));
                }
            }
            match s.log(&topic, partition) {
                Some(log) => f(log).await,
                None => Err((
                    kafka_protocol::error::ResponseError::UnknownTopicOrPartition.code(),
                    format!("partition {topic}-{partition} is not open on this broker"),
                )),
            }
        })
        .await;
    r.unwrap_or_else(|e| Err((error::shard_gone(&e), e.to_string())))
}
