//! Consumer groups over the wire: the classic protocol against an embedded broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::server::{Broker, BrokerConfig};

use crate::broker::create_topic;
use crate::wire::Conn;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn start(dir: &std::path::Path) -> Broker {
    crate::init_logs();
    let config = BrokerConfig {
        data_dir: dir.to_path_buf(),
        cores: 2,
        group_initial_rebalance_delay_ms: 200,
        group_min_session_timeout_ms: 100,
        ..BrokerConfig::default()
    };
    Broker::start(config).unwrap()
}

const JOIN_V: i16 = 7;

struct Joined {
    member_id: String,
    generation: i32,
    leader: String,
    members: Vec<(String, Bytes)>,
    error: i16,
}

/// JoinGroup, answering MEMBER_ID_REQUIRED with the id given (v4+ first round).
fn join(
    addr: SocketAddr,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    meta: &[u8],
    session_ms: i32,
) -> Joined {
    let mut c = Conn::connect(addr);
    let mut member = member_id.to_string();
    loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(3000)
            .with_member_id(s(&member))
            .with_group_instance_id(instance.map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::copy_from_slice(meta))]);
        let r = c.call(&req, JOIN_V);
        if r.error_code == ResponseError::MemberIdRequired.code() {
            assert!(member.is_empty());
            member = r.member_id.to_string();
            continue;
        }
        return Joined {
            member_id: r.member_id.to_string(),
            generation: r.generation_id,
            leader: r.leader.to_string(),
            members: r
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), m.metadata.clone()))
                .collect(),
            error: r.error_code,
        };
    }
}

fn join_async(
    addr: SocketAddr,
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    meta: &'static [u8],
) -> thread::JoinHandle<Joined> {
    let (g, m, i) = (
        group.to_string(),
        member_id.to_string(),
        instance.map(|x| x.to_string()),
    );
    thread::spawn(move || join(addr, &g, &m, i.as_deref(), meta, 10_000))
}

fn sync(
    addr: SocketAddr,
    group: &str,
    member: &str,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> (i16, Bytes) {
    let mut c = Conn::connect(addr);
    let req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .into_iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(&m))
                        .with_assignment(a)
                })
                .collect(),
        );
    let r = c.call(&req, 5);
    (r.error_code, r.assignment)
}

fn sync_async(
    addr: SocketAddr,
    group: &str,
    member: &str,
    generation: i32,
) -> thread::JoinHandle<(i16, Bytes)> {
    let (g, m) = (group.to_string(), member.to_string());
    thread::spawn(move || sync(addr, &g, &m, generation, vec![]))
}

fn heartbeat(
    c: &mut Conn,
    group: &str,
    member: &str,
    generation: i32,
    instance: Option<&str>,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    c.call(&req, 4).error_code
}

/// Two members join and sync; returns (leader, follower) joins.
fn stable_pair(
    addr: SocketAddr,
    group: &str,
    ia: Option<&str>,
    ib: Option<&str>,
) -> (Joined, Joined) {
    let a = join_async(addr, group, "", ia, b"meta-a");
    let b = join_async(addr, group, "", ib, b"meta-b");
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert_eq!((a.error, b.error), (0, 0));
    assert_eq!(a.generation, b.generation);
    assert_eq!(a.leader, b.leader);
    let (leader, follower) = if a.member_id == a.leader {
        (a, b)
    } else {
        (b, a)
    };
    let mut metas: Vec<Bytes> = leader.members.iter().map(|(_, m)| m.clone()).collect();
    metas.sort();
    assert_eq!(
        metas,
        vec![Bytes::from_static(b"meta-a"), Bytes::from_static(b"meta-b")],
        "leader sees every member's metadata"
    );
    assert!(follower.members.is_empty());
    let fs = sync_async(addr, group, &follower.member_id, follower.generation);
    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"to-leader")),
        (
            follower.member_id.clone(),
            Bytes::from_static(b"to-follower"),
        ),
    ];
    let (e, la) = sync(
        addr,
        group,
        &leader.member_id,
        leader.generation,
        assignments,
    );
    assert_eq!((e, la), (0, Bytes::from_static(b"to-leader")));
    assert_eq!(fs.join().unwrap(), (0, Bytes::from_static(b"to-follower")));
    (leader, follower)
}

