//! Broker configuration: the flags of `sluice serve` and the broker-wide defaults, with Kafka's names
//! where the concept is the same.

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
        }
    }
}

impl BrokerConfig {
    /// Number of shards to start: `cores`, or one per core the process may run on.
    pub fn shard_count(&self) -> usize {
        if self.cores > 0 {
            self.cores
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

/// `sluice serve` flags. A flag overrides the `--config` file.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory holding partitions and the catalog.
    #[arg(long, default_value = "./sluice-data")]
    pub data_dir: PathBuf,
    /// Kafka listener.
    #[arg(long, default_value = "0.0.0.0:9092")]
    pub listen: SocketAddr,
    /// Admin HTTP listener (/healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:9644")]
    pub admin_listen: SocketAddr,
    /// Shards (pinned threads); default: one per core.
    #[arg(long)]
    pub cores: Option<usize>,
    /// host:port given to clients in Metadata (default: the address the client connected to).
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// TOML file of broker configs by Kafka name (e.g. `num.partitions = 3`).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("config key `{key}`: {reason}")]
    Bad { key: String, reason: String },
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Bad { key: key.to_string(), reason: reason.into() }
}

fn int(key: &str, v: &toml::Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    let n = v.as_integer().ok_or_else(|| bad(key, "must be an integer"))?;
    if n < min || n > max {
        return Err(bad(key, format!("must be in [{min}, {max}], got {n}")));
    }
    Ok(n)
}

impl BrokerConfig {
    /// Applies one broker config by its Kafka name.
    pub fn set(&mut self, key: &str, v: &toml::Value) -> Result<(), ConfigError> {
        match key {
            "num.partitions" => self.num_partitions = int(key, v, 1, limits::PARTITIONS_PER_TOPIC_MAX as i64)? as i32,
            "auto.create.topics.enable" => self.auto_create_topics = v.as_bool().ok_or_else(|| bad(key, "must be true or false"))?,
            "message.max.bytes" => self.message_max_bytes = int(key, v, 1024, i32::MAX as i64)? as u32,
            "socket.request.max.bytes" => self.socket_request_max_bytes = int(key, v, 1024, i32::MAX as i64)? as u32,
            "log.segment.bytes" => self.log_segment_bytes = int(key, v, 14, i32::MAX as i64)? as u64,
            "log.retention.ms" => self.log_retention_ms = int(key, v, -1, i64::MAX)?,
            "log.retention.bytes" => self.log_retention_bytes = int(key, v, -1, i64::MAX)?,
            "log.flush.interval.messages" => self.log_flush_interval_messages = Some(int(key, v, 1, i64::MAX)? as u64),
            "log.flush.interval.ms" => self.log_flush_interval_ms = Some(int(key, v, 0, i64::MAX)? as u64),
            "max.connections" => self.max_connections = int(key, v, 1, 1_000_000)? as usize,
            "queued.max.request.bytes" => self.queued_max_request_bytes = int(key, v, 1024, i64::MAX)? as usize,
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms = int(key, v, 0, 3_600_000)?,
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32,
            "group.max.size" => self.group_max_size = int(key, v, 1, limits::GROUP_MEMBERS_MAX_DEFAULT as i64)? as usize,
            "offsets.retention.minutes" => self.offsets_retention_minutes = int(key, v, 1, i64::MAX / 60_000)?,
            "offset.metadata.max.bytes" => self.offset_metadata_max_bytes = int(key, v, 0, u16::MAX as i64)? as usize,
            "group.consumer.session.timeout.ms" => self.group_consumer_session_timeout_ms = int(key, v, 1, i32::MAX as i64)? as i32,
            "group.consumer.heartbeat.interval.ms" => self.group_consumer_heartbeat_interval_ms = int(key, v, 1, i32::MAX as i64)? as i32,
            "node.id" => self.node_id = int(key, v, 0, i32::MAX as i64)? as i32,
            _ => return Err(bad(key, "unknown broker config")),
        }
        Ok(())
    }

    /// The effective config of `sluice serve`: defaults, then the file, then flags.
    pub fn from_serve_args(a: &ServeArgs) -> Result<BrokerConfig, ConfigError> {
        let mut c = BrokerConfig::default();
        if let Some(path) = &a.config {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.clone(), source: e })?;
            let table: toml::Table =
                text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.clone(), reason: e.to_string() })?;
            for (k, v) in &table {
                c.set(k, v)?;
            }
        }
        c.data_dir = a.data_dir.clone();
        c.listen = a.listen;
        c.admin_listen = Some(a.admin_listen);
        if let Some(n) = a.cores {
            if n == 0 || n > 1024 {
                return Err(bad("--cores", "must be in [1, 1024]"));
            }
            c.cores = n;
        }
        if let Some(l) = &a.advertised_listener {
            let (h, p) = l.rsplit_once(':').ok_or_else(|| bad("--advertised-listener", "must be HOST:PORT"))?;
            let p: u16 = p.parse().map_err(|_| bad("--advertised-listener", "port must be a number"))?;
            c.advertised_listener = Some((h.trim_matches(|c| c == '[' || c == ']').to_string(), p));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn file_keys_validated_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "\"num.partitions\" = 3\n\"auto.create.topics.enable\" = false\n").unwrap();
        let args = ServeArgs {
            data_dir: "/tmp/x".into(),
            listen: "127.0.0.1:1".parse().unwrap(),
            admin_listen: "127.0.0.1:2".parse().unwrap(),
            cores: Some(2),
            advertised_listener: Some("broker.example:19092".into()),
            config: Some(path.clone()),
        };
        let c = BrokerConfig::from_serve_args(&args).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert!(!c.auto_create_topics);
        assert_eq!(c.cores, 2);
        assert_eq!(c.advertised_listener, Some(("broker.example".into(), 19092)));

        std::fs::write(&path, "\"no.such.key\" = 1\n").unwrap();
        let e = BrokerConfig::from_serve_args(&args).unwrap_err().to_string();
        assert!(e.contains("no.such.key"), "{e}");
        std::fs::write(&path, "\"num.partitions\" = 0\n").unwrap();
        assert!(BrokerConfig::from_serve_args(&args).is_err());
        std::fs::write(&path, "num.partitions = = 3").unwrap();
        assert!(matches!(BrokerConfig::from_serve_args(&args), Err(ConfigError::Syntax { .. })));
    }
}
