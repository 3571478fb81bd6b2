//! The broker through the Kafka protocol, with a real embedded broker on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice::server::{Broker, BrokerConfig};

use crate::wire::{self, Conn};

pub fn start(dir: &std::path::Path) -> Broker {
    crate::init_logs();
    let config = BrokerConfig { data_dir: dir.to_path_buf(), cores: 2, ..BrokerConfig::default() };
    Broker::start(config).unwrap()
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub fn create_topic(c: &mut Conn, name: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| CreatableTopicConfig::default().with_name(StrBytes::from_string(k.to_string())).with_value(Some(StrBytes::from_string(v.to_string()))))
                    .collect(),
            )])
        .with_timeout_ms(5000);
    let resp = c.call(&req, 7);
    resp.topics[0].error_code
}

pub fn produce(c: &mut Conn, topic: &str, partition: i32, records: Bytes, acks: i16, version: i16) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(records))])]);
    let resp = c.call(&req, version);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

pub fn fetch(c: &mut Conn, topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> (i16, i64, Vec<(i64, Bytes)>) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)])]);
    let resp = c.call(&req, 12);
    assert_eq!(resp.error_code, 0);
    let p = &resp.responses[0].partitions[0];
    (p.error_code, p.high_watermark, p.records.clone().map(wire::decode_values).unwrap_or_default())
}

fn list_offset(c: &mut Conn, topic: &str, partition: i32, ts: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(ts)])]);
    let resp = c.call(&req, 7);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn api_versions_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    for v in 0..=4 {
        let resp = c.call(&ApiVersionsRequest::default(), v);
        assert_eq!(resp.error_code, 0, "v{v}");
        let produce = resp.api_keys.iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
        assert!(produce.min_version <= 3 && produce.max_version >= 7);
        assert!(resp.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
    }
    // A version newer than ours: v0 body with UNSUPPORTED_VERSION and our ranges.
    let mut body = c.encode(&ApiVersionsRequest::default(), 4);
    body[3] = 99;
    c.send_raw(&body);
    let mut frame = c.read_frame().unwrap();
    // Response header v0: just the correlation id.
    let correlation = bytes::Buf::get_i32(&mut frame);
    assert!(correlation > 0);
    let resp = <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(!resp.api_keys.is_empty());
    b.shutdown().unwrap();
}

#[test]
fn produce_fetch_list_offsets_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "orders", 3, &[]), 0);
    assert_eq!(create_topic(&mut c, "orders", 3, &[]), 36, "TOPIC_ALREADY_EXISTS");
    assert_eq!(create_topic(&mut c, "bad/name", 1, &[]), 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(create_topic(&mut c, "cfg", 1, &[("no.such", "1")]), 40, "INVALID_CONFIG");
    for p in 0..3 {
        for round in 0..3 {
            let v0 = format!("p{p}-r{round}-a");
            let v1 = format!("p{p}-r{round}-b");
            let (err, base) = produce(&mut c, "orders", p, wire::batch(&[v0.as_bytes(), v1.as_bytes()], Compression::None), -1, 9);
            assert_eq!(err, 0);
            assert_eq!(base, round * 2);
        }
    }
    let (err, _) = produce(&mut c, "orders", 7, wire::batch(&[b"x"], Compression::None), 1, 9);
    assert_eq!(err, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    for p in 0..3 {
        let (err, hwm, values) = fetch(&mut c, "orders", p, 0, 0);
        assert_eq!((err, hwm), (0, 6));
        assert_eq!(values.len(), 6);
        assert_eq!(values[5], (5, Bytes::from(format!("p{p}-r2-b"))));
        // From the middle of a batch: the whole batch comes back, starting before.
        let (_, _, values) = fetch(&mut c, "orders", p, 3, 0);
        assert_eq!(values[0].0, 2, "{values:?}");
        assert_eq!(list_offset(&mut c, "orders", p, -2).1, 0);
        assert_eq!(list_offset(&mut c, "orders", p, -1).1, 6);
        let (err, off, _) = list_offset(&mut c, "orders", p, 1_700_000_000_001);
        assert_eq!((err, off), (0, 1), "the first record at or after the timestamp, inside its batch");
    }
    let (err, _, _) = fetch(&mut c, "orders", 0, 100, 0);
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE");
    drop(c);
    b.shutdown().unwrap();

    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    let (err, hwm, values) = fetch(&mut c, "orders", 1, 0, 0);
    assert_eq!((err, hwm, values.len()), (0, 6, 6));
    let (err, base) = produce(&mut c, "orders", 1, wire::batch(&[b"after restart"], Compression::None), -1, 9);
    assert_eq!((err, base), (0, 6));
    b.shutdown().unwrap();
}

#[test]
fn compressed_batches_stored_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "z", 1, &[]), 0);
    let mut expect = 0;
    for comp in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::None] {
        let (err, base) = produce(&mut c, "z", 0, wire::batch(&[b"one", b"two", b"three"], comp), -1, 9);
        assert_eq!((err, base), (0, expect), "{comp:?}");
        expect += 3;
    }
    let (_, hwm, values) = fetch(&mut c, "z", 0, 0, 0);
    assert_eq!(hwm, 15);
    let offsets: Vec<i64> = values.iter().map(|v| v.0).collect();
    assert_eq!(offsets, (0..15).collect::<Vec<_>>());
    // ListOffsets by timestamp looks inside each codec's batch (protocol/records.rs).
    assert_eq!(create_topic(&mut c, "zt", 5, &[]), 0);
    let codecs = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd, Compression::None];
    for (p, comp) in (0..).zip(codecs) {
        let (err, _) = produce(&mut c, "zt", p, wire::batch(&[b"one", b"two", b"three"], comp), -1, 9);
        assert_eq!(err, 0);
        assert_eq!(list_offset(&mut c, "zt", p, 1_700_000_000_002), (0, 2, 1_700_000_000_002), "{comp:?}");
    }
    b.shutdown().unwrap();
}

