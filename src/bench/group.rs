//! Bench consumers as members of a Kafka consumer group (classic protocol): join, let the
//! leader assign partitions (round-robin over the sorted member ids), sync, heartbeat, leave.
//!
//! All members of a subscription join during setup, inside the broker's
//! `group.initial.rebalance.delay.ms`, so the group settles once; a rebalance during the
//! measured run is reported as an error rather than handled.

use std::rc::Rc;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::client::{Client, ClientError, Connection};

/// Joins needed at most before the group settles (MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS).
const JOIN_ATTEMPTS_MAX: usize = 20;
/// Session and rebalance timeouts the bench consumers ask for.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// Error codes handled by rejoining.
const REBALANCE_IN_PROGRESS: i16 = ResponseError::RebalanceInProgress.code();
const MEMBER_ID_REQUIRED: i16 = ResponseError::MemberIdRequired.code();
const UNKNOWN_MEMBER_ID: i16 = ResponseError::UnknownMemberId.code();
const ILLEGAL_GENERATION: i16 = ResponseError::IllegalGeneration.code();

/// Consumer protocol version used for subscription and assignment bytes.
const CONSUMER_PROTOCOL_VERSION: i16 = 0;

/// A member of a consumer group, after the group settled.
pub struct Member {
    conn: Rc<Connection>,
    group: String,
    member_id: String,
    generation: i32,
}

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_owned()))
}

fn versioned<T: Encodable>(v: &T) -> anyhow::Result<Bytes> {
    let mut b = BytesMut::new();
    b.put_i16(CONSUMER_PROTOCOL_VERSION);
    v.encode(&mut b, CONSUMER_PROTOCOL_VERSION)?;
    Ok(b.freeze())
}

/// Joins `group` subscribed to `topic` (with `partitions` partitions); returns the member
/// and the partitions assigned to it.
pub async fn join(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: usize,
) -> anyhow::Result<(Member, Vec<i32>)> {
    // Each member has its own connection, as separate Kafka consumers do (a Kafka broker
    // handles one request per connection at a time, and JoinGroup waits).
    let addr = client.coordinator(group).await?.addr();
    let conn = Connection::connect(addr, "sluice-bench-member").await?;
    let subscription = versioned(
        &ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_string(topic.to_owned())]),
    )?;
    let mut member_id = String::new();
    for _ in 0..JOIN_ATTEMPTS_MAX {
        let req = JoinGroupRequest::default()
            .with_group_id(gid(group))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(SESSION_TIMEOUT_MS)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription.clone())]);
        let resp = conn.call(&req).await?;
        match resp.error_code {
            MEMBER_ID_REQUIRED => {
                member_id = resp.member_id.to_string();
                continue;
            }
            REBALANCE_IN_PROGRESS => continue,
            UNKNOWN_MEMBER_ID => {
                member_id.clear();
                continue;
            }
            code => ClientError::check("JoinGroup", || format!("group '{group}'"), code, None)?,
        }
        member_id = resp.member_id.to_string();
        let generation = resp.generation_id;
        let mut assignments = Vec::new();
        if resp.leader == resp.member_id {
            let mut members: Vec<String> = resp
                .members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect();
            members.sort();
            for (i, m) in members.iter().enumerate() {
                let parts: Vec<i32> = (0..partitions as i32)
                    .filter(|p| (*p as usize) % members.len() == i)
                    .collect();
                let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                        .with_partitions(parts),
                ]);
                assignments.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(m.clone()))
                        .with_assignment(versioned(&a)?),
                );
            }
        }
        let sync = SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(assignments);
        let resp = conn.call(&sync).await?;
        if matches!(resp.error_code, REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION) {
            continue;
        }
        ClientError::check(
            "SyncGroup",
            || format!("group '{group}'"),
            resp.error_code,
            None,
        )?;
        let mut b = resp.assignment;
        let mut parts = Vec::new();
        if b.len() >= 2 {
            let version = i16::from_be_bytes([b[0], b[1]]);
            let _ = bytes::Buf::get_i16(&mut b);
            let a = ConsumerProtocolAssignment::decode(&mut b, version)
                .context("cannot decode the group assignment")?;
            for tp in a.assigned_partitions {
                if tp.topic.0.as_str() == topic {
                    parts.extend(tp.partitions);
                }
            }
        }
        parts.sort_unstable();
        let member = Member {
            conn,
            group: group.to_owned(),
            member_id,
            generation,
        };
        return Ok((member, parts));
    }
    bail!("group '{group}' did not settle after {JOIN_ATTEMPTS_MAX} joins")
}

/// Joins like [`join`], then waits `settle` and heartbeats: if the group started another
/// rebalance meanwhile (a member joined late), joins again, so the group is stable on return.
pub async fn join_settled(
    client: &Client,
    group: &str,
    topic: &str,
    partitions: usize,
    settle: std::time::Duration,
) -> anyhow::Result<(Member, Vec<i32>)> {
    for _ in 0..JOIN_ATTEMPTS_MAX {
        let (member, parts) = join(client, group, topic, partitions).await?;
        compio::time::sleep(settle).await;
        match member.heartbeat_code().await? {
            0 => return Ok((member, parts)),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => continue,
            code => ClientError::check("Heartbeat", || format!("group '{group}'"), code, None)?,
        }
    }
    bail!("group '{group}' kept rebalancing after {JOIN_ATTEMPTS_MAX} joins")
}

impl Member {
    async fn heartbeat_code(&self) -> anyhow::Result<i16> {
        let req = HeartbeatRequest::default()
            .with_group_id(gid(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()));
        Ok(self.conn.call(&req).await?.error_code)
    }

    /// One heartbeat; an error when the group is rebalancing or the member was dropped.
    pub async fn heartbeat(&self) -> anyhow::Result<()> {
        let code = self.heartbeat_code().await?;
        let group = &self.group;
        ClientError::check(
            "Heartbeat",
            || format!("group '{group}' (a rebalance during the run is not handled by the bench)"),
            code,
            None,
        )?;
        Ok(())
    }

    /// Leaves the group.
    pub async fn leave(&self) -> anyhow::Result<()> {
        let req = LeaveGroupRequest::default()
            .with_group_id(gid(&self.group))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))]);
        let resp = self.conn.call(&req).await?;
        let group = &self.group;
        ClientError::check(
            "LeaveGroup",
            || format!("group '{group}'"),
            resp.error_code,
            None,
        )?;
        Ok(())
    }
}
