//! KIP-848 consumer groups (`group.protocol=consumer`): ConsumerGroupHeartbeat with
//! server-side assignors (`uniform`, sticky; `range`).
//!
//! The group epoch moves whenever membership, subscriptions or the partitions of subscribed
//! topics change; the target assignment is then recomputed. Each heartbeat reconciles one
//! member towards its target: partitions it must give up are taken away first (its epoch stays
//! until it reports them released); partitions it gains are granted only once no other member
//! holds them; then it moves to the assignment epoch.
//!
//! Architecture invariant: like `state.rs`, this module does no I/O and reads no clock.
//! Architecture invariant: a partition is never in two members' assignments (assigned or
//! pending revocation) at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::state::{Code, NONE};

/// (topic id, partition)
pub type Tp = (Uuid, i32);

#[derive(Clone, Debug)]
pub struct HeartbeatParams {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed: Option<Vec<String>>,
    pub server_assignor: Option<String>,
    pub owned: Option<BTreeSet<Tp>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeartbeatResult {
    pub error: Code,
    pub error_message: Option<String>,
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's assignment, when it changed since the last answer.
    pub assignment: Option<BTreeMap<Uuid, Vec<i32>>>,
}

fn err(e: ResponseError, msg: &str) -> HeartbeatResult {
    HeartbeatResult {
        error: e.code(),
        error_message: Some(msg.to_string()),
        member_epoch: -1,
        ..Default::default()
    }
}

pub struct CMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    prev_epoch: i32,
    pub subscribed: Vec<String>,
    rebalance_timeout_ms: i32,
    session_deadline_ms: i64,
    pub assigned: BTreeSet<Tp>,
    pending_revocation: BTreeSet<Tp>,
    revocation_deadline_ms: i64,
    owned: Option<BTreeSet<Tp>>,
    last_sent: Option<BTreeSet<Tp>>,
}

pub struct ConsumerGroup {
    pub id: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: IndexMap<String, CMember>,
    pub target: HashMap<String, BTreeSet<Tp>>,
    /// Subscribed topics with their id and partition count, as of the last target computation.
    metadata: BTreeMap<String, (Uuid, i32)>,
    pub state_since_ms: i64,
}

/// Settings of KIP-848 groups.
#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    pub members_max: usize,
}

