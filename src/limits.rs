//! Every bound in Sluice, named, with its unit last in the name.
//! A value here is checked where data enters; nothing grows without a bound.

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