#[test]
fn join_sync_heartbeat_rebalance_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let g = "g-basic";
    let (leader, follower) = stable_pair(addr, g, None, None);
    let gen1 = leader.generation;
    let mut c = Conn::connect(addr);
    assert_eq!(heartbeat(&mut c, g, &leader.member_id, gen1, None), 0);
    assert_eq!(heartbeat(&mut c, g, &follower.member_id, gen1, None), 0);
    assert_eq!(
        heartbeat(&mut c, g, &follower.member_id, gen1 - 1, None),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut c, g, "no-such-member", gen1, None),
        ResponseError::UnknownMemberId.code()
    );
    let (e, _) = sync(addr, g, "no-such-member", gen1, vec![]);
    assert_eq!(e, ResponseError::UnknownMemberId.code());

    // A third member: the others learn of the rebalance through their heartbeats.
    let third = join_async(addr, g, "", None, b"meta-c");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = heartbeat(&mut c, g, &leader.member_id, gen1, None);
        if e == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(e, 0);
        assert!(Instant::now() < deadline, "no rebalance signalled");
        thread::sleep(Duration::from_millis(20)); // heartbeat interval, not synchronisation
    }
    assert_eq!(
        heartbeat(&mut c, g, &follower.member_id, gen1, None),
        ResponseError::RebalanceInProgress.code()
    );
    let ra = join_async(addr, g, &leader.member_id, None, b"meta-a");
    let rb = join_async(addr, g, &follower.member_id, None, b"meta-b");
    let (ra, rb, rc) = (
        ra.join().unwrap(),
        rb.join().unwrap(),
        third.join().unwrap(),
    );
    assert_eq!((ra.error, rb.error, rc.error), (0, 0, 0));
    assert_eq!(ra.generation, gen1 + 1);
    assert_eq!(rc.generation, gen1 + 1);
    let leader2 = [&ra, &rb, &rc]
        .into_iter()
        .find(|j| j.member_id == j.leader)
        .unwrap();
    assert_eq!(leader2.members.len(), 3);
    // The old generation is fenced.
    assert_eq!(
        heartbeat(&mut c, g, &ra.member_id, gen1, None),
        ResponseError::IllegalGeneration.code()
    );
    let commit = commit_req(g, gen1, &ra.member_id, "t", 0, 1);
    // Topic "t" does not exist, but the generation check comes first.
    let r = c.call(&commit, 8);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );

    // Batch leave (v3+) of two members; one unknown.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(g)))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&ra.member_id)),
            MemberIdentity::default().with_member_id(s("nobody")),
        ]);
    let r = c.call(&leave, 4);
    assert_eq!(r.members[0].error_code, 0);
    assert_eq!(
        r.members[1].error_code,
        ResponseError::UnknownMemberId.code()
    );
    broker.shutdown().unwrap();
}

