//! Every bound in Sluice, named, with its unit last in the name.
//! A value here is checked where data enters; nothing grows without a bound.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `limits` uses nothing of the crate.

// ---- Client (src/client), used by the CLI tools and `sluice bench` ----

/// Largest response frame the client accepts from a broker, checked before allocating.
pub const CLIENT_RESPONSE_FRAME_BYTES_MAX: usize = 128 * 1024 * 1024;
/// Requests one client connection keeps in flight before `submit` waits for a response.
pub const CLIENT_IN_FLIGHT_REQUESTS_MAX: usize = 64;
/// Bytes the client asks a broker for in one Fetch response (all partitions).
pub const CLIENT_FETCH_BYTES_MAX: i32 = 16 * 1024 * 1024;
/// Bytes the client asks a broker for per partition in one Fetch response.
pub const CLIENT_FETCH_PARTITION_BYTES_MAX: i32 = 4 * 1024 * 1024;
/// Time a connection attempt may take before the client gives up.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Time the client waits for any one response before declaring the broker unresponsive.
pub const CLIENT_REQUEST_TIMEOUT_MS: u64 = 30_000;

// ---- CLI tools (src/cli) ----

/// Longest line `sluice produce` reads from stdin as one message.
pub const CLI_PRODUCE_LINE_BYTES_MAX: usize = 1024 * 1024;
/// Messages `sluice produce` puts in one Produce request.
pub const CLI_PRODUCE_BATCH_RECORDS_MAX: usize = 1000;

// ---- Load generator (src/bench) ----

/// Largest message `sluice bench` generates (it must hold the 8-byte timestamp stamp).
pub const BENCH_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Smallest message: the 8-byte intended-send-time stamp.
pub const BENCH_MESSAGE_BYTES_MIN: usize = 8;
/// Produce requests one bench producer keeps in flight.
pub const BENCH_PRODUCER_IN_FLIGHT_MAX: usize = 8;
/// Bytes of one produced record batch, upper bound for `--batch-bytes`.
pub const BENCH_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Producers, consumers, topics or partitions one bench run may ask for.
pub const BENCH_ENTITIES_MAX: usize = 10_000;
/// Longest measured phase of one bench run.
pub const BENCH_DURATION_S_MAX: u64 = 24 * 3600;
/// Time consumers keep draining after producers stop before the run ends.
pub const BENCH_DRAIN_MS_MAX: u64 = 5_000;
/// Largest latency the bench histograms track (larger values are clamped and counted).
pub const BENCH_LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
/// Size of a `--workload` file the bench reads.
pub const BENCH_WORKLOAD_FILE_BYTES_MAX: u64 = 1024 * 1024;

// ---- Broker (src/server, src/kafka, src/runtime) ----

/// Default `socket.request.max.bytes` (Kafka's default: 100 MiB).
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: u32 = 100 * 1024 * 1024;
/// Default `message.max.bytes` (Kafka's default: 1 MiB + 12 bytes of log overhead).
pub const MESSAGE_MAX_BYTES_DEFAULT: u32 = 1024 * 1024 + 12;
/// Default `max.connections` for the whole broker.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Requests read from one connection and not yet answered (Kafka: `queued.max.requests`
/// is per broker; clients keep at most 5 in flight, we allow headroom for pipelining tools).
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 32;
/// Shards (pinned executor threads) one broker may run.
pub const SHARDS_MAX: usize = 1024;
/// Jobs queued from one shard to another before the sender waits (back-pressure).
pub const CROSS_SHARD_QUEUE_JOBS_MAX: usize = 1024;
/// How often a shard retries sending to another shard's full inbox (a local timer, so no
/// cross-thread wake is needed; see runtime's module doc).
pub const CROSS_SHARD_FULL_RETRY_US: u64 = 500;
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

// ---- Metrics and logs (src/metrics, src/server/admin.rs) ----