#[test]
fn metadata_auto_creates_and_acks0_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name("auto")))]))
        .with_allow_auto_topic_creation(true);
    let resp = c.call(&req, 12);
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(resp.brokers[0].port as u16, b.bootstrap().port());
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 1);
    assert!(!resp.topics[0].topic_id.is_nil());
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name("noauto")))]))
        .with_allow_auto_topic_creation(false);
    assert_eq!(c.call(&req, 12).topics[0].error_code, 3);

    // acks=0: no response at all; the next request's response is the next frame.
    let req = ProduceRequest::default().with_acks(0).with_timeout_ms(1000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name("auto"))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(wire::batch(&[b"fire"], Compression::None)))])]);
    c.send(&req, 9);
    let resp = c.call(&MetadataRequest::default().with_topics(None), 12);
    assert!(resp.topics.iter().any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some("auto")));
    let (_, hwm, _) = fetch(&mut c, "auto", 0, 0, 1000);
    assert_eq!(hwm, 1);
    b.shutdown().unwrap();
}

#[test]
fn long_poll_fetch_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let addr = b.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(create_topic(&mut c, "lp", 2, &[]), 0);
    let waiter = std::thread::spawn(move || {
        let mut c = Conn::connect(addr);
        // Waits up to 20 s; returns as soon as the append below lands.
        fetch(&mut c, "lp", 1, 0, 20_000)
    });
    // Give the fetch a moment to park; correctness does not depend on it.
    std::thread::sleep(Duration::from_millis(200));
    let (err, _) = produce(&mut c, "lp", 1, wire::batch(&[b"wake"], Compression::None), -1, 9);
    assert_eq!(err, 0);
    let (err, hwm, values) = waiter.join().unwrap();
    assert_eq!((err, hwm), (0, 1));
    assert_eq!(values, vec![(0, Bytes::from_static(b"wake"))]);
    b.shutdown().unwrap();
}