#[test]
fn silent_member_is_removed_after_session_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let g = "g-session";
    let a = join_async(addr, g, "", None, b"meta-a");
    let a = a.join().unwrap();
    assert_eq!(a.error, 0);
    // Rebuild with a short session for the member that will die.
    let b = thread::spawn(move || join(addr, "g-session", "", None, b"meta-b", 500));
    let mut c = Conn::connect(addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    // a sees the rebalance and rejoins; then b never heartbeats again.
    while heartbeat(&mut c, g, &a.member_id, a.generation, None)
        != ResponseError::RebalanceInProgress.code()
    {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(20));
    }
    let a2 = join(addr, g, &a.member_id, None, b"meta-a", 10_000);
    let b = b.join().unwrap();
    assert_eq!((a2.error, b.error), (0, 0));
    let leader = if a2.member_id == a2.leader { &a2 } else { &b };
    let follower_sync = sync_async(
        addr,
        g,
        if leader.member_id == a2.member_id {
            &b.member_id
        } else {
            &a2.member_id
        },
        a2.generation,
    );
    assert_eq!(sync(addr, g, &leader.member_id, a2.generation, vec![]).0, 0);
    assert_eq!(follower_sync.join().unwrap().0, 0);
    // b is now silent; a keeps heartbeating until the coordinator drops b and rebalances.
    let started = Instant::now();
    loop {
        let e = heartbeat(&mut c, g, &a2.member_id, a2.generation, None);
        if e == ResponseError::RebalanceInProgress.code() {
            break;
        }
        assert_eq!(e, 0);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "silent member never expired"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "expired too early: {:?}",
        started.elapsed()
    );
    let a3 = join(addr, g, &a2.member_id, None, b"meta-a", 10_000);
    assert_eq!(a3.error, 0);
    assert_eq!(a3.members.len(), 1, "only the live member remains");
    assert_eq!(
        heartbeat(&mut c, g, &b.member_id, a3.generation, None),
        ResponseError::UnknownMemberId.code()
    );
    broker.shutdown().unwrap();
}

#[test]
fn static_member_rejoins_without_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let g = "g-static";
    let (leader, follower) = stable_pair(addr, g, Some("inst-a"), Some("inst-b"));
    // Static member ids start with the instance id.
    let (finst, fmeta): (&str, &[u8]) = if follower.member_id.starts_with("inst-b") {
        ("inst-b", b"meta-b")
    } else {
        ("inst-a", b"meta-a")
    };
    // The follower restarts: no member id, same instance id, same metadata.
    let again = join(addr, g, "", Some(finst), fmeta, 10_000);
    assert_eq!(again.error, 0);
    assert_eq!(again.generation, follower.generation, "no new generation");
    assert_ne!(again.member_id, follower.member_id);
    let mut c = Conn::connect(addr);
    assert_eq!(
        heartbeat(&mut c, g, &leader.member_id, leader.generation, None),
        0,
        "the leader sees no rebalance"
    );
    let (e, a) = sync(addr, g, &again.member_id, again.generation, vec![]);
    assert_eq!(
        (e, a),
        (0, Bytes::from_static(b"to-follower")),
        "the restarted member gets its partitions back"
    );
    assert_eq!(
        heartbeat(
            &mut c,
            g,
            &follower.member_id,
            follower.generation,
            Some(finst)
        ),
        ResponseError::FencedInstanceId.code()
    );
    // Leave by instance id only (v3+).
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(g)))
        .with_members(vec![MemberIdentity::default()
            .with_member_id(s(""))
            .with_group_instance_id(Some(s(finst)))]);
    assert_eq!(c.call(&leave, 3).members[0].error_code, 0);
    assert_eq!(
        heartbeat(&mut c, g, &leader.member_id, leader.generation, None),
        ResponseError::RebalanceInProgress.code()
    );
    broker.shutdown().unwrap();
}

#[test]
fn hostile_group_requests_get_kafka_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let mut c = Conn::connect(addr);
    let huge = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g-hostile")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(vec![7u8; 2 << 20]))]);
    assert_eq!(
        c.call(&huge, JOIN_V).error_code,
        ResponseError::InvalidRequest.code()
    );
    let empty = huge
        .clone()
        .with_group_id(GroupId(s("")))
        .with_protocols(vec![]);
    assert_eq!(
        c.call(&empty, JOIN_V).error_code,
        ResponseError::InvalidGroupId.code()
    );
    let short = huge.clone().with_session_timeout_ms(1).with_protocols(vec![
        JoinGroupRequestProtocol::default().with_name(s("range")),
    ]);
    assert_eq!(
        c.call(&short, JOIN_V).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    let unknown = short
        .clone()
        .with_session_timeout_ms(10_000)
        .with_member_id(s("made-up"));
    assert_eq!(
        c.call(&unknown, JOIN_V).error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut c, "g-none", "m", 1, None),
        ResponseError::UnknownMemberId.code()
    );
    // Offsets for a topic that does not exist are refused per partition.
    let r = c.call(&commit_req("g-hostile", -1, "", "no-such-topic", 0, 5), 8);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    // The broker still answers.
    assert_eq!(
        heartbeat(&mut c, "g-none", "m", 1, None),
        ResponseError::UnknownMemberId.code()
    );
    broker.shutdown().unwrap();
}