/// Period of each shard's stall-detection tick.
pub const STALL_TICK_MS: u64 = 5;
/// A tick waking later than this counts as an executor stall (a task ran without yielding).
pub const STALL_LATENESS_US_MIN: u64 = 1_000;
/// A repeated warning (stalls, failing appends or reads) is logged at most once per interval.
pub const LOG_REPEAT_INTERVAL_MS: u64 = 10_000;
/// Longest a `/metrics` scrape waits for one shard's snapshot.
pub const SCRAPE_SHARD_MS_MAX: u64 = 5_000;
/// Largest request head the admin endpoint reads.
pub const ADMIN_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Longest the admin endpoint waits for a request head.
pub const ADMIN_REQUEST_MS_MAX: u64 = 5_000;
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
/// Bytes a ListOffsets-by-timestamp lookup inflates from one compressed batch while looking
/// for the first record at or after the timestamp; past it the lookup answers with the batch's
/// base offset (protocol/records.rs: bounds CPU time; memory is O(one record header) anyway).
pub const TIMESTAMP_LOOKUP_DECOMPRESSED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Hwm long-poll waiters are pruned of abandoned entries when the list reaches this length.
pub const HWM_WAITERS_PRUNE_COUNT: usize = 1024;
/// Largest producer snapshot file read at open.
pub const PRODUCER_SNAPSHOT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Default per-shard budget for request bytes read and not yet answered
/// (`queued.max.request.bytes`); past it connections stop reading their sockets.
pub const QUEUED_REQUEST_BYTES_PER_SHARD_DEFAULT: usize = 256 * 1024 * 1024;

// ---- consumer groups (src/group) ----

/// Group id length in bytes (Kafka has none; ids are stored with a u16 length in the offsets log).
pub const GROUP_ID_BYTES_MAX: usize = 1024;
/// Default `group.max.size`: members in one group (Kafka's default is unbounded).
pub const GROUP_MEMBERS_MAX_DEFAULT: usize = 10_000;
/// Bytes of protocol names + metadata one member may send in a JoinGroup (sticky assignors
/// carry owned partitions, so this is generous).
pub const GROUP_PROTOCOL_METADATA_BYTES_MAX: usize = 1024 * 1024;
/// Protocols (assignors) one member may offer in a JoinGroup (clients offer one to three).
pub const GROUP_PROTOCOLS_PER_MEMBER_MAX: usize = 64;
/// Groups one coordinator shard keeps in memory (members or committed offsets).
pub const GROUPS_PER_SHARD_MAX: usize = 100_000;
/// Default `offset.metadata.max.bytes` (Kafka's default); the log stores it with a u16 length.
pub const OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4096;
/// Largest record body in the offsets log; a larger length field is a corrupt tail.
pub const OFFSET_RECORD_BYTES_MAX: usize = 256 * 1024;
/// Offsets log size past which it is rewritten with only the live offsets (if mostly dead).
pub const OFFSETS_LOG_COMPACT_BYTES: u64 = 64 * 1024 * 1024;
/// Interval of the per-shard group timer (session expiry, join deadlines, initial delay).
pub const GROUP_TICK_INTERVAL_MS: u64 = 100;
/// Interval between offset-expiry passes (`offsets.retention.minutes`).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS: i64 = 60_000;

/// `broker.rack`: longest rack name (it is copied into every Metadata and DescribeCluster
/// response and every broker registration).
pub const BROKER_RACK_BYTES_MAX: usize = 255;

/// Cluster mode: how often a node tells its peers which partitions it leads.
pub const CLUSTER_LEADER_REPORT_MS: u64 = 500;

/// How often a cluster node that has not registered yet checks whether it has, before it
/// starts accepting client connections.
pub const JOIN_POLL_INTERVAL_MS: u64 = 20;

/// Broker-side recompression (topic `compression.type` other than `producer`): the most bytes
/// one batch's records may inflate to before it is refused (MESSAGE_TOO_LARGE), so a
/// compression bomb costs bounded memory and CPU.
pub const RECOMPRESS_DECOMPRESSED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The tools' client (`sluice bench`, the CLI): how long a ListOffsets waits for a partition's
/// leader to serve it (Kafka names a new topic's leaders before they serve it), and the pause
/// between tries.
pub const CLIENT_LEADER_WAIT_MS: u64 = 15_000;
pub const CLIENT_LEADER_RETRY_MS: u64 = 100;
