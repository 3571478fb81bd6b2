//! `/metrics` on the admin listener of a real embedded broker, after producing and fetching.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice::server::{Broker, BrokerConfig};

use crate::broker::{create_topic, fetch, produce};
use crate::wire::{self, Conn};

/// GET `path` with an Accept header; returns (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_string(), headers.to_string(), body.to_string())
}

/// Parses a text exposition into `series{labels} -> value`, checking every line's shape.
pub fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        assert!(
            series.chars().next().unwrap().is_ascii_alphabetic(),
            "{line}"
        );
        assert!(
            out.insert(series.to_string(), v).is_none(),
            "duplicate series {series}"
        );
    }
    out
}

fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    let s = |x: &str| StrBytes::from_string(x.to_string());
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])])
}

#[test]
fn metrics_after_produce_and_fetch() {
    crate::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        cores: 2,
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..BrokerConfig::default()
    };
    let b = Broker::start(config).unwrap();
    let admin = b.admin_addr().unwrap();
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "m", 3, &[]), 0);
    // Partition p gets p+1 batches of 2 records (acks=all: durable, so the hwm has moved).
    let mut batch_bytes = 0;
    for p in 0..3 {
        for _ in 0..=p {
            let records = wire::batch(&[b"a", b"bb"], Compression::None);
            batch_bytes += records.len();
            assert_eq!(produce(&mut c, "m", p, records, -1, 9).0, 0);
        }
    }
    let (err, hwm, values) = fetch(&mut c, "m", 2, 0, 0);
    assert_eq!((err, hwm, values.len()), (0, 6, 6));

    let (status, headers, body) = http_get(admin, "/metrics", "text/plain");
    assert!(status.contains("200"), "{status}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(!body.contains("# EOF"));
    let m = parse(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    assert_eq!(get("kafka_brokers"), 1.0);
    assert_eq!(get(r#"kafka_topic_partitions{topic="m"}"#), 3.0);
    for p in 0..3 {
        let end = 2.0 * (p as f64 + 1.0);
        assert_eq!(
            get(&format!(
                r#"kafka_topic_partition_current_offset{{topic="m",partition="{p}"}}"#
            )),
            end
        );
        assert_eq!(
            get(&format!(
                r#"kafka_topic_partition_oldest_offset{{topic="m",partition="{p}"}}"#
            )),
            0.0
        );
        assert_eq!(
            get(&format!(
                r#"sluice_partition_log_end_offset{{topic="m",partition="{p}"}}"#
            )),
            end
        );
        assert_eq!(
            get(&format!(
                r#"sluice_partition_segments{{topic="m",partition="{p}"}}"#
            )),
            1.0
        );
        assert!(
            get(&format!(
                r#"sluice_partition_size_bytes{{topic="m",partition="{p}"}}"#
            )) > 0.0
        );
    }
    assert_eq!(get(r#"sluice_topic_records_in_total{topic="m"}"#), 12.0);
    assert_eq!(
        get(r#"sluice_topic_bytes_in_total{topic="m"}"#),
        batch_bytes as f64
    );
    assert_eq!(get(r#"sluice_topic_records_out_total{topic="m"}"#), 6.0);
    assert_eq!(get(r#"sluice_requests_total{api="Produce"}"#), 6.0);
    assert_eq!(
        get(r#"sluice_request_duration_seconds_count{api="Produce"}"#),
        6.0
    );
    assert_eq!(
        get(r#"sluice_request_duration_seconds_bucket{le="+Inf",api="Produce"}"#),
        6.0
    );
    assert_eq!(get(r#"sluice_requests_total{api="CreateTopics"}"#), 1.0);
    assert!(
        get("sluice_fsync_duration_seconds_count") >= 1.0,
        "acks=all produces were fsynced"
    );
    assert_eq!(get("sluice_connections_open"), 1.0);
    assert_eq!(
        get(r#"sluice_connections_accepted_total{shard="0"}"#)
            + get(r#"sluice_connections_accepted_total{shard="1"}"#),
        1.0
    );
    assert_eq!(get("sluice_shards"), 2.0);
    assert_eq!(get("sluice_ready"), 1.0);
    assert!(get("sluice_memory_rss_bytes") > 0.0);
    assert!(get(r#"sluice_request_memory_budget_bytes{shard="0"}"#) > 0.0);
    assert!(m.contains_key(r#"sluice_shard_busy_seconds_total{shard="1"}"#));

    // OpenMetrics when asked for, ending in # EOF.
    let (status, headers, body) = http_get(
        admin,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert!(status.contains("200"));
    assert!(
        headers.contains("application/openmetrics-text"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(
        parse(&body).get(r#"kafka_topic_partition_current_offset{topic="m",partition="1"}"#),
        Some(&4.0)
    );

    // Committed offsets (OffsetCommit, simple group: generation -1) in two groups, which may be
    // coordinated by different shards than the partitions' owners.
    for (g, p, o) in [
        ("lagging", 0, 1),
        ("lagging", 1, 4),
        ("lagging", 2, 0),
        ("caught-up", 2, 6),
    ] {
        let r = c.call(&commit(g, "m", p, o), 8);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let (_, _, body) = http_get(admin, "/metrics", "text/plain");
    let m = parse(&body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    for (p, committed, end) in [(0, 1.0, 2.0), (1, 4.0, 4.0), (2, 0.0, 6.0)] {
        let l = format!(r#"consumergroup="lagging",topic="m",partition="{p}""#);
        assert_eq!(
            get(&format!("kafka_consumergroup_current_offset{{{l}}}")),
            committed
        );
        assert_eq!(
            get(&format!("kafka_consumergroup_lag{{{l}}}")),
            end - committed,
            "lag = log end - committed"
        );
    }
    assert_eq!(
        get(r#"kafka_consumergroup_lag_sum{consumergroup="lagging",topic="m"}"#),
        7.0
    );
    assert_eq!(
        get(r#"kafka_consumergroup_lag{consumergroup="caught-up",topic="m",partition="2"}"#),
        0.0
    );
    assert_eq!(
        get(r#"kafka_consumergroup_members{consumergroup="lagging"}"#),
        0.0,
        "simple commits, no members"
    );
    // More records: the lag grows with the log end, not the commit.
    assert_eq!(
        produce(
            &mut c,
            "m",
            0,
            wire::batch(&[b"c"], Compression::None),
            -1,
            9
        )
        .0,
        0
    );
    let m = parse(&http_get(admin, "/metrics", "text/plain").2);
    assert_eq!(
        m.get(r#"kafka_consumergroup_lag{consumergroup="lagging",topic="m",partition="0"}"#),
        Some(&2.0)
    );

    let (status, _, _) = http_get(admin, "/nope", "*/*");
    assert!(status.contains("404"));
    drop(c);
    b.shutdown().unwrap();
}
