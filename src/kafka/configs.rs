//! Topic configs Sluice understands, by Kafka name: their defaults (from the broker config)
//! and validation. Used by CreateTopics, DescribeConfigs and IncrementalAlterConfigs.

use crate::config::BrokerConfig;

#[derive(Clone, Copy)]
enum Kind {
    /// An integer in [min, max].
    Long { min: i64, max: i64 },
    /// One of the listed words.
    OneOf(&'static [&'static str]),
}

struct Def {
    name: &'static str,
    kind: Kind,
    /// The broker-level default, as a string.
    default: fn(&BrokerConfig) -> String,
}

const DEFS: &[Def] = &[
    Def { name: "cleanup.policy", kind: Kind::OneOf(&["delete"]), default: |_| "delete".into() },
    Def {
        name: "compression.type",
        kind: Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        default: |_| "producer".into(),
    },
    Def {
        name: "flush.messages",
        kind: Kind::Long { min: 1, max: i64::MAX },
        default: |b| b.log_flush_interval_messages.map(|v| v.to_string()).unwrap_or_else(|| "1".into()),
    },
    Def {
        name: "flush.ms",
        kind: Kind::Long { min: 0, max: i64::MAX },
        default: |b| b.log_flush_interval_ms.map(|v| v.to_string()).unwrap_or_else(|| "0".into()),
    },
    Def { name: "index.interval.bytes", kind: Kind::Long { min: 0, max: i32::MAX as i64 }, default: |_| "4096".into() },
    Def {
        name: "max.message.bytes",
        kind: Kind::Long { min: 0, max: i32::MAX as i64 },
        default: |b| b.message_max_bytes.to_string(),
    },
    Def { name: "message.timestamp.type", kind: Kind::OneOf(&["CreateTime"]), default: |_| "CreateTime".into() },
    Def { name: "min.insync.replicas", kind: Kind::Long { min: 1, max: 1 }, default: |_| "1".into() },
    Def { name: "retention.bytes", kind: Kind::Long { min: -1, max: i64::MAX }, default: |b| b.log_retention_bytes.to_string() },
    Def { name: "retention.ms", kind: Kind::Long { min: -1, max: i64::MAX }, default: |b| b.log_retention_ms.to_string() },
    Def {
        name: "segment.bytes",
        kind: Kind::Long { min: 14, max: i32::MAX as i64 },
        default: |b| b.log_segment_bytes.to_string(),
    },
    Def { name: "segment.ms", kind: Kind::Long { min: 1, max: i64::MAX }, default: |_| (7 * 24 * 3600 * 1000i64).to_string() },
];

/// Kafka's ConfigType of a config (DescribeConfigs v3+): UNKNOWN 0, BOOLEAN 1, STRING 2, INT 3,
/// SHORT 4, LONG 5, DOUBLE 6, LIST 7, CLASS 8, PASSWORD 9; as Kafka's ConfigDef declares them.
pub fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" | "log.cleanup.policy" | "listeners" | "advertised.listeners" | "log.dirs" => 7,
        "compression.type" | "message.timestamp.type" | "log.dir" | "broker.rack" => 2,
        "segment.bytes" | "max.message.bytes" | "index.interval.bytes" | "min.insync.replicas" | "message.max.bytes"
        | "log.segment.bytes" | "num.partitions" | "node.id" | "broker.id" | "socket.request.max.bytes" | "max.connections"
        | "queued.max.requests" | "group.min.session.timeout.ms" | "group.max.session.timeout.ms" | "group.max.size"
        | "group.initial.rebalance.delay.ms" | "offsets.retention.minutes" | "offset.metadata.max.bytes" => 3,
        "default.replication.factor" => 3,
        "retention.ms" | "retention.bytes" | "segment.ms" | "flush.messages" | "flush.ms" | "log.retention.ms"
        | "log.retention.bytes" | "log.flush.interval.messages" | "log.flush.interval.ms" | "queued.max.request.bytes" => 5,
        "auto.create.topics.enable" => 1,
        _ => 0,
    }
}

/// Checks one topic config; the error says what is wrong, for the response's error message.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = DEFS.iter().find(|d| d.name == name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    match def.kind {
        Kind::Long { min, max } => {
            let v: i64 = value.trim().parse().map_err(|_| format!("Invalid value {value} for configuration {name}: not a number"))?;
            if v < min || v > max {
                return Err(format!("Invalid value {value} for configuration {name}: must be in [{min}, {max}]"));
            }
        }
        Kind::OneOf(words) => {
            if !words.contains(&value) {
                return Err(format!(
                    "Invalid value {value} for configuration {name}: Sluice supports only {}",
                    words.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Every known topic config with its default value.
pub fn defaults(broker: &BrokerConfig) -> impl Iterator<Item = (&'static str, String)> + '_ {
    DEFS.iter().map(move |d| (d.name, (d.default)(broker)))
}

/// Broker-level configs reported by DescribeConfigs for the broker resource.
pub fn broker_configs(b: &BrokerConfig) -> Vec<(&'static str, String)> {
    vec![
        ("auto.create.topics.enable", b.auto_create_topics.to_string()),
        ("num.partitions", b.num_partitions.to_string()),
        ("message.max.bytes", b.message_max_bytes.to_string()),
        ("socket.request.max.bytes", b.socket_request_max_bytes.to_string()),
        ("log.segment.bytes", b.log_segment_bytes.to_string()),
        ("log.retention.ms", b.log_retention_ms.to_string()),
        ("log.retention.bytes", b.log_retention_bytes.to_string()),
        ("max.connections", b.max_connections.to_string()),
        ("default.replication.factor", "1".into()),
        ("node.id", b.node_id.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("cleanup.policy", "compact").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("segment.bytes", "13").is_err());
    }
}
