//! Every bound in Sluice, named, with its unit last in the name.
//! A value here is checked where data enters; nothing grows without a bound.

/// Default `socket.request.max.bytes` (Kafka's default: 100 MiB).
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: u32 = 100 * 1024 * 1024;
/// Default `message.max.bytes` (Kafka's default: 1 MiB + 12 bytes of log overhead).
pub const MESSAGE_MAX_BYTES_DEFAULT: u32 = 1024 * 1024 + 12;
/// Default `max.connections` for the whole broker.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Requests read from one connection and not yet answered (Kafka: `queued.max.requests`
/// is per broker; clients keep at most 5 in flight, we allow headroom for pipelining tools).
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 32;
/// Jobs queued from one shard to another before the sender waits (back-pressure).
pub const CROSS_SHARD_QUEUE_JOBS_MAX: usize = 1024;
/// Topic name length (Kafka: 249 characters).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// Partitions in the whole broker (every one holds open files).
pub const PARTITIONS_TOTAL_MAX: usize = 50_000;
/// Topics in one CreateTopics / DeleteTopics / Metadata request.
pub const TOPICS_PER_REQUEST_MAX: usize = 10_000;
/// Longest a Fetch may long-poll, whatever the client asks (Kafka caps it by its request timeout).
pub const FETCH_WAIT_MS_MAX: i32 = 60_000;
/// Bytes one Fetch response may carry, whatever the client asks.
pub const FETCH_RESPONSE_BYTES_MAX: i32 = 64 * 1024 * 1024;
/// Bytes of the catalog file; a larger one is refused as corrupt.
pub const CATALOG_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Interval between storage housekeeping passes (retention, segment.ms rolls).
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 5_000;
