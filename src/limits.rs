//! Every bound in Sluice, named, with its unit last in the name.
//! A value here is checked where data enters; nothing grows without a bound.

// ---- storage (src/storage) ----

/// Largest single RecordBatch accepted (wire size incl. the 12-byte log overhead),
/// whatever `max.message.bytes` says; also bounds recovery's read buffer.
pub const BATCH_BYTES_MAX: u32 = 64 * 1024 * 1024;
/// Largest `records` blob accepted by one `PartitionLog::append` call.
pub const APPEND_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Largest segment: positions in `.index` are u32 and Kafka's segment.bytes is an i32.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Smallest segment.bytes accepted (Kafka's own lower bound is 14 bytes; one header is 61).
pub const SEGMENT_BYTES_MIN: u64 = 61;
/// Idempotent producer: batches remembered per producer for duplicate detection (Kafka: 5).
pub const PRODUCER_BATCHES_RETAINED_COUNT: usize = 5;
/// Idempotent producer: producer ids tracked per partition; the least recently written is evicted.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 65_536;
/// Read size used when scanning batch headers (reads, time lookups, clean recovery).
pub const HEADER_SCAN_READ_BYTES: usize = 8 * 1024;
/// Read size used when validating whole segments during recovery.
pub const RECOVERY_READ_BYTES: usize = 1024 * 1024;
/// Hwm long-poll waiters are pruned of abandoned entries when the list reaches this length.
pub const HWM_WAITERS_PRUNE_COUNT: usize = 1024;
/// Largest producer snapshot file read at open.
pub const PRODUCER_SNAPSHOT_BYTES_MAX: u64 = 64 * 1024 * 1024;
