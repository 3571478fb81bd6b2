//! The single mapping from internal errors to Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::runtime::ShardGone;
use crate::storage::StorageError;

pub type Code = i16;

pub const NONE: Code = 0;

pub fn code(e: ResponseError) -> Code {
    e.code()
}

pub fn storage(e: &StorageError) -> Code {
    use ResponseError as R;
    match e {
        StorageError::OffsetOutOfRange { .. } => R::OffsetOutOfRange.code(),
        StorageError::CorruptRecord(_) => R::CorruptMessage.code(),
        StorageError::RecordTooLarge { .. } => R::MessageTooLarge.code(),
        StorageError::OutOfOrderSequence { .. } => R::OutOfOrderSequenceNumber.code(),
        StorageError::ProducerFenced { .. } => R::InvalidProducerEpoch.code(),
        StorageError::Io { .. }
        | StorageError::NoSpace { .. }
        | StorageError::Corrupt { .. }
        | StorageError::Offline { .. } => R::KafkaStorageError.code(),
        #[allow(unreachable_patterns)]
        _ => R::UnknownServerError.code(),
    }
}

pub fn shard_gone(_: &ShardGone) -> Code {
    // The broker is shutting down: a retriable error tells the client to try again elsewhere.
    ResponseError::NotLeaderOrFollower.code()
}

/// A cluster metadata operation's failure as Kafka reports it.
pub fn meta(e: &crate::cluster::metadata::MetaError) -> ResponseError {
    use crate::cluster::metadata::MetaErrorKind as K;
    match e.kind {
        K::NotACluster => ResponseError::InvalidRequest,
        K::NotController => ResponseError::NotController,
        K::Timeout => ResponseError::RequestTimedOut,
        K::Storage => ResponseError::KafkaStorageError,
        K::TopicExists => ResponseError::TopicAlreadyExists,
        K::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        K::Internal => ResponseError::UnknownServerError,
    }
}

/// A replica's refusal of a proposal, or of a wait for its commit, as Kafka reports it.
pub fn replica(e: &crate::cluster::replica::ReplicaError) -> crate::kafka::KafkaError {
    use crate::cluster::replica::ReplicaError as E;
    match e {
        E::NotLeader(m) => (ResponseError::NotLeaderOrFollower.code(), m.clone()),
        E::Storage(s) => (storage(s), s.to_string()),
    }
}