fn commit_req(
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("meta")))])])
}

fn fetch_v5(
    c: &mut Conn,
    group: &str,
    topic: &str,
    partitions: Vec<i32>,
) -> Vec<(i32, i64, String)> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(partitions)]));
    let r = c.call(&req, 5);
    assert_eq!(r.error_code, 0);
    r.topics[0]
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.committed_offset,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn commits_survive_restart_and_admin_apis() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(create_topic(&mut c, "orders", 3, &[]), 0);
    // FindCoordinator: this broker, batched in v4.
    let fc = c.call(
        &FindCoordinatorRequest::default()
            .with_key(s("g-commit"))
            .with_key_type(0),
        3,
    );
    assert_eq!((fc.error_code, fc.port), (0, addr.port() as i32));
    let fc = c.call(
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("a"), s("b")]),
        4,
    );
    assert_eq!(fc.coordinators.len(), 2);
    assert!(fc
        .coordinators
        .iter()
        .all(|k| k.error_code == 0 && k.port == addr.port() as i32));
    let txn = c.call(
        &FindCoordinatorRequest::default()
            .with_key(s("tx"))
            .with_key_type(1),
        3,
    );
    assert_eq!(
        txn.error_code,
        ResponseError::CoordinatorNotAvailable.code()
    );
    assert!(txn.error_message.is_some());

    // Unknown group: -1 offsets.
    assert_eq!(
        fetch_v5(&mut c, "g-unknown", "orders", vec![0, 1]),
        vec![(0, -1, String::new()), (1, -1, String::new())]
    );
    for (g, p, o) in [
        ("g-commit", 0, 10),
        ("g-commit", 2, 30),
        ("g-other", 1, 7),
        ("g-commit", 0, 11),
    ] {
        let r = c.call(&commit_req(g, -1, "", "orders", p, o), 8);
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    let r = c.call(&commit_req("g-commit", -1, "", "orders", 9, 1), 2);
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let want = vec![
        (0, 11, "meta".to_string()),
        (1, -1, String::new()),
        (2, 30, "meta".to_string()),
    ];
    assert_eq!(fetch_v5(&mut c, "g-commit", "orders", vec![0, 1, 2]), want);

    // ListGroups / DescribeGroups see offset-only groups as Empty.
    let lg = c.call(&ListGroupsRequest::default(), 4);
    let mut ids: Vec<String> = lg.groups.iter().map(|g| g.group_id.0.to_string()).collect();
    ids.sort();
    assert_eq!(ids, vec!["g-commit".to_string(), "g-other".to_string()]);
    let dg = c.call(
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("g-commit")), GroupId(s("g-nothing"))]),
        5,
    );
    assert_eq!(dg.groups[0].group_state.to_string(), "Empty");
    assert_eq!(dg.groups[1].group_state.to_string(), "Dead");

    broker.shutdown().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(
        fetch_v5(&mut c, "g-commit", "orders", vec![0, 1, 2]),
        want,
        "commits survive a restart"
    );
    // v8: several groups at once, null topics = everything committed.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g-other")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g-unknown")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![2])])),
    ]);
    let r = c.call(&req, 8);
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.groups[0].topics[0].partitions[0].partition_index, 1);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 7);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);

    // OffsetDelete then DeleteGroups, both durable.
    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g-commit")))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("orders")))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(0)
            ])]);
    let r = c.call(&od, 0);
    assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0));
    let r = c.call(
        &DeleteGroupsRequest::default()
            .with_groups_names(vec![GroupId(s("g-other")), GroupId(s("g-nothing"))]),
        2,
    );
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(
        r.results[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    broker.shutdown().unwrap();

    let broker = start(dir.path());
    let mut c = Conn::connect(broker.bootstrap());
    assert_eq!(
        fetch_v5(&mut c, "g-commit", "orders", vec![0, 2]),
        vec![(0, -1, String::new()), (2, 30, "meta".to_string())]
    );
    assert_eq!(
        fetch_v5(&mut c, "g-other", "orders", vec![1]),
        vec![(1, -1, String::new())]
    );
    broker.shutdown().unwrap();
}

#[test]
fn commits_from_members_are_fenced_and_a_busy_group_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(create_topic(&mut c, "events", 2, &[]), 0);
    let g = "g-members";
    let (leader, follower) = stable_pair(addr, g, None, None);
    let ok = c.call(
        &commit_req(g, leader.generation, &leader.member_id, "events", 1, 42),
        8,
    );
    assert_eq!(ok.topics[0].partitions[0].error_code, 0);
    let stale = c.call(
        &commit_req(
            g,
            leader.generation + 5,
            &follower.member_id,
            "events",
            1,
            1,
        ),
        8,
    );
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ResponseError::IllegalGeneration.code()
    );
    let stranger = c.call(
        &commit_req(g, leader.generation, "stranger", "events", 1, 1),
        8,
    );
    assert_eq!(
        stranger.topics[0].partitions[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    let outsider = c.call(&commit_req(g, -1, "", "events", 1, 1), 8);
    assert_eq!(
        outsider.topics[0].partitions[0].error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        fetch_v5(&mut c, g, "events", vec![1]),
        vec![(1, 42, "meta".to_string())]
    );
    let r = c.call(
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(g))]),
        2,
    );
    assert_eq!(r.results[0].error_code, ResponseError::NonEmptyGroup.code());
    let dg = c.call(
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(g))]),
        5,
    );
    assert_eq!(dg.groups[0].group_state.to_string(), "Stable");
    assert_eq!(dg.groups[0].members.len(), 2);
    assert_eq!(dg.groups[0].protocol_data.to_string(), "range");
    // v6 (KIP-1043): the same answer for a live group; GROUP_ID_NOT_FOUND for one that does
    // not exist, which v5 describes as Dead without an error.
    let dg = c.call(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s(g)), GroupId(s("never-used"))]), 6);
    assert_eq!((dg.groups[0].error_code, dg.groups[0].members.len()), (0, 2));
    assert_eq!(dg.groups[1].error_code, ResponseError::GroupIdNotFound.code());
    let dg = c.call(&DescribeGroupsRequest::default().with_groups(vec![GroupId(s("never-used"))]), 5);
    assert_eq!((dg.groups[0].error_code, dg.groups[0].group_state.to_string()), (0, "Dead".to_string()));
    broker.shutdown().unwrap();
}

