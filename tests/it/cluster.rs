//! Cluster mode on one node (a Raft cluster of one voter): hostile bytes on the replication
//! listener cost only their own connection; the node keeps answering and committing; hostile
//! reassignment requests get Kafka's error codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use sluice::server::{Broker, BrokerConfig};

use crate::broker::create_topic;
use crate::wire::{self, Conn};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ((1 + payload.len()) as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

fn produce_acks_all(c: &mut Conn, topic: &str) -> i16 {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(wire::batch(&[b"x"], Compression::None)))])]);
    c.call(&req, 9).responses[0].partition_responses[0].error_code
}

#[test]
fn hostile_replication_frames_cost_only_their_connection() {
    crate::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let raddr = free_addr();
    let config = BrokerConfig { data_dir: dir.path().to_path_buf(), cores: 2, node_id: 1, cluster_voters: vec![(1, raddr)], ..BrokerConfig::default() };
    let b = Broker::start(config).unwrap();
    let mut c = Conn::connect(b.bootstrap());
    // Until the node's registration is committed there is no broker to place replicas on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while create_topic(&mut c, "t", 1, &[]) != 0 {
        assert!(Instant::now() < deadline, "no replicated topic within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while produce_acks_all(&mut c, "t") != 0 {
        assert!(Instant::now() < deadline, "the partition never got a leader");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut raft_garbage = frame(1, &[0u8; 20]);
    raft_garbage.extend_from_slice(&[0xff; 64]);
    let hostile: Vec<Vec<u8>> = vec![
        0u32.to_be_bytes().to_vec(),                       // zero-length frame
        u32::MAX.to_be_bytes().to_vec(),                   // absurd length
        (64u32 << 20 | 1).to_be_bytes().to_vec(),          // just over the frame bound
        frame(1, &[1, 2, 3]),                              // Raft frame shorter than its group id
        raft_garbage,                                      // undecodable Raft message
        frame(2, b"not json"),                             // bad leadership report
        frame(3, b"[1, \"no address\"]"),                  // bad join request
        frame(9, b"unknown kind"),                         // unknown frame kind
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(), // noise
        frame(1, &[0u8; 19]),                              // truncated mid-frame below
    ];
    for bytes in &hostile {
        let mut s = TcpStream::connect(raddr).unwrap();
        let _ = s.write_all(bytes);
        drop(s);
    }
    // The node still commits (its own Raft traffic is local) and answers.
    for _ in 0..5 {
        assert_eq!(produce_acks_all(&mut c, "t"), 0);
    }
    // Hostile reassignments get Kafka's error codes and change nothing.
    for (partition, replicas, code) in [
        (0, Some(vec![]), 39),         // INVALID_REPLICA_ASSIGNMENT: empty
        (0, Some(vec![1, 1]), 39),     // duplicate broker
        (0, Some(vec![1, 99]), 39),    // unregistered broker
        (0, Some(vec![-5]), 39),       // negative id
        (7, Some(vec![1]), 3),         // UNKNOWN_TOPIC_OR_PARTITION
        (-1, Some(vec![1]), 3),
        (0, None, 85),                 // NO_REASSIGNMENT_IN_PROGRESS: nothing to cancel
    ] {
        let req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(5000).with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.clone().map(|r| r.into_iter().map(BrokerId).collect()))])]);
        let resp = c.call(&req, 0);
        assert_eq!(resp.responses[0].partitions[0].error_code, code, "{partition} {replicas:?}");
    }
    let list = c.call(&ListPartitionReassignmentsRequest::default().with_timeout_ms(5000).with_topics(None), 0);
    assert!(list.topics.is_empty());
    assert_eq!(produce_acks_all(&mut c, "t"), 0);
    b.shutdown().unwrap();
}

/// A cluster node answers clients only once its registration is committed, as a Kafka broker
/// does: before that its Metadata would list no broker and a CreateTopics would find none
/// ("Replication factor: 1 larger than available brokers: 0"). A client that connects early
/// waits in the listen backlog and is answered once the node has registered.
#[test]
fn a_node_serves_clients_only_once_registered() {
    crate::init_logs();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let voters = vec![(1, free_addr()), (2, free_addr())];
    let config = |id: u64, dir: &std::path::Path| BrokerConfig {
        data_dir: dir.to_path_buf(),
        cores: 2,
        node_id: id as i32,
        cluster_voters: voters.clone(),
        ..BrokerConfig::default()
    };
    // Node 1 alone has no quorum, so it cannot register.
    let b1 = Broker::start(config(1, d1.path())).unwrap();
    let mut c = Conn::connect(b1.bootstrap());
    c.stream.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    c.send(&kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![])), 12);
    assert!(c.read_frame().is_none(), "an unregistered node answered a client");
    let b2 = Broker::start(config(2, d2.path())).unwrap();
    c.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(c.read_frame().is_some(), "no answer once the node could register");
    // Registered before it answered: a topic can be placed on it at the first try.
    assert_eq!(create_topic(&mut c, "first", 1, &[]), 0);
    b1.shutdown().unwrap();
    b2.shutdown().unwrap();
}
