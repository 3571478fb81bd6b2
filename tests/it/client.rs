//! Sluice's own client, CLI tools and `sluice bench` against a real broker on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use bytes::Bytes;
use clap::Parser;
use sluice::cli::{self, block_on};
use sluice::client::records::{encode_batch, parse_compression, NewRecord};
use sluice::client::{Acks, Client};

fn batch(values: &[&str], key: Option<&str>) -> Bytes {
    let recs: Vec<NewRecord> = values
        .iter()
        .map(|v| NewRecord {
            key: key.map(|k| Bytes::from(k.to_owned())),
            value: Some(Bytes::from(v.to_string())),
            timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    encode_batch(&recs, parse_compression("none").unwrap()).unwrap()
}

#[derive(Parser)]
struct TopicCli {
    #[command(flatten)]
    args: cli::topic::TopicArgs,
}

#[derive(Parser)]
struct ProduceCli {
    #[command(flatten)]
    args: cli::produce::ProduceArgs,
}

#[derive(Parser)]
struct ConsumeCli {
    #[command(flatten)]
    args: cli::consume::ConsumeArgs,
}

#[derive(Parser)]
struct BenchCli {
    #[command(flatten)]
    args: cli::bench::BenchArgs,
}

fn topic_cmd(argv: &[&str]) -> anyhow::Result<String> {
    let a = TopicCli::try_parse_from(std::iter::once("topic").chain(argv.iter().copied()))
        .unwrap()
        .args;
    let mut out = Vec::new();
    block_on(cli::topic::run_to(a, &mut out))?;
    Ok(String::from_utf8(out).unwrap())
}

fn consume_cmd(argv: &[&str]) -> anyhow::Result<Vec<String>> {
    let a = ConsumeCli::try_parse_from(std::iter::once("consume").chain(argv.iter().copied()))
        .unwrap()
        .args;
    let mut out = Vec::new();
    block_on(cli::consume::run_to(a, &mut out))?;
    Ok(String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn cli_tools_create_list_produce_consume_and_report_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::start(dir.path());
    let addr = broker.bootstrap().to_string();
    let b = ["--bootstrap", addr.as_str()];

    let out = topic_cmd(&[
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=60000",
        b[0],
        b[1],
    ])
    .unwrap();
    assert!(
        out.contains("Created topic orders with 3 partitions"),
        "{out}"
    );
    let list = topic_cmd(&["list", b[0], b[1]]).unwrap();
    assert!(list.lines().any(|l| l == "orders"), "{list}");
    let desc = topic_cmd(&["describe", "orders", b[0], b[1]]).unwrap();
    assert!(desc.contains("PartitionCount: 3"), "{desc}");
    assert!(desc.contains("retention.ms=60000"), "{desc}");
    assert_eq!(
        desc.lines().filter(|l| l.contains("\tPartition: ")).count(),
        3,
        "{desc}"
    );

    // Produce 300 stdin lines (round-robin batches), consume them all back from the start.
    let lines: Vec<String> = (0..300).map(|i| format!("{{\"order\": {i}}}")).collect();
    let input = lines.join("\n") + "\n";
    let pa = ProduceCli::try_parse_from([
        "produce",
        "--topic",
        "orders",
        "--compression",
        "lz4",
        b[0],
        b[1],
    ])
    .unwrap()
    .args;
    let n = block_on(cli::produce::run_from(pa, input.as_bytes())).unwrap();
    assert_eq!(n, 300);
    let got = consume_cmd(&[
        "--topic",
        "orders",
        "--from-beginning",
        "--max-messages",
        "300",
        "--timeout-ms",
        "10000",
        b[0],
        b[1],
    ])
    .unwrap();
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>(),
        lines.iter().collect::<BTreeSet<_>>()
    );

    // Keyed messages land on Kafka's murmur2 partition, in order.
    for v in ["k-1", "k-2", "k-3"] {
        let pa = ProduceCli::try_parse_from([
            "produce", "--topic", "orders", "--key", "user-7", "--value", v, b[0], b[1],
        ])
        .unwrap()
        .args;
        block_on(cli::produce::run_from(pa, &b""[..])).unwrap();
    }
    let p = cli::partition_for_key(b"user-7", 3).to_string();
    let got = consume_cmd(&[
        "--topic",
        "orders",
        "--partition",
        &p,
        "--from-beginning",
        "--timeout-ms",
        "1500",
        b[0],
        b[1],
    ])
    .unwrap();
    let keyed: Vec<&String> = got.iter().filter(|l| l.starts_with("k-")).collect();
    assert_eq!(keyed, ["k-1", "k-2", "k-3"]);

    // add-partitions, delete, and the errors a user sees.
    topic_cmd(&["add-partitions", "orders", "--partitions", "5", b[0], b[1]]).unwrap();
    assert!(topic_cmd(&["describe", "orders", b[0], b[1]])
        .unwrap()
        .contains("PartitionCount: 5"));
    let e = consume_cmd(&["--topic", "missing", "--timeout-ms", "100", b[0], b[1]]).unwrap_err();
    assert_eq!(format!("{e:#}"), "topic 'missing' does not exist");
    topic_cmd(&["delete", "orders", b[0], b[1]]).unwrap();
    assert!(!topic_cmd(&["list", b[0], b[1]])
        .unwrap()
        .lines()
        .any(|l| l == "orders"));

    broker.shutdown().unwrap();
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let e = topic_cmd(&["list", "--bootstrap", &free]).unwrap_err();
    assert_eq!(
        format!("{e:#}"),
        format!("cannot connect to {free}: connection refused (is the broker running?)")
    );
}

#[test]
fn pipelined_produce_gets_ordered_offsets_and_fetch_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::start(dir.path());
    let addr = broker.bootstrap().to_string();
    block_on(async {
        let client = Client::connect(&addr, "it").await?;
        client.create_topic("pipe", 1, 1, &[]).await?;
        let conn = client.leader("pipe", 0).await?;
        // 40 requests written before any response is read: offsets come back in order.
        let mut pending = Vec::new();
        for i in 0..40 {
            let v = format!("m{i}");
            pending.push(
                sluice::client::submit_produce_on(
                    &conn,
                    "pipe",
                    0,
                    batch(&[&v, &v], None),
                    Acks::All,
                    10_000,
                )
                .await?,
            );
        }
        assert!(conn.in_flight() > 1, "requests were pipelined");
        let mut offsets = Vec::new();
        for p in pending {
            offsets.push(p.wait().await?.unwrap());
        }
        assert_eq!(offsets, (0..40).map(|i| i * 2).collect::<Vec<i64>>());
        assert_eq!(client.list_offset("pipe", 0, -1).await?, 80);
        assert_eq!(client.list_offset("pipe", 0, -2).await?, 0);
        // acks=0 gets no response and still lands.
        client
            .produce("pipe", 0, batch(&["fire"], None), Acks::None)
            .await?;
        let mut seen = Vec::new();
        let mut offset = 0;
        while seen.len() < 81 {
            let f = client.fetch("pipe", 0, offset, 1000).await?;
            for r in sluice::client::records::decode_records(f.records, offset)? {
                offset = r.offset + 1;
                seen.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        assert_eq!(seen[0], "m0");
        assert_eq!(seen[79], "m39");
        assert_eq!(seen[80], "fire");
        // Unknown topic and partition errors are clear.
        let e = client
            .produce("nope-topic", 0, batch(&["x"], None), Acks::All)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("does not exist") || e.to_string().contains("UnknownTopic"),
            "{e}"
        );
        let e = client.fetch("pipe", 7, 0, 10).await.unwrap_err();
        assert_eq!(e.to_string(), "topic 'pipe' has no partition 7 (it has 1)");
        anyhow::Ok(())
    })
    .unwrap();
    broker.shutdown().unwrap();
}

fn check_bench_json(doc: &serde_json::Value) {
    for k in [
        "workload",
        "environment",
        "throughput",
        "publish_latency_us",
        "e2e_latency_us",
        "timeline",
    ] {
        assert!(doc.get(k).is_some(), "missing {k}");
    }
    assert_eq!(
        doc.as_object().unwrap().len(),
        6,
        "exactly the six top-level keys"
    );
    for k in ["kernel", "cpu", "cores", "commit"] {
        assert!(doc["environment"].get(k).is_some(), "environment.{k}");
    }
    assert!(doc["throughput"]["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(doc["throughput"]["mb_per_s"].as_f64().unwrap() > 0.0);
    for h in ["publish_latency_us", "e2e_latency_us"] {
        let mut prev = 0.0;
        for k in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            let v = doc[h][k].as_f64().unwrap_or_else(|| panic!("{h}.{k}"));
            assert!(v > 0.0 && v >= prev, "{h}.{k} = {v}");
            prev = v;
        }
    }
    assert!(!doc["timeline"].as_array().unwrap().is_empty());
}

#[test]
fn bench_against_a_running_broker_writes_complete_json() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::start(dir.path());
    let addr = broker.bootstrap().to_string();
    let json = dir.path().join("bench.json");
    let args = BenchCli::try_parse_from([
        "bench",
        "--bootstrap",
        &addr,
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ])
    .unwrap()
    .args;
    let w = args.workload().unwrap();
    let doc = sluice::bench::cli::run_with(&args, &w, &addr, "test broker").unwrap();
    let from_file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Compared through the same text parser (serde_json's float parsing may differ by one ulp
    // from the in-memory value).
    let reparsed: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    assert_eq!(reparsed, from_file);
    check_bench_json(&doc);
    // Open loop at 2000 msg/s for 2 s: about 4000 messages acknowledged and consumed.
    let res = &doc["workload"]["phases"][0]["results"];
    let acked = res["acked_msgs"].as_u64().unwrap();
    assert!((3_900..=4_100).contains(&acked), "acked {acked}");
    assert_eq!(
        res["consumed_msgs"].as_u64().unwrap(),
        acked,
        "every acknowledged message consumed"
    );
    assert_eq!(
        res["unsent_msgs"].as_u64().unwrap(),
        0,
        "the target rate was reached"
    );
    assert_eq!(res["errors"].as_u64().unwrap(), 0);
    broker.shutdown().unwrap();
}

#[test]
fn bench_without_bootstrap_runs_an_embedded_broker_and_writes_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = BenchCli::try_parse_from([
        "bench",
        "--rate",
        "1000",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--partitions",
        "2",
        "--quiet",
        "--broker-cores",
        "1",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap()
    .args;
    cli::bench::run(args).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap();
    check_bench_json(&doc);
    assert!(doc["environment"]["broker"]
        .as_str()
        .unwrap()
        .starts_with("embedded sluice"));
    let log = std::fs::read_to_string(out.join("latency.hlog")).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("Tag=rate-1000-publish,")),
        "{log}"
    );
    for svg in ["bench-percentiles.svg", "bench-timeline.svg"] {
        let s = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.contains("</svg>"), "{svg}");
    }
    // compare of a result with itself: every ratio 1.00x.
    let a = out.join("result.json");
    let args =
        BenchCli::try_parse_from(["bench", "compare", a.to_str().unwrap(), a.to_str().unwrap()])
            .unwrap()
            .args;
    cli::bench::run(args).unwrap();
}

#[test]
fn keyed_bench_spreads_messages_by_key_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::start(dir.path());
    let addr = broker.bootstrap().to_string();
    let args = BenchCli::try_parse_from([
        "bench",
        "--bootstrap",
        &addr,
        "--rate",
        "3000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--quiet",
        "--partitions",
        "4",
        "--key-distribution",
        "KEY_ROUND_ROBIN",
        "--keep-topics",
        "--json",
        dir.path().join("k.json").to_str().unwrap(),
    ])
    .unwrap()
    .args;
    let w = args.workload().unwrap();
    let doc = sluice::bench::cli::run_with(&args, &w, &addr, "test broker").unwrap();
    let res = &doc["workload"]["phases"][0]["results"];
    let acked = res["acked_msgs"].as_u64().unwrap();
    assert_eq!(res["consumed_msgs"].as_u64().unwrap(), acked);
    assert!(acked >= 2_900, "acked {acked}");
    // 10 000 random keys over 4 partitions: every partition holds a fair share.
    block_on(async {
        let client = Client::connect(&addr, "it").await?;
        let topic = client
            .metadata(None)
            .await?
            .into_iter()
            .find(|t| t.name.starts_with("sluice-bench-"))
            .unwrap();
        let mut total = 0;
        for p in 0..4 {
            let end = client.list_offset(&topic.name, p, -1).await?;
            assert!(end as u64 > acked / 8, "partition {p} has {end} of {acked}");
            total += end as u64;
        }
        assert_eq!(total, acked);
        anyhow::Ok(())
    })
    .unwrap();
    broker.shutdown().unwrap();
}