fn cg_heartbeat(
    c: &mut Conn,
    group: &str,
    member: &str,
    epoch: i32,
    subscribe: bool,
    owned: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
) -> ConsumerGroupHeartbeatResponse {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(5000)
        .with_subscribed_topic_names(if subscribe {
            Some(vec![TopicName(s("kip848"))])
        } else {
            None
        })
        .with_topic_partitions(owned.map(|o| {
            o.into_iter()
                .map(|(t, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(t)
                        .with_partitions(ps)
                })
                .collect()
        }));
    c.call(&req, 0)
}

fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<(uuid::Uuid, Vec<i32>)>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|t| (t.topic_id, t.partitions.clone()))
            .collect()
    })
}

#[test]
fn consumer_protocol_members_reconcile_and_commits_check_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let mut c = Conn::connect(broker.bootstrap());
    assert_eq!(create_topic(&mut c, "kip848", 4, &[]), 0);
    let g = "g-kip848";
    let a = cg_heartbeat(&mut c, g, "", 0, true, None);
    assert_eq!(a.error_code, 0);
    let a_id = a.member_id.clone().unwrap().to_string();
    let a_parts = assigned(&a).unwrap();
    assert_eq!(a_parts[0].1.len(), 4, "a lone member gets every partition");
    let b = cg_heartbeat(&mut c, g, "", 0, true, None);
    let b_id = b.member_id.clone().unwrap().to_string();
    // a must give two partitions up before b gets them.
    let a2 = cg_heartbeat(&mut c, g, &a_id, a.member_epoch, false, None);
    let kept = assigned(&a2).unwrap();
    assert_eq!(kept[0].1.len(), 2);
    let a3 = cg_heartbeat(&mut c, g, &a_id, a2.member_epoch, false, Some(kept.clone()));
    assert!(a3.member_epoch > a.member_epoch);
    let b2 = cg_heartbeat(&mut c, g, &b_id, b.member_epoch, false, Some(vec![]));
    let theirs = assigned(&b2).unwrap();
    assert_eq!(theirs[0].1.len(), 2);
    assert!(
        theirs[0].1.iter().all(|p| !kept[0].1.contains(p)),
        "disjoint"
    );
    // Fencing and unknown members.
    assert_eq!(
        cg_heartbeat(&mut c, g, &b_id, 999, false, None).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        cg_heartbeat(&mut c, g, "nobody", 3, false, None).error_code,
        ResponseError::UnknownMemberId.code()
    );
    // OffsetCommit v9 carries the member epoch.
    let ok = c.call(
        &commit_req(g, b2.member_epoch, &b_id, "kip848", theirs[0].1[0], 7),
        9,
    );
    assert_eq!(ok.topics[0].partitions[0].error_code, 0);
    let stale = c.call(
        &commit_req(g, b2.member_epoch - 1, &b_id, "kip848", theirs[0].1[0], 8),
        9,
    );
    assert_eq!(
        stale.topics[0].partitions[0].error_code,
        ResponseError::StaleMemberEpoch.code()
    );
    // A classic JoinGroup cannot take over a live consumer-protocol group.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(s(g)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    assert_eq!(
        c.call(&join, JOIN_V).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let d = c.call(
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s(g)), GroupId(s("g-none"))]),
        0,
    );
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.to_string(), "Stable");
    assert_eq!(d.groups[0].members.len(), 2);
    assert_eq!(
        d.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    let lg = c.call(
        &ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
        5,
    );
    let listed: Vec<(String, String)> = lg
        .groups
        .iter()
        .map(|l| (l.group_id.0.to_string(), l.group_type.to_string()))
        .collect();
    assert_eq!(listed, vec![(g.to_string(), "consumer".to_string())]);
    // Leaving hands the partitions back.
    assert_eq!(
        cg_heartbeat(&mut c, g, &b_id, -1, false, None).member_epoch,
        -1
    );
    let a4 = cg_heartbeat(&mut c, g, &a_id, a3.member_epoch, false, None);
    assert_eq!(assigned(&a4).unwrap()[0].1.len(), 4);
    broker.shutdown().unwrap();
}

