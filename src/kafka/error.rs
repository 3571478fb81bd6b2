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