/// An old broker that knows ApiVersions only up to v2: it answers our v3 with
/// UNSUPPORTED_VERSION in the v0 layout (as Kafka does), and the client retries at v2.
#[test]
fn api_versions_falls_back_when_the_broker_is_older() {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use std::io::{Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut versions_seen = Vec::new();
        for _ in 0..2 {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            let mut b = bytes::Bytes::from(body);
            let version = i16::from_be_bytes([b[2], b[3]]);
            let header =
                RequestHeader::decode(&mut b, ApiKey::ApiVersions.request_header_version(version))
                    .unwrap();
            versions_seen.push(version);
            let keys = vec![
                ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_min_version(0)
                    .with_max_version(2),
                ApiVersion::default()
                    .with_api_key(ApiKey::Metadata as i16)
                    .with_min_version(0)
                    .with_max_version(9),
            ];
            let (resp, resp_version) = if version > 2 {
                (
                    ApiVersionsResponse::default()
                        .with_error_code(35)
                        .with_api_keys(keys),
                    0,
                )
            } else {
                (ApiVersionsResponse::default().with_api_keys(keys), version)
            };
            let mut out = BytesMut::new();
            out.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut out, 0)
                .unwrap();
            resp.encode(&mut out, resp_version).unwrap();
            let n = (out.len() - 4) as i32;
            out[..4].copy_from_slice(&n.to_be_bytes());
            s.write_all(&out).unwrap();
        }
        versions_seen
    });
    block_on(async {
        let conn = sluice::client::Connection::connect(addr, "it").await?;
        // Metadata: client window 1..=12, broker 0..=9 -> 9.
        assert_eq!(
            conn.version::<kafka_protocol::messages::MetadataRequest>()?,
            9
        );
        // Produce is not offered by this broker: a clear error, not a guess.
        let e = conn
            .version::<kafka_protocol::messages::ProduceRequest>()
            .unwrap_err();
        assert!(
            e.to_string().contains("supports no version of Produce"),
            "{e}"
        );
        anyhow::Ok(())
    })
    .unwrap();
    assert_eq!(peer.join().unwrap(), vec![3, 2]);
}