#[derive(clap::Parser)]
struct GroupCli {
    #[command(flatten)]
    args: sluice::cli::group::GroupArgs,
}

fn group_cli(bootstrap: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    use clap::Parser;
    let mut argv = vec![
        "group".to_string(),
        "--bootstrap".to_string(),
        bootstrap.to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let cli = GroupCli::try_parse_from(argv)?;
    let mut out = Vec::new();
    sluice::cli::block_on(sluice::cli::group::run_to(cli.args, &mut out))?;
    Ok(String::from_utf8(out)?)
}

#[test]
fn group_cli_describes_and_resets_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let addr = broker.bootstrap();
    let mut c = Conn::connect(addr);
    assert_eq!(create_topic(&mut c, "replay", 2, &[]), 0);
    for p in 0..2 {
        // Timestamps 1_700_000_000_000 + i (2023-11-14T22:13:20.00iZ).
        let (e, _) = crate::broker::produce(
            &mut c,
            "replay",
            p,
            crate::wire::batch(
                &[b"a", b"b", b"c", b"d", b"e"],
                kafka_protocol::records::Compression::None,
            ),
            -1,
            9,
        );
        assert_eq!(e, 0);
        assert_eq!(
            c.call(&commit_req("g-cli", -1, "", "replay", p, 5), 8)
                .topics[0]
                .partitions[0]
                .error_code,
            0
        );
    }
    let listed = group_cli(addr, &["list"]).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("g-cli ") && l.contains("Empty")),
        "{listed}"
    );
    let described = group_cli(addr, &["describe", "g-cli"]).unwrap();
    let rows: Vec<Vec<&str>> = described
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{described}");
    for r in &rows {
        assert_eq!(&r[..5], &["replay", r[1], "5", "5", "0"], "{described}");
    }
    // Dry run by default.
    let dry = group_cli(
        addr,
        &[
            "reset-offsets",
            "g-cli",
            "--topic",
            "replay",
            "--to-earliest",
        ],
    )
    .unwrap();
    assert!(dry.contains("Dry run"), "{dry}");
    assert_eq!(
        fetch_v5(&mut c, "g-cli", "replay", vec![0, 1])
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec![5, 5]
    );
    let offsets = |c: &mut Conn| {
        fetch_v5(c, "g-cli", "replay", vec![0, 1])
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>()
    };
    group_cli(
        addr,
        &[
            "reset-offsets",
            "g-cli",
            "--topic",
            "replay",
            "--shift-by",
            "-2",
            "--execute",
        ],
    )
    .unwrap();
    assert_eq!(offsets(&mut c), vec![3, 3]);
    group_cli(
        addr,
        &[
            "reset-offsets",
            "g-cli",
            "--topic",
            "replay",
            "--to-datetime",
            "2023-11-14T22:13:20.002Z",
            "--execute",
        ],
    )
    .unwrap();
    assert_eq!(offsets(&mut c), vec![2, 2]);
    group_cli(
        addr,
        &[
            "reset-offsets",
            "g-cli",
            "--topic",
            "replay",
            "--to-offset",
            "100",
            "--execute",
        ],
    )
    .unwrap();
    assert_eq!(offsets(&mut c), vec![5, 5], "clamped to the log end");
    group_cli(
        addr,
        &[
            "reset-offsets",
            "g-cli",
            "--topic",
            "replay",
            "--to-earliest",
            "--execute",
        ],
    )
    .unwrap();
    assert_eq!(offsets(&mut c), vec![0, 0]);
    // Replay: a consumer starting from the reset offsets reads every message again.
    let (_, _, values) = crate::broker::fetch(&mut c, "replay", 0, 0, 0);
    assert_eq!(values.len(), 5);
    assert!(
        group_cli(addr, &["reset-offsets", "g-cli", "--topic", "replay"]).is_err(),
        "a target is required"
    );
    // A group with an active member refuses a reset.
    let m = join(addr, "g-busy", "", None, b"m", 10_000);
    assert_eq!(m.error, 0);
    let e = group_cli(
        addr,
        &[
            "reset-offsets",
            "g-busy",
            "--topic",
            "replay",
            "--to-latest",
            "--execute",
        ],
    )
    .unwrap_err();
    assert!(e.to_string().contains("active members"), "{e}");
    group_cli(addr, &["delete", "g-cli"]).unwrap();
    assert!(!group_cli(addr, &["list"]).unwrap().contains("g-cli"));
    broker.shutdown().unwrap();
}