impl ConsumerGroup {
    pub fn new(id: String, now_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            id,
            epoch: 0,
            assignment_epoch: 0,
            assignor: "uniform".into(),
            members: IndexMap::new(),
            target: HashMap::new(),
            metadata: BTreeMap::new(),
            state_since_ms: now_ms,
        }
    }

    /// Kafka's names: Empty, Assigning (target behind the group epoch), Reconciling (members
    /// behind the target), Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.pending_revocation.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn bump(&mut self) {
        self.epoch += 1;
    }

    fn remove(&mut self, id: &str, now_ms: i64) {
        if self.members.shift_remove(id).is_some() {
            self.target.remove(id);
            self.bump();
            if self.members.is_empty() {
                self.state_since_ms = now_ms;
            }
        }
    }

    /// One ConsumerGroupHeartbeat. `topics` resolves a topic name to (id, partitions).
    pub fn heartbeat(
        &mut self,
        p: HeartbeatParams,
        topics: &dyn Fn(&str) -> Option<(Uuid, i32)>,
        now_ms: i64,
        s: &ConsumerSettings,
    ) -> HeartbeatResult {
        let id = match p.member_epoch {
            0 => {
                let Some(subscribed) = p.subscribed.clone() else {
                    return err(
                        ResponseError::InvalidRequest,
                        "SubscribedTopicNames must be set when joining",
                    );
                };
                let id = if p.member_id.is_empty() {
                    Uuid::new_v4().simple().to_string()
                } else {
                    p.member_id.clone()
                };
                // A static member's new incarnation replaces the old one.
                if let Some(iid) = &p.instance_id {
                    let old: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.instance_id.as_ref() == Some(iid) && m.id != id)
                        .map(|m| m.id.clone())
                        .collect();
                    for o in old {
                        self.remove(&o, now_ms);
                    }
                }
                if self.members.contains_key(&id) {
                    // A rejoin (after fencing or a restart): start over with nothing assigned.
                    self.remove(&id, now_ms);
                }
                if self.members.len() >= s.members_max {
                    return err(ResponseError::GroupMaxSizeReached, "the group is full");
                }
                if let Some(a) = &p.server_assignor {
                    if a == "uniform" || a == "range" {
                        self.assignor = a.clone();
                    } else {
                        return err(
                            ResponseError::UnsupportedAssignor,
                            "server assignors: uniform, range",
                        );
                    }
                }
                self.members.insert(
                    id.clone(),
                    CMember {
                        id: id.clone(),
                        instance_id: p.instance_id.clone(),
                        rack_id: p.rack_id.clone(),
                        client_id: p.client_id.clone(),
                        client_host: p.client_host.clone(),
                        epoch: 0,
                        prev_epoch: 0,
                        subscribed,
                        rebalance_timeout_ms: p.rebalance_timeout_ms,
                        session_deadline_ms: now_ms + s.session_timeout_ms as i64,
                        assigned: BTreeSet::new(),
                        pending_revocation: BTreeSet::new(),
                        revocation_deadline_ms: 0,
                        owned: None,
                        last_sent: None,
                    },
                );
                self.bump();
                id
            }
            -1 | -2 => {
                if !self.members.contains_key(&p.member_id) {
                    return err(ResponseError::UnknownMemberId, "unknown member");
                }
                self.remove(&p.member_id, now_ms);
                return HeartbeatResult {
                    member_id: p.member_id,
                    member_epoch: p.member_epoch,
                    ..Default::default()
                };
            }
            e => {
                let Some(m) = self.members.get_mut(&p.member_id) else {
                    return err(ResponseError::UnknownMemberId, "unknown member");
                };
                if e != m.epoch && e != m.prev_epoch {
                    return err(ResponseError::FencedMemberEpoch, "stale member epoch");
                }
                m.session_deadline_ms = now_ms + s.session_timeout_ms as i64;
                if p.rebalance_timeout_ms > 0 {
                    m.rebalance_timeout_ms = p.rebalance_timeout_ms;
                }
                let mut changed = false;
                if let Some(sub) = &p.subscribed {
                    if *sub != m.subscribed {
                        m.subscribed = sub.clone();
                        changed = true;
                    }
                }
                if changed {
                    self.bump();
                }
                p.member_id.clone()
            }
        };
        if let Some(o) = p.owned.clone() {
            if let Some(m) = self.members.get_mut(&id) {
                m.owned = Some(o);
            }
        }
        self.refresh_target(topics);
        self.reconcile(&id, now_ms)
    }

    /// Recomputes the target assignment when the group epoch moved or subscribed topics changed.
    fn refresh_target(&mut self, topics: &dyn Fn(&str) -> Option<(Uuid, i32)>) {
        let names: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter())
            .collect();
        let metadata: BTreeMap<String, (Uuid, i32)> = names
            .into_iter()
            .filter_map(|n| topics(n).map(|t| (n.clone(), t)))
            .collect();
        if metadata != self.metadata {
            self.metadata = metadata;
            self.bump();
        }
        if self.assignment_epoch == self.epoch {
            return;
        }
        self.target = if self.assignor == "range" {
            self.range_target()
        } else {
            self.uniform_target()
        };
        self.assignment_epoch = self.epoch;
    }

    fn eligible(&self, topic: &str) -> Vec<&String> {
        self.members
            .values()
            .filter(|m| m.subscribed.iter().any(|t| t == topic))
            .map(|m| &m.id)
            .collect()
    }

    /// Balanced and sticky: members keep what they had (up to their fair share), the rest goes
    /// to the eligible member with the fewest partitions.
    fn uniform_target(&self) -> HashMap<String, BTreeSet<Tp>> {
        let mut out: HashMap<String, BTreeSet<Tp>> = self
            .members
            .keys()
            .map(|k| (k.clone(), BTreeSet::new()))
            .collect();
        let mut all: Vec<(String, Tp)> = Vec::new();
        for (name, (id, n)) in &self.metadata {
            for p in 0..*n {
                all.push((name.clone(), (*id, p)));
            }
        }
        if self.members.is_empty() {
            return out;
        }
        let share = all.len().div_ceil(self.members.len());
        let mut taken = BTreeSet::new();
        for (mid, prev) in &self.target {
            let Some(m) = self.members.get(mid) else {
                continue;
            };
            let mine = out.entry(mid.clone()).or_default();
            for tp in prev {
                let still = all
                    .iter()
                    .any(|(name, t)| t == tp && m.subscribed.contains(name));
                if still && mine.len() < share && taken.insert(*tp) {
                    mine.insert(*tp);
                }
            }
        }
        for (name, tp) in &all {
            if taken.contains(tp) {
                continue;
            }
            let best = self
                .eligible(name)
                .into_iter()
                .min_by_key(|m| out.get(*m).map_or(0, |s| s.len()));
            if let Some(m) = best {
                out.entry(m.clone()).or_default().insert(*tp);
                taken.insert(*tp);
            }
        }
        out
    }

    /// Kafka's range: per topic, contiguous ranges over the subscribed members sorted by id.
    fn range_target(&self) -> HashMap<String, BTreeSet<Tp>> {
        let mut out: HashMap<String, BTreeSet<Tp>> = self
            .members
            .keys()
            .map(|k| (k.clone(), BTreeSet::new()))
            .collect();
        for (name, (id, n)) in &self.metadata {
            let mut ms = self.eligible(name);
            ms.sort();
            if ms.is_empty() {
                continue;
            }
            let (per, extra) = (*n as usize / ms.len(), *n as usize % ms.len());
            let mut next = 0i32;
            for (i, m) in ms.iter().enumerate() {
                let count = per + usize::from(i < extra);
                for _ in 0..count {
                    out.entry((*m).clone()).or_default().insert((*id, next));
                    next += 1;
                }
            }
        }
        out
    }

    fn reconcile(&mut self, id: &str, now_ms: i64) -> HeartbeatResult {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<Tp> = self
            .members
            .values()
            .filter(|m| m.id != id)
            .flat_map(|m| {
                m.assigned
                    .iter()
                    .chain(m.pending_revocation.iter())
                    .copied()
            })
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get_mut(id) else {
            return err(ResponseError::UnknownMemberId, "unknown member");
        };
        if !m.pending_revocation.is_empty() {
            let released = m
                .owned
                .as_ref()
                .is_some_and(|o| o.is_disjoint(&m.pending_revocation));
            if released {
                m.pending_revocation.clear();
            }
        }
        if m.pending_revocation.is_empty() {
            let revoke: BTreeSet<Tp> = m.assigned.difference(&target).copied().collect();
            if !revoke.is_empty() {
                m.assigned = m.assigned.intersection(&target).copied().collect();
                m.pending_revocation = revoke;
                m.revocation_deadline_ms = now_ms + m.rebalance_timeout_ms.max(0) as i64;
            } else {
                for tp in target.difference(&held_by_others) {
                    m.assigned.insert(*tp);
                }
                if m.epoch != assignment_epoch {
                    m.prev_epoch = m.epoch;
                    m.epoch = assignment_epoch;
                }
            }
        }
        debug_assert!(m.assigned.is_disjoint(&held_by_others));
        let assignment = if m.last_sent.as_ref() != Some(&m.assigned) {
            m.last_sent = Some(m.assigned.clone());
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (t, p) in &m.assigned {
                by_topic.entry(*t).or_default().push(*p);
            }
            Some(by_topic)
        } else {
            None
        };
        HeartbeatResult {
            error: NONE,
            error_message: None,
            member_id: id.to_string(),
            member_epoch: m.epoch,
            assignment,
        }
    }

    /// Members whose session lapsed, or who kept partitions past their rebalance timeout, leave.
    pub fn tick(&mut self, now_ms: i64) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || (!m.pending_revocation.is_empty() && m.revocation_deadline_ms <= now_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            tracing::info!(group = %self.id, member = %id, "consumer-protocol member removed: session or rebalance timeout");
            self.remove(&id, now_ms);
        }
    }

    /// OffsetCommit from a member: the epoch must be its current one.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if epoch != m.epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            session_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            members_max: 10,
        }
    }

    fn params(member: &str, epoch: i32, owned: Option<BTreeSet<Tp>>) -> HeartbeatParams {
        HeartbeatParams {
            member_id: member.into(),
            member_epoch: epoch,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 5000,
            subscribed: if epoch == 0 {
                Some(vec!["t".into()])
            } else {
                None
            },
            server_assignor: None,
            owned,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn set(r: &HeartbeatResult) -> BTreeSet<Tp> {
        r.assignment
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
            .collect()
    }

    #[test]
    fn join_split_revoke_and_leave() {
        let topic = Uuid::new_v4();
        let topics = move |n: &str| (n == "t").then_some((topic, 4));
        let s = settings();
        let mut g = ConsumerGroup::new("g".into(), 0);
        let a = g.heartbeat(params("", 0, None), &topics, 0, &s);
        assert_eq!(a.error, NONE);
        assert_eq!(set(&a).len(), 4);
        let a_id = a.member_id.clone();
        let b = g.heartbeat(params("", 0, None), &topics, 1, &s);
        // b's share is still held by a: nothing yet.
        assert_eq!(set(&b).len(), 0);
        let b_id = b.member_id.clone();
        // a is asked to give two up; its epoch stays.
        let a2 = g.heartbeat(params(&a_id, a.member_epoch, None), &topics, 2, &s);
        let kept = set(&a2);
        assert_eq!(kept.len(), 2);
        assert_eq!(a2.member_epoch, a.member_epoch);
        // Until a reports them released, b still gets nothing.
        assert_eq!(
            g.heartbeat(params(&b_id, b.member_epoch, None), &topics, 3, &s)
                .assignment,
            None
        );
        let a3 = g.heartbeat(
            params(&a_id, a2.member_epoch, Some(kept.clone())),
            &topics,
            4,
            &s,
        );
        assert!(a3.member_epoch > a.member_epoch);
        let b2 = g.heartbeat(
            params(&b_id, b.member_epoch, Some(BTreeSet::new())),
            &topics,
            5,
            &s,
        );
        let bs = set(&b2);
        assert_eq!(bs.len(), 2);
        assert!(bs.is_disjoint(&kept));
        assert_eq!(g.state_name(), "Stable");
        // Stale epochs are fenced; commits need the current epoch.
        assert_eq!(
            g.heartbeat(params(&b_id, 99, None), &topics, 6, &s).error,
            ResponseError::FencedMemberEpoch.code()
        );
        assert_eq!(g.check_commit(&b_id, b2.member_epoch), Ok(()));
        assert_eq!(
            g.check_commit(&b_id, 0),
            Err(ResponseError::StaleMemberEpoch)
        );
        // b leaves: a gets everything back.
        g.heartbeat(params(&b_id, -1, None), &topics, 7, &s);
        let a4 = g.heartbeat(params(&a_id, a3.member_epoch, None), &topics, 8, &s);
        assert_eq!(set(&a4).len(), 4);
        // a stops heartbeating: the session timeout removes it.
        g.tick(2000);
        assert!(g.members.is_empty());
        assert_eq!(g.state_name(), "Empty");
    }

    #[test]
    fn range_assignor_is_contiguous() {
        let topic = Uuid::new_v4();
        let topics = move |n: &str| (n == "t").then_some((topic, 5));
        let s = settings();
        let mut g = ConsumerGroup::new("g".into(), 0);
        let mut p = params("a", 0, None);
        p.server_assignor = Some("range".into());
        g.heartbeat(p, &topics, 0, &s);
        g.heartbeat(params("b", 0, None), &topics, 0, &s);
        assert_eq!(g.target["a"], (0..3).map(|p| (topic, p)).collect());
        assert_eq!(g.target["b"], (3..5).map(|p| (topic, p)).collect());
        let mut bad = params("c", 0, None);
        bad.server_assignor = Some("nope".into());
        assert_eq!(
            g.heartbeat(bad, &topics, 0, &s).error,
            ResponseError::UnsupportedAssignor.code()
        );
    }
}