/// A peer announcing a response frame above the client's limit: the connection fails with a
/// clear error before any buffer of that size exists.
#[test]
fn oversized_response_frame_is_refused() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).unwrap();
        s.write_all(&i32::MAX.to_be_bytes()).unwrap();
        // Keep the socket open until the client gives up on it.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let e = block_on(async {
        Ok(sluice::client::Connection::connect(addr, "it")
            .await
            .map(|_| ()))
    })
    .unwrap()
    .unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "exceeds the limit of {} bytes",
            sluice::limits::CLIENT_RESPONSE_FRAME_BYTES_MAX
        )),
        "{e}"
    );
    peer.join().unwrap();
}

/// Subscriptions as consumer groups: the broker's coordinator and the group leader split the
/// partitions, so each subscription reads every message exactly once.
#[test]
fn bench_with_consumer_groups_reads_every_message_once_per_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::broker::start(dir.path());
    let addr = broker.bootstrap().to_string();
    let args = BenchCli::try_parse_from([
        "bench",
        "--bootstrap",
        &addr,
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--quiet",
        "--partitions",
        "4",
        "--consumers",
        "3",
        "--subscriptions",
        "2",
        "--consumer-groups",
        "--json",
        dir.path().join("g.json").to_str().unwrap(),
    ])
    .unwrap()
    .args;
    let w = args.workload().unwrap();
    assert!(w.consumer_groups);
    let doc = sluice::bench::cli::run_with(&args, &w, &addr, "test broker").unwrap();
    let res = &doc["workload"]["phases"][0]["results"];
    let acked = res["acked_msgs"].as_u64().unwrap();
    assert!(acked >= 3_900, "acked {acked}");
    assert_eq!(res["consumed_msgs"].as_u64().unwrap(), 2 * acked);
    assert_eq!(res["errors"].as_u64().unwrap(), 0, "{res}");
    broker.shutdown().unwrap();
}
