//! Broker configuration: the flags of `sluice serve` and the broker-wide defaults, with Kafka's names
//! where the concept is the same.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `config` uses `limits`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::limits;

/// Everything a broker needs to start. `Default` is what `sluice serve` uses without flags,
/// except `listen`, which defaults to `0.0.0.0:9092` on the command line and to an ephemeral
/// loopback port here (embedded brokers in tests and `sluice bench`).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// Shards (threads pinned to cores). 0 = one per available core.
    pub cores: usize,
    /// `advertised.listeners` host:port given to clients in Metadata; None = the address the
    /// client connected to.
    pub advertised_listener: Option<(String, u16)>,
    pub node_id: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic.
    pub num_partitions: i32,
    /// `message.max.bytes`: largest record batch a producer may send.
    pub message_max_bytes: u32,
    /// `socket.request.max.bytes`: largest request frame.
    pub socket_request_max_bytes: u32,
    /// `log.segment.bytes`
    pub log_segment_bytes: u64,
    /// `log.retention.ms` (-1 = unlimited)
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (-1 = unlimited)
    pub log_retention_bytes: i64,
    /// `log.flush.interval.messages` (None = fsync every group commit: the durable default)
    pub log_flush_interval_messages: Option<u64>,
    /// `log.flush.interval.ms`
    pub log_flush_interval_ms: Option<u64>,
    /// `log.write.inline`: segment writes by `pwrite` on the shard thread (Some(true)), through
    /// io_uring (Some(false)), or chosen by probing the data directory's file system (None).
    pub log_write_inline: Option<bool>,
    /// `max.connections`
    pub max_connections: usize,
    /// `queued.max.requests` per connection (in flight at once).
    pub max_in_flight_requests_per_connection: usize,
    /// `queued.max.request.bytes`, per shard: request bytes read and not yet answered.
    pub queued_max_request_bytes: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members.
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`
    pub group_max_size: usize,
    /// `offsets.retention.minutes`: committed offsets of an empty group expire after this.
    pub offsets_retention_minutes: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `controller.quorum.voters` (`--cluster`): every node's id and replication (Raft)
    /// address. Empty = a one-node broker without replication, exactly as before clustering.
    pub cluster_voters: Vec<(u64, SocketAddr)>,
    /// `default.replication.factor`; -1 = min(3, cluster size).
    pub default_replication_factor: i16,
    /// `raft.election.timeout.ms`: a follower that hears no leader for this long (plus a random
    /// part up to as much again) starts an election.
    pub raft_election_timeout_ms: u64,
    /// `replication.listener` (`--replication-listen`): where this node listens for other
    /// nodes. Default: its own entry in the voters; required for a node that is not a voter (a
    /// broker joining a running cluster).
    pub replication_listen: Option<SocketAddr>,
    /// `broker.rack`: this broker's rack (or availability zone); replicas of a partition are
    /// placed on different racks where possible.
    pub broker_rack: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./sluice-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: None,
            cores: 0,
            advertised_listener: None,
            node_id: 0,
            auto_create_topics: true,
            num_partitions: 1,
            message_max_bytes: limits::MESSAGE_MAX_BYTES_DEFAULT,
            socket_request_max_bytes: limits::SOCKET_REQUEST_MAX_BYTES_DEFAULT,
            log_segment_bytes: 1 << 30,
            log_retention_ms: 7 * 24 * 3600 * 1000,
            log_retention_bytes: -1,
            log_flush_interval_messages: None,
            log_flush_interval_ms: None,
            log_write_inline: None,
            max_connections: limits::CONNECTIONS_MAX_DEFAULT,
            max_in_flight_requests_per_connection: limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX,
            queued_max_request_bytes: limits::QUEUED_REQUEST_BYTES_PER_SHARD_DEFAULT,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: limits::GROUP_MEMBERS_MAX_DEFAULT,
            offsets_retention_minutes: 7 * 24 * 60,
            offset_metadata_max_bytes: limits::OFFSET_METADATA_BYTES_MAX_DEFAULT,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            cluster_voters: Vec::new(),
            default_replication_factor: -1,
            raft_election_timeout_ms: 1_000,
            replication_listen: None,
            broker_rack: None,
        }
    }
}

impl BrokerConfig {
    /// True when this broker is one node of a replicated cluster.
    pub fn clustered(&self) -> bool {
        !self.cluster_voters.is_empty()
    }

    /// Number of shards to start: `cores`, or one per core the process may run on.
    pub fn shard_count(&self) -> usize {
        if self.cores > 0 {
            self.cores
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// `sluice serve` and `sluice config print` flags. Precedence: a flag overrides the environment
/// (`SLUICE_<KEY>`), which overrides the `--config` file, which overrides the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Directory holding partitions and the catalog [key log.dir; default ./sluice-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener HOST:PORT [key listeners; default 0.0.0.0:9092].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listener: /healthz, /readyz, /metrics [key admin.listen; default 127.0.0.1:9644].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Shards (pinned threads) [key cores; default: one per core].
    #[arg(long)]
    pub cores: Option<usize>,
    /// HOST:PORT given to clients in Metadata [key advertised.listeners; default: the address
    /// the client connected to].
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Log filter: a level (error, warn, info, debug, trace) or a RUST_LOG-style directive list
    /// [key log.level; default: RUST_LOG, else info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format: human or json [key log.format; default human].
    #[arg(long)]
    pub log_format: Option<String>,
    /// Any broker config by its Kafka name, KEY=VALUE (repeatable), e.g. --set num.partitions=3.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// This node's id in the cluster [key node.id; default 0].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Cluster voters ID@HOST:PORT,... where HOST:PORT is each node's replication listener
    /// (this node's own entry is where it listens) [key controller.quorum.voters; default: no
    /// cluster, a single node].
    #[arg(long)]
    pub cluster: Option<String>,
    /// This node's replication listener HOST:PORT when it is not one of the --cluster voters
    /// (a broker joining a running cluster) [key replication.listener].
    #[arg(long)]
    pub replication_listen: Option<SocketAddr>,
    /// TOML file of broker configs by Kafka name (e.g. `"num.partitions" = 3`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("config key `{key}`: {reason}")]
    Bad { key: String, reason: String },
    #[error("config key `{key}` (from {origin}): {reason}")]
    BadFrom {
        key: String,
        origin: Source,
        reason: String,
    },
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Bad {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn int(key: &str, v: &toml::Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n = v
        .as_integer()
        .ok_or_else(|| bad(key, "must be an integer"))?;
    if n < min || n > max {
        return Err(bad(key, format!("must be in [{min}, {max}], got {n}")));
    }
    Ok(n)
}

/// A scalar as text (strings as they are, numbers and booleans printed).
fn text(key: &str, v: &toml::Value) -> Result<String, ConfigError> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
            Ok(v.to_string())
        }
        _ => Err(bad(key, "must be a string")),
    }
}

/// `HOST:PORT`, optionally written Kafka's way: `PLAINTEXT://HOST:PORT` (one listener).
fn listener_text(key: &str, v: &toml::Value) -> Result<String, ConfigError> {
    let s = text(key, v)?;
    if s.contains(',') {
        return Err(bad(key, "Sluice has one listener: give one HOST:PORT"));
    }
    let s = match s.split_once("://") {
        Some((proto, rest)) if proto.eq_ignore_ascii_case("PLAINTEXT") => rest.to_string(),
        Some((proto, _)) => {
            return Err(bad(
                key,
                format!("only PLAINTEXT listeners are supported, got {proto}"),
            ))
        }
        None => s,
    };
    Ok(s)
}

