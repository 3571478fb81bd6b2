//! Errors of the Kafka client, one enum for the whole module.

use std::net::SocketAddr;

use kafka_protocol::error::ResponseError;

/// Everything that can go wrong talking to a Kafka-compatible broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// A host:port could not be resolved.
    #[error("cannot resolve {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    /// Reading or writing the socket failed.
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The broker closed the connection (or it was closed after an earlier error).
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: SocketAddr, reason: String },
    /// A response frame announced more bytes than the client accepts.
    #[error("response frame of {len} bytes from {addr} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        addr: SocketAddr,
        len: i64,
        max: usize,
    },
    /// A response could not be decoded, or did not match the request.
    #[error("protocol error from {addr}: {detail}")]
    Protocol { addr: SocketAddr, detail: String },
    /// Encoding a request failed (a value out of the protocol's range).
    #[error("cannot encode {api} request: {detail}")]
    Encode { api: &'static str, detail: String },
    /// The broker and the client share no version of an API.
    #[error("broker {addr} supports no version of {api} that this client speaks (client {client_min}..={client_max}, broker {broker})")]
    UnsupportedVersion {
        addr: SocketAddr,
        api: &'static str,
        client_min: i16,
        client_max: i16,
        broker: String,
    },
    /// The broker answered with a Kafka error code.
    #[error(
        "{api} failed{}: {error}{}",
        context_suffix(context),
        message_suffix(message)
    )]
    Broker {
        api: &'static str,
        context: String,
        error: ResponseError,
        message: Option<String>,
    },
    /// The topic does not exist on the cluster.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The partition does not exist in the topic.
    #[error("topic '{topic}' has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
    /// A partition has no leader that the client can reach.
    #[error("topic '{topic}' partition {partition} has no available leader (leader id {leader})")]
    NoLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    /// The broker did not answer in time.
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u64 },
    /// Record batch encoding or decoding failed.
    #[error("record batch error: {0}")]
    Records(String),
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" for {context}")
    }
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}

impl ClientError {
    /// A partition's leader is not (yet) serving it: Kafka names the leaders of a new topic in
    /// Metadata a moment before they serve it, and a leader change looks the same. Worth a
    /// retry after refreshing metadata.
    pub fn is_leader_not_ready(&self) -> bool {
        match self {
            ClientError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnknownLeaderEpoch
            ),
            ClientError::NoLeader { .. } | ClientError::UnknownTopic(_) => true,
            _ => false,
        }
    }

    /// Builds a broker error from a non-zero Kafka error code, or returns `Ok` for code 0.
    pub fn check(
        api: &'static str,
        context: impl FnOnce() -> String,
        code: i16,
        message: Option<&str>,
    ) -> Result<(), ClientError> {
        use kafka_protocol::error::ParseResponseErrorCode;
        match code.err() {
            None => Ok(()),
            Some(error) => Err(ClientError::Broker {
                api,
                context: context(),
                error,
                message: message.map(str::to_owned),
            }),
        }
    }

    /// The Kafka error, if this is a broker error.
    pub fn response_error(&self) -> Option<ResponseError> {
        match self {
            ClientError::Broker { error, .. } => Some(*error),
            _ => None,
        }
    }
}