#[test]
fn hostile_frames_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let addr = b.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(create_topic(&mut c, "h", 1, &[]), 0);

    // Absurd and negative frame lengths.
    for len in [0x7fff_ffffu32, 0xffff_ffff, 0x8000_0000] {
        let mut bad = Conn::connect(addr);
        use std::io::Write;
        bad.stream.write_all(&len.to_be_bytes()).unwrap();
        assert!(bad.is_closed(), "{len:#x}");
    }
    // Unknown API key; lying array count (Metadata v1 claiming 2^31-1 topics).
    let mut bad = Conn::connect(addr);
    bad.send_raw(b"\x7f\x00\x00\x00\x00\x00\x00\x01\xff\xff");
    assert!(bad.is_closed());
    let mut bad = Conn::connect(addr);
    bad.send_raw(b"\x00\x03\x00\x01\x00\x00\x00\x01\xff\xff\x7f\xff\xff\xff");
    assert!(bad.is_closed());
    // Random bytes.
    let mut bad = Conn::connect(addr);
    bad.send_raw(&[0xAB; 64]);
    assert!(bad.is_closed());

    // A batch whose CRC does not match: CORRUPT_MESSAGE, nothing stored.
    let mut records = wire::batch(&[b"payload"], Compression::None).to_vec();
    let last = records.len() - 1;
    records[last] ^= 0xff;
    let (err, _) = produce(&mut c, "h", 0, Bytes::from(records), -1, 9);
    assert_eq!(err, 2, "CORRUPT_MESSAGE");
    // The broker still serves the well-behaved connection.
    let (err, base) = produce(&mut c, "h", 0, wire::batch(&[b"good"], Compression::None), -1, 9);
    assert_eq!((err, base), (0, 0));
    b.shutdown().unwrap();
}


/// Large fetches leave the segment file through splice (zero-copy); the bytes must arrive
/// exactly, also when the client reads slowly and the socket buffer fills.
#[test]
fn large_fetch_is_spliced_intact() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path());
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "big", 1, &[]), 0);
    let value: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for i in 0..40 {
        let (err, base) = produce(&mut c, "big", 0, wire::batch(&[&value[..]], Compression::None), -1, 9);
        assert_eq!((err, base), (0, i));
    }
    for version in [4i16, 11, 12, 16] {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_session_epoch(if version >= 7 { -1 } else { 0 })
            .with_topics(vec![{
                let t = if version >= 13 {
                    let id = c.call(&MetadataRequest::default().with_topics(None), 12).topics[0].topic_id;
                    FetchTopic::default().with_topic_id(id)
                } else {
                    FetchTopic::default().with_topic(topic_name("big"))
                };
                t.with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(8 << 20)])
            }]);
        let body = c.encode(&req, version);
        c.send_raw(&body);
        std::thread::sleep(Duration::from_millis(300)); // let the socket buffer fill up
        let mut frame = c.read_frame().expect("response");
        let api = ApiKey::Fetch;
        let _ = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut frame, api.response_header_version(version)).unwrap();
        let resp = <FetchResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, version).unwrap();
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let values = wire::decode_values(p.records.clone().unwrap());
        assert_eq!(values.len(), 40, "v{version}");
        assert!(values.iter().enumerate().all(|(i, (o, v))| *o == i as i64 && v[..] == value[..]), "v{version}");
    }
    b.shutdown().unwrap();
}

/// With a tiny per-shard request budget, pipelined requests larger than the budget are admitted
/// one at a time (back-pressure), and every one is answered, in order.
#[test]
fn request_budget_applies_back_pressure_without_deadlock() {
    crate::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig { data_dir: dir.path().to_path_buf(), cores: 1, queued_max_request_bytes: 10_000, ..BrokerConfig::default() };
    let b = Broker::start(config).unwrap();
    let mut c = Conn::connect(b.bootstrap());
    assert_eq!(create_topic(&mut c, "bp", 1, &[]), 0);
    let value = vec![7u8; 30_000];
    let n = 20;
    for _ in 0..n {
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("bp"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(wire::batch(&[&value[..]], Compression::None)))])]);
        c.send(&req, 9);
    }
    for i in 0..n {
        let mut frame = c.read_frame().expect("every pipelined request is answered");
        let _ = <ResponseHeader as kafka_protocol::protocol::Decodable>::decode(&mut frame, 1).unwrap();
        let resp = <ProduceResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 9).unwrap();
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i as i64));
    }
    b.shutdown().unwrap();
}

/// SO_REUSEPORT (one listener per shard) must not let a second broker share a busy port.
#[test]
fn second_broker_on_a_busy_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path());
    let dir2 = tempfile::tempdir().unwrap();
    let config = BrokerConfig { data_dir: dir2.path().to_path_buf(), listen: a.bootstrap(), cores: 1, ..BrokerConfig::default() };
    let err = Broker::start(config).err().expect("the port is taken");
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    a.shutdown().unwrap();
}