fn socket_addr(key: &str, v: &toml::Value) -> Result<SocketAddr, ConfigError> {
    let s = listener_text(key, v)?;
    s.parse()
        .map_err(|_| bad(key, format!("must be IP:PORT, got `{s}`")))
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            _ => out.push((key, v.clone())),
        }
    }
}

/// Parses a value given as text (environment, `--set`) the way TOML would read a bare scalar:
/// an integer, true/false, else a string.
pub fn scalar(s: &str) -> toml::Value {
    if let Ok(n) = s.trim().parse::<i64>() {
        return toml::Value::Integer(n);
    }
    match s.trim() {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(s.to_string()),
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(n) => write!(f, "environment variable {n}"),
            Source::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// Every configuration key of `sluice serve`, Kafka's broker config names where the concept is
/// the same. The environment variable of a key is `SLUICE_` + the key upper-cased with dots
/// turned into underscores (`log.retention.ms` → `SLUICE_LOG_RETENTION_MS`).
pub const KEYS: &[&str] = &[
    "admin.listen",
    "advertised.listeners",
    "auto.create.topics.enable",
    "broker.rack",
    "controller.quorum.voters",
    "cores",
    "default.replication.factor",
    "group.initial.rebalance.delay.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "group.min.session.timeout.ms",
    "listeners",
    "log.dir",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.format",
    "log.level",
    "log.write.inline",
    "log.retention.bytes",
    "log.retention.ms",
    "log.segment.bytes",
    "max.connections",
    "message.max.bytes",
    "node.id",
    "num.partitions",
    "offset.metadata.max.bytes",
    "offsets.retention.minutes",
    "queued.max.request.bytes",
    "queued.max.requests",
    "raft.election.timeout.ms",
    "replication.listener",
    "socket.request.max.bytes",
];

/// `SLUICE_*` environment variables that are not broker configs (tools, tests, builds).
pub const ENV_NOT_CONFIG: &[&str] = &[
    "SLUICE_BIN",
    "SLUICE_BOOTSTRAP",
    "SLUICE_BENCH_DIR",
    "SLUICE_GIT_COMMIT",
];
/// Prefix of test-harness variables (`SLUICE_TEST_CORES`, ...), also not broker configs.
pub const ENV_TEST_PREFIX: &str = "SLUICE_TEST_";

/// The environment variable of a config key.
pub fn env_name(key: &str) -> String {
    format!("SLUICE_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Logging settings of `sluice serve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// An EnvFilter directive; None = RUST_LOG, else info.
    pub level: Option<String>,
    pub format: LogFormat,
}

/// The effective configuration of `sluice serve`, with where each value came from.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub broker: BrokerConfig,
    pub log: LogSettings,
    pub sources: std::collections::BTreeMap<&'static str, Source>,
}

impl ServeConfig {
    /// Applies one key; a bad value is reported with the key and where it came from.
    fn apply(&mut self, key: &str, v: &toml::Value, source: Source) -> Result<(), ConfigError> {
        let Some(k) = KEYS.iter().find(|k| **k == key) else {
            return Err(ConfigError::BadFrom {
                key: key.to_string(),
                origin: source,
                reason: "unknown broker config".into(),
            });
        };
        let r = match key {
            "log.level" => text(key, v).and_then(|s| {
                tracing_subscriber::EnvFilter::try_new(&s)
                    .map_err(|e| bad(key, format!("not a log filter: {e}")))?;
                self.log.level = Some(s);
                Ok(())
            }),
            "log.format" => text(key, v).and_then(|s| {
                self.log.format = match s.as_str() {
                    "human" => LogFormat::Human,
                    "json" => LogFormat::Json,
                    _ => return Err(bad(key, format!("must be human or json, got `{s}`"))),
                };
                Ok(())
            }),
            _ => self.broker.set(key, v),
        };
        match r {
            Ok(()) => {
                self.sources.insert(k, source);
                Ok(())
            }
            Err(ConfigError::Bad { key, reason }) => Err(ConfigError::BadFrom {
                key,
                origin: source,
                reason,
            }),
            Err(e) => Err(e),
        }
    }

    /// The effective value of a key, as TOML.
    pub fn get(&self, key: &str) -> Option<toml::Value> {
        use toml::Value as V;
        let b = &self.broker;
        let opt_int = |o: Option<u64>| V::Integer(o.map(|n| n as i64).unwrap_or(-1));
        Some(match key {
            "admin.listen" => V::String(b.admin_listen.map(|a| a.to_string()).unwrap_or_default()),
            "advertised.listeners" => V::String(
                b.advertised_listener
                    .as_ref()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .unwrap_or_default(),
            ),
            "auto.create.topics.enable" => V::Boolean(b.auto_create_topics),
            "cores" => V::Integer(b.shard_count() as i64),
            "controller.quorum.voters" => V::String(format_voters(&b.cluster_voters)),
            "default.replication.factor" => V::Integer(i64::from(b.default_replication_factor)),
            "raft.election.timeout.ms" => V::Integer(b.raft_election_timeout_ms as i64),
            "broker.rack" => V::String(b.broker_rack.clone().unwrap_or_default()),
            "replication.listener" => V::String(b.replication_listen.map(|a| a.to_string()).unwrap_or_default()),
            "group.initial.rebalance.delay.ms" => V::Integer(b.group_initial_rebalance_delay_ms),
            "group.max.session.timeout.ms" => V::Integer(i64::from(b.group_max_session_timeout_ms)),
            "group.max.size" => V::Integer(b.group_max_size as i64),
            "group.min.session.timeout.ms" => V::Integer(i64::from(b.group_min_session_timeout_ms)),
            "offset.metadata.max.bytes" => V::Integer(b.offset_metadata_max_bytes as i64),
            "offsets.retention.minutes" => V::Integer(b.offsets_retention_minutes),
            "listeners" => V::String(b.listen.to_string()),
            "log.dir" => V::String(b.data_dir.display().to_string()),
            "log.flush.interval.messages" => opt_int(b.log_flush_interval_messages),
            "log.flush.interval.ms" => opt_int(b.log_flush_interval_ms),
            "log.format" => V::String(
                if self.log.format == LogFormat::Json {
                    "json"
                } else {
                    "human"
                }
                .into(),
            ),
            "log.level" => V::String(self.log.level.clone().unwrap_or_default()),
            "log.write.inline" => V::String(
                match b.log_write_inline {
                    None => "auto",
                    Some(true) => "true",
                    Some(false) => "false",
                }
                .into(),
            ),
            "log.retention.bytes" => V::Integer(b.log_retention_bytes),
            "log.retention.ms" => V::Integer(b.log_retention_ms),
            "log.segment.bytes" => V::Integer(b.log_segment_bytes as i64),
            "max.connections" => V::Integer(b.max_connections as i64),
            "message.max.bytes" => V::Integer(i64::from(b.message_max_bytes)),
            "node.id" => V::Integer(i64::from(b.node_id)),
            "num.partitions" => V::Integer(i64::from(b.num_partitions)),
            "queued.max.requests" => V::Integer(b.max_in_flight_requests_per_connection as i64),
            "queued.max.request.bytes" => {
                V::Integer(b.queued_max_request_bytes.min(i64::MAX as usize) as i64)
            }
            "socket.request.max.bytes" => V::Integer(i64::from(b.socket_request_max_bytes)),
            _ => return None,
        })
    }

    /// The effective configuration as a TOML file `--config` accepts, each key with its source.
    /// Unset optional keys (empty strings, -1 flush intervals) are printed commented out.
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# effective sluice configuration (flag > SLUICE_* environment > file > default)\n",
        );
        for key in KEYS {
            let Some(v) = self.get(key) else { continue };
            let source = self.sources.get(key).cloned().unwrap_or(Source::Default);
            let unset = matches!(&v, toml::Value::String(s) if s.is_empty())
                || (key.starts_with("log.flush.interval") && v.as_integer() == Some(-1));
            let line = format!("\"{key}\" = {v}");
            if unset {
                out.push_str(&format!("# {line}  # unset ({source})\n"));
            } else {
                out.push_str(&format!("{line}  # {source}\n"));
            }
        }
        out
    }

    /// The configuration of `sluice serve`: defaults, then the file, then `SLUICE_*` variables of
    /// `env`, then flags. Unknown keys in the file or the environment are errors.
    pub fn load(
        a: &ServeArgs,
        env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<ServeConfig, ConfigError> {
        let broker = BrokerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            ..BrokerConfig::default()
        };
        let mut c = ServeConfig {
            broker,
            log: LogSettings::default(),
            sources: Default::default(),
        };
        if let Some(path) = &a.config {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                error: e,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            // `num.partitions = 3` is TOML for {num = {partitions = 3}}: flatten tables back
            // into dotted Kafka names, so quoted and bare keys (and [log] sections) all work.
            let mut flat = Vec::new();
            flatten("", &table, &mut flat);
            for (k, v) in &flat {
                c.apply(k, v, Source::File(path.clone()))?;
            }
        }
        let mut vars: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(name) = name.to_str().map(str::to_string) else {
                continue;
            };
            if !name.starts_with("SLUICE_")
                || ENV_NOT_CONFIG.contains(&name.as_str())
                || name.starts_with(ENV_TEST_PREFIX)
            {
                continue;
            }
            let key = name["SLUICE_".len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            let Some(value) = value.to_str().map(str::to_string) else {
                return Err(ConfigError::BadFrom {
                    key,
                    origin: Source::Env(name),
                    reason: "value is not UTF-8".into(),
                });
            };
            vars.push((name, value));
        }
        vars.sort();
        for (name, value) in vars {
            let key = name["SLUICE_".len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            c.apply(&key, &scalar(&value), Source::Env(name))?;
        }
        let flag = |n: &str| Source::Flag(n.to_string());
        let s = |v: String| toml::Value::String(v);
        if let Some(d) = &a.data_dir {
            c.apply("log.dir", &s(d.display().to_string()), flag("--data-dir"))?;
        }
        if let Some(l) = a.listen {
            c.apply("listeners", &s(l.to_string()), flag("--listen"))?;
        }
        if let Some(l) = a.admin_listen {
            c.apply("admin.listen", &s(l.to_string()), flag("--admin-listen"))?;
        }
        if let Some(n) = a.cores {
            c.apply(
                "cores",
                &toml::Value::Integer(n.min(i64::MAX as usize) as i64),
                flag("--cores"),
            )?;
        }
        if let Some(l) = &a.advertised_listener {
            c.apply(
                "advertised.listeners",
                &s(l.clone()),
                flag("--advertised-listener"),
            )?;
        }
        if let Some(n) = a.node_id {
            c.apply(
                "node.id",
                &toml::Value::Integer(i64::from(n)),
                flag("--node-id"),
            )?;
        }
        if let Some(v) = &a.cluster {
            c.apply("controller.quorum.voters", &s(v.clone()), flag("--cluster"))?;
        }
        if let Some(l) = a.replication_listen {
            c.apply("replication.listener", &s(l.to_string()), flag("--replication-listen"))?;
        }
        if let Some(l) = &a.log_level {
            c.apply("log.level", &s(l.clone()), flag("--log-level"))?;
        }
        if let Some(f) = &a.log_format {
            c.apply("log.format", &s(f.clone()), flag("--log-format"))?;
        }
        for kv in &a.set {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(bad("--set", format!("must be KEY=VALUE, got `{kv}`")));
            };
            c.apply(k.trim(), &scalar(v), flag("--set"))?;
        }
        Ok(c)
    }
}

impl BrokerConfig {
    /// Applies one broker config by its Kafka name.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<(), ConfigError> {
        match key {
            "num.partitions" => {
                self.num_partitions =
                    int(key, v, 1, limits::PARTITIONS_PER_TOPIC_MAX as i64)? as i32
            }
            "auto.create.topics.enable" => {
                self.auto_create_topics = v
                    .as_bool()
                    .ok_or_else(|| bad(key, "must be true or false"))?
            }
            "message.max.bytes" => {
                self.message_max_bytes = int(key, v, 1024, i32::MAX as i64)? as u32
            }
            "socket.request.max.bytes" => {
                self.socket_request_max_bytes = int(key, v, 1024, i32::MAX as i64)? as u32
            }
            "log.segment.bytes" => {
                self.log_segment_bytes = int(key, v, 14, i32::MAX as i64)? as u64
            }
            "log.retention.ms" => self.log_retention_ms = int(key, v, -1, i64::MAX)?,
            "log.retention.bytes" => self.log_retention_bytes = int(key, v, -1, i64::MAX)?,
            "log.flush.interval.messages" => {
                self.log_flush_interval_messages = Some(int(key, v, 1, i64::MAX)? as u64)
            }
            "log.write.inline" => {
                self.log_write_inline = match (v.as_bool(), v.as_str()) {
                    (Some(b), _) => Some(b),
                    (_, Some("auto")) => None,
                    (_, Some("true")) => Some(true),
                    (_, Some("false")) => Some(false),
                    _ => return Err(bad(key, "must be auto, true or false")),
                }
            }
            "log.flush.interval.ms" => {
                self.log_flush_interval_ms = Some(int(key, v, 0, i64::MAX)? as u64)
            }
            "max.connections" => self.max_connections = int(key, v, 1, 1_000_000)? as usize,
            "queued.max.request.bytes" => {
                self.queued_max_request_bytes = int(key, v, 1024, i64::MAX)? as usize
            }
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = int(key, v, 0, 3_600_000)?
            }
            "group.min.session.timeout.ms" => {
                self.group_min_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.group_max_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32
            }
            "group.max.size" => {
                self.group_max_size =
                    int(key, v, 1, limits::GROUP_MEMBERS_MAX_DEFAULT as i64)? as usize
            }
            "offsets.retention.minutes" => {
                self.offsets_retention_minutes = int(key, v, 1, i64::MAX / 60_000)?
            }
            "offset.metadata.max.bytes" => {
                self.offset_metadata_max_bytes = int(key, v, 0, u16::MAX as i64)? as usize
            }
            "group.consumer.session.timeout.ms" => {
                self.group_consumer_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32
            }
            "group.consumer.heartbeat.interval.ms" => {
                self.group_consumer_heartbeat_interval_ms = int(key, v, 1, i32::MAX as i64)? as i32
            }
            "node.id" => self.node_id = int(key, v, 0, i32::MAX as i64)? as i32,
            "default.replication.factor" => {
                self.default_replication_factor = int(key, v, -1, i16::MAX as i64)? as i16
            }
            "raft.election.timeout.ms" => {
                self.raft_election_timeout_ms = int(key, v, 200, 600_000)? as u64
            }
            "replication.listener" => self.replication_listen = Some(socket_addr(key, v)?),
            "broker.rack" => {
                let r = text(key, v)?;
                if r.len() > limits::BROKER_RACK_BYTES_MAX {
                    return Err(bad(key, format!("{} bytes; at most {}", r.len(), limits::BROKER_RACK_BYTES_MAX)));
                }
                if r.chars().any(char::is_control) {
                    return Err(bad(key, "control characters in a rack name"));
                }
                self.broker_rack = (!r.is_empty()).then_some(r);
            }
            "controller.quorum.voters" => {
                self.cluster_voters = parse_voters(&text(key, v)?).map_err(|r| bad(key, r))?
            }
            "queued.max.requests" => {
                self.max_in_flight_requests_per_connection = int(
                    key,
                    v,
                    1,
                    limits::IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX as i64,
                )? as usize
            }
            "cores" => self.cores = int(key, v, 1, limits::SHARDS_MAX as i64)? as usize,
            "log.dir" => {
                let d = text(key, v)?;
                if d.is_empty() {
                    return Err(bad(key, "must not be empty"));
                }
                self.data_dir = PathBuf::from(d);
            }
            "listeners" => self.listen = socket_addr(key, v)?,
            "admin.listen" => self.admin_listen = Some(socket_addr(key, v)?),
            "advertised.listeners" => {
                let l = listener_text(key, v)?;
                let (h, p) = l
                    .rsplit_once(':')
                    .ok_or_else(|| bad(key, "must be HOST:PORT"))?;
                let p: u16 = p.parse().map_err(|_| {
                    bad(
                        key,
                        format!("port must be a number in [0, 65535], got `{p}`"),
                    )
                })?;
                let h = h.trim_matches(|c| c == '[' || c == ']');
                if h.is_empty() {
                    return Err(bad(key, "host must not be empty"));
                }
                self.advertised_listener = Some((h.to_string(), p));
            }
            _ => return Err(bad(key, "unknown broker config")),
        }
        Ok(())
    }

    /// The effective broker config of `sluice serve` given its flags and the process environment.
    pub fn from_serve_args(a: &ServeArgs) -> Result<BrokerConfig, ConfigError> {
        Ok(ServeConfig::load(a, std::env::vars_os())?.broker)
    }
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT,...` (empty = no cluster). Ids are > 0
/// (Raft reserves 0) and distinct.
pub fn parse_voters(v: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    let mut out: Vec<(u64, SocketAddr)> = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| format!("`{part}` is not ID@HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("node id `{id}` is not a number"))?;
        if id == 0 || id > i32::MAX as u64 {
            return Err(format!("node id {id} must be in [1, {}]", i32::MAX));
        }
        use std::net::ToSocketAddrs;
        let addr = addr
            .trim()
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| format!("`{addr}` is not a reachable HOST:PORT"))?;
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("node id {id} appears twice"));
        }
        out.push((id, addr));
    }
    Ok(out)
}

fn format_voters(v: &[(u64, SocketAddr)]) -> String {
    v.iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn file_keys_validated_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "num.partitions = 3\n\"auto.create.topics.enable\" = false\n",
        )
        .unwrap();
        let args = ServeArgs {
            data_dir: Some("/tmp/x".into()),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            admin_listen: Some("127.0.0.1:2".parse().unwrap()),
            cores: Some(2),
            advertised_listener: Some("broker.example:19092".into()),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let c = ServeConfig::load(&args, env(&[])).unwrap().broker;
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        assert_eq!(c.cores, 2);
        assert_eq!(
            c.advertised_listener,
            Some(("broker.example".into(), 19092))
        );

        std::fs::write(&path, "\"no.such.key\" = 1\n").unwrap();
        let e = ServeConfig::load(&args, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("no.such.key") && e.contains("sluice.toml"),
            "{e}"
        );
        std::fs::write(&path, "\"num.partitions\" = 0\n").unwrap();
        let e = ServeConfig::load(&args, env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("num.partitions") && e.contains("[1, 10000]"),
            "{e}"
        );
        std::fs::write(&path, "num.partitions = = 3").unwrap();
        assert!(matches!(
            ServeConfig::load(&args, env(&[])),
            Err(ConfigError::Syntax { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            ServeConfig::load(&args, env(&[])),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn log_write_inline_takes_auto_true_false_only() {
        let mut b = BrokerConfig::default();
        assert_eq!(b.log_write_inline, None);
        for (v, want) in [
            (toml::Value::String("true".into()), Some(true)),
            (toml::Value::Boolean(false), Some(false)),
            (toml::Value::String("auto".into()), None),
        ] {
            b.set("log.write.inline", &v).unwrap();
            assert_eq!(b.log_write_inline, want, "{v}");
        }
        for v in [
            toml::Value::String("sometimes".into()),
            toml::Value::String("TRUE ".into()),
            toml::Value::Integer(1),
        ] {
            let e = b.set("log.write.inline", &v).unwrap_err().to_string();
            assert!(e.contains("log.write.inline") && e.contains("auto, true or false"), "{e}");
            assert_eq!(b.log_write_inline, None, "a refused value changes nothing");
        }
    }

    #[test]
    fn precedence_flag_over_env_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "\"num.partitions\" = 3\n\"log.retention.ms\" = 1000\n\"message.max.bytes\" = 5000\n\"listeners\" = \"PLAINTEXT://127.0.0.1:7000\"\n").unwrap();
        let mut args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let vars = env(&[
            ("SLUICE_NUM_PARTITIONS", "5"),
            ("SLUICE_LOG_RETENTION_MS", "2000"),
            ("SLUICE_BIN", "/x"),
            ("SLUICE_TEST_CORES", "9"),
            ("PATH", "/bin"),
        ]);
        let c = ServeConfig::load(&args, vars.clone()).unwrap();
        assert_eq!(c.broker.num_partitions, 5, "env over file");
        assert_eq!(c.broker.log_retention_ms, 2000);
        assert_eq!(c.broker.message_max_bytes, 5000, "file over default");
        assert_eq!(c.broker.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(
            c.broker.admin_listen,
            Some("127.0.0.1:9644".parse().unwrap()),
            "serve default"
        );
        assert_eq!(
            c.sources.get("num.partitions"),
            Some(&Source::Env("SLUICE_NUM_PARTITIONS".into()))
        );
        args.set = vec!["num.partitions=7".into()];
        args.log_format = Some("json".into());
        let c = ServeConfig::load(&args, vars.clone()).unwrap();
        assert_eq!(c.broker.num_partitions, 7, "flag over env");
        assert_eq!(c.log.format, LogFormat::Json);

        // The printed configuration loads back to the same values.
        let printed = c.to_toml();
        std::fs::write(&path, &printed).unwrap();
        let again = ServeConfig::load(
            &ServeArgs {
                config: Some(path.clone()),
                ..ServeArgs::default()
            },
            env(&[]),
        )
        .unwrap();
        for key in KEYS {
            assert_eq!(again.get(key), c.get(key), "{key} in\n{printed}");
        }

        let e = ServeConfig::load(&args, env(&[("SLUICE_NUM_PARTITONS", "5")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("num.partitons")
                && e.contains("SLUICE_NUM_PARTITONS")
                && e.contains("unknown"),
            "{e}"
        );
        let e = ServeConfig::load(&args, env(&[("SLUICE_LOG_RETENTION_MS", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("log.retention.ms") && e.contains("integer"),
            "{e}"
        );
        let e = ServeConfig::load(
            &ServeArgs {
                log_format: Some("xml".into()),
                ..ServeArgs::default()
            },
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("log.format") && e.contains("--log-format"),
            "{e}"
        );
        assert_eq!(env_name("log.retention.ms"), "SLUICE_LOG_RETENTION_MS");
        for key in KEYS {
            assert!(
                !key.contains('_'),
                "{key}: the env mapping needs keys without underscores"
            );
            let mut c = ServeConfig::load(&ServeArgs::default(), env(&[])).unwrap();
            let v = c
                .get(key)
                .unwrap_or_else(|| panic!("{key} has no effective value"));
            let unset = v.as_str() == Some("")
                || (key.starts_with("log.flush.interval") && v.as_integer() == Some(-1));
            if !unset {
                c.apply(key, &v, Source::Default)
                    .unwrap_or_else(|e| panic!("{key} = {v} does not load back: {e}"));
            }
        }
    }

    #[test]
    fn broker_rack_is_bounded() {
        use toml::Value as V;
        let mut c = ServeConfig::load(&ServeArgs::default(), env(&[])).unwrap();
        c.apply("broker.rack", &V::String("eu-west-1a".into()), Source::Default).unwrap();
        assert_eq!(c.broker.broker_rack.as_deref(), Some("eu-west-1a"));
        let long = "r".repeat(limits::BROKER_RACK_BYTES_MAX + 1);
        assert!(c.apply("broker.rack", &V::String(long), Source::Default).is_err());
        assert!(c.apply("broker.rack", &V::String("a\nb".into()), Source::Default).is_err());
        assert_eq!(c.broker.broker_rack.as_deref(), Some("eu-west-1a"), "a refused value changes nothing");
        c.apply("broker.rack", &V::String(String::new()), Source::Default).unwrap();
        assert_eq!(c.broker.broker_rack, None);
    }

    #[test]
    fn cluster_voters_parse_and_refuse_mistakes() {
        let v = parse_voters("1@127.0.0.1:9093, 2@127.0.0.2:9093,3@[::1]:9093").unwrap();
        assert_eq!(v.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(v[2].1.port(), 9093);
        assert!(parse_voters("").unwrap().is_empty(), "no voters: a one-node broker");
        for bad in ["1@127.0.0.1:9093,1@127.0.0.2:9093", "0@127.0.0.1:9093", "x@127.0.0.1:9093", "127.0.0.1:9093", "1@nowhere"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }
}
