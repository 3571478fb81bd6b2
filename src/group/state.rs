//! The classic consumer-group state machine (Kafka's `GroupMetadata` + `GroupCoordinator`),
//! for one group.
//!
//! Architecture invariant: this module does no I/O and reads no clock. Every operation takes
//! `now_ms`; delayed answers (JoinGroup, SyncGroup) are oneshot senders kept in the member and
//! completed by a later operation or by [`Group::tick`]. Unit tests drive it with a fake clock.

use std::collections::HashMap;

use bytes::Bytes;
use futures::channel::oneshot;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;

pub type Code = i16;
pub const NONE: Code = 0;

fn code(e: ResponseError) -> Code {
    e.code()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// Kafka's names, as ListGroups and DescribeGroups report them.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker settings the state machine obeys.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`
    pub members_max: usize,
    /// Bytes of all protocol metadata one member may send in a JoinGroup.
    pub protocol_metadata_bytes_max: usize,
}

/// A JoinGroup as the state machine sees it.
#[derive(Clone, Debug)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: an unknown member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JoinResult {
    pub error: Code,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    fn error(e: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: code(e),
            generation: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncResult {
    pub error: Code,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(e: ResponseError) -> SyncResult {
        SyncResult {
            error: code(e),
            ..Default::default()
        }
    }
}

/// An answer now, or one that arrives when the rebalance moves on.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The member is removed when this passes without a heartbeat (unless it is waiting in a
    /// JoinGroup or SyncGroup, where the rebalance timeout governs).
    pub heartbeat_deadline_ms: i64,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn fail_waiters(&mut self, join: ResponseError, sync: ResponseError) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(join, &self.id));
        }
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(sync));
        }
    }
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// When the group entered its current state (offset expiry counts from becoming Empty).
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id of the static members.
    pub instances: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they lapse.
    pending: HashMap<String, i64>,
    rebalance_deadline_ms: i64,
    /// While set, the first rebalance of an empty group waits (group.initial.rebalance.delay.ms).
    initial_delay_until_ms: Option<i64>,
    rebalance_started_ms: i64,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline_ms: now_ms,
            initial_delay_until_ms: None,
            rebalance_started_ms: now_ms,
        }
    }

    fn set_state(&mut self, s: GroupState, now_ms: i64) {
        self.state = s;
        self.state_since_ms = now_ms;
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Kafka's `isStaticMemberFenced`: the instance id belongs to another member id.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        match instance_id {
            Some(iid) => self.instances.get(iid).is_some_and(|m| m != member_id),
            None => false,
        }
    }

    /// Protocols every current member supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Kafka's protocol vote: among the protocols all members support, each member votes for
    /// the first of its own preferences; most votes wins, ties go to the earlier preference of
    /// the first member.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) = m
                .protocols
                .iter()
                .find_map(|(p, _)| candidates.iter().position(|c| *c == p))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<usize> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|b| *v > votes[b]) {
                best = Some(i);
            }
        }
        best.map(|i| candidates[i].clone())
    }

    pub fn join(&mut self, p: JoinParams, now_ms: i64, s: &GroupSettings) -> Reply<JoinResult> {
        let me = p.member_id.clone();
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &me,
            ));
        }
        if p.session_timeout_ms < s.min_session_timeout_ms
            || p.session_timeout_ms > s.max_session_timeout_ms
        {
            return Reply::Now(JoinResult::error(ResponseError::InvalidSessionTimeout, &me));
        }
        let metadata_bytes: usize = p.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > s.protocol_metadata_bytes_max {
            // Kafka has no dedicated code; the request is invalid for this broker's bounds.
            return Reply::Now(JoinResult::error(ResponseError::InvalidRequest, &me));
        }
        if !self.supports(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &me,
            ));
        }
        if p.member_id.is_empty() {
            self.join_unknown(p, now_ms, s)
        } else {
            self.join_known(p, now_ms, s)
        }
    }

    fn join_unknown(&mut self, p: JoinParams, now_ms: i64, s: &GroupSettings) -> Reply<JoinResult> {
        let prefix = p
            .instance_id
            .as_deref()
            .unwrap_or(if p.client_id.is_empty() {
                "member"
            } else {
                &p.client_id
            });
        let new_id = new_member_id(prefix);
        if let Some(iid) = &p.instance_id {
            if let Some(old) = self.instances.get(iid).cloned() {
                return self.replace_static(&old, new_id, p, now_ms, s);
            }
        }
        if self.members.len() + self.pending.len() >= s.members_max {
            return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        if p.instance_id.is_none() && p.require_known_member_id {
            self.pending
                .insert(new_id.clone(), now_ms + p.session_timeout_ms as i64);
            return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
        }
        self.add_member_and_rebalance(new_id, p, now_ms, s)
    }

    fn join_known(&mut self, p: JoinParams, now_ms: i64, s: &GroupSettings) -> Reply<JoinResult> {
        let id = p.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return self.add_member_and_rebalance(id, p, now_ms, s);
        }
        if !self.members.contains_key(&id) {
            return Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, &id));
        }
        if self.fenced(&id, p.instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(ResponseError::FencedInstanceId, &id));
        }
        let same = self
            .members
            .get(&id)
            .is_some_and(|m| m.protocols == p.protocols);
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(p, now_ms, s),
            GroupState::CompletingRebalance if same => {
                Reply::Now(self.current_generation(&id, false))
            }
            GroupState::Stable if same && !is_leader => {
                Reply::Now(self.current_generation(&id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(p, now_ms, s)
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(ResponseError::UnknownMemberId, &id))
            }
        }
    }

    /// The answer for a member that is already part of the current generation.
    fn current_generation(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.member_list()
        } else {
            Vec::new()
        };
        JoinResult {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn member_list(&self) -> Vec<JoinMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        p: JoinParams,
        now_ms: i64,
        s: &GroupSettings,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
            self.leader = Some(id.clone());
        }
        if let Some(iid) = &p.instance_id {
            self.instances.insert(iid.clone(), id.clone());
        }
        let m = Member {
            id: id.clone(),
            instance_id: p.instance_id,
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout_ms: p.session_timeout_ms,
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            protocol_type: p.protocol_type,
            protocols: p.protocols,
            assignment: Bytes::new(),
            heartbeat_deadline_ms: now_ms + p.session_timeout_ms as i64,
            awaiting_join: Some(tx),
            awaiting_sync: None,
        };
        self.members.insert(id, m);
        if self.state == GroupState::PreparingRebalance {
            // A member joining during the initial delay extends it (Kafka's InitialDelayedJoin).
            let cap = self.rebalance_started_ms + self.max_rebalance_timeout_ms();
            if let Some(until) = self.initial_delay_until_ms.as_mut() {
                *until = (now_ms + s.initial_rebalance_delay_ms).min(cap).max(*until);
            }
        }
        self.maybe_prepare_rebalance(now_ms, s);
        self.try_complete_join(now_ms);
        Reply::Later(rx)
    }

    fn update_member_and_rebalance(
        &mut self,
        p: JoinParams,
        now_ms: i64,
        s: &GroupSettings,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&p.member_id) {
            if let Some(old) = m.awaiting_join.take() {
                // A repeated JoinGroup supersedes the earlier one.
                let _ = old.send(JoinResult::error(ResponseError::RebalanceInProgress, &m.id));
            }
            m.protocols = p.protocols;
            m.session_timeout_ms = p.session_timeout_ms;
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.heartbeat_deadline_ms = now_ms + p.session_timeout_ms as i64;
            m.awaiting_join = Some(tx);
        }
        self.maybe_prepare_rebalance(now_ms, s);
        self.try_complete_join(now_ms);
        Reply::Later(rx)
    }

    /// A known static member rejoined with a new member id: the new id replaces the old one.
    /// Without a metadata change in a Stable group, no rebalance happens.
    fn replace_static(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now_ms: i64,
        s: &GroupSettings,
    ) -> Reply<JoinResult> {
        let Some(mut m) = self.members.shift_remove(old_id) else {
            return self.add_member_and_rebalance(new_id, p, now_ms, s);
        };
        m.fail_waiters(
            ResponseError::FencedInstanceId,
            ResponseError::FencedInstanceId,
        );
        let same = m.protocols == p.protocols;
        m.id = new_id.clone();
        m.client_id = p.client_id.clone();
        m.client_host = p.client_host.clone();
        m.session_timeout_ms = p.session_timeout_ms;
        m.rebalance_timeout_ms = p.rebalance_timeout_ms;
        m.heartbeat_deadline_ms = now_ms + p.session_timeout_ms as i64;
        self.members.insert(new_id.clone(), m);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if let Some(iid) = &p.instance_id {
            self.instances.insert(iid.clone(), new_id.clone());
        }
        if self.state == GroupState::Stable && same {
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            return Reply::Now(self.current_generation(&new_id, is_leader));
        }
        let p = JoinParams {
            member_id: new_id,
            ..p
        };
        self.update_member_and_rebalance(p, now_ms, s)
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    fn maybe_prepare_rebalance(&mut self, now_ms: i64, s: &GroupSettings) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now_ms, s);
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64, s: &GroupSettings) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.rebalance_started_ms = now_ms;
        self.rebalance_deadline_ms = now_ms + self.max_rebalance_timeout_ms();
        self.initial_delay_until_ms = if was_empty && s.initial_rebalance_delay_ms > 0 {
            Some((now_ms + s.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms))
        } else {
            None
        };
    }

    /// Completes the join phase when every member has rejoined (and the initial delay is
    /// over) or the rebalance timeout has passed.
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let delay_over = self.initial_delay_until_ms.is_none_or(|t| now_ms >= t);
        if (all_joined && delay_over) || now_ms >= self.rebalance_deadline_ms {
            self.complete_join(now_ms);
        }
    }

    fn complete_join(&mut self, now_ms: i64) {
        debug_assert_eq!(self.state, GroupState::PreparingRebalance);
        // Dynamic members that did not rejoin in time are out; static ones stay (Kafka).
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        let leader_ok = self.leader.as_ref().is_some_and(|l| {
            self.members
                .get(l)
                .is_some_and(|m| m.awaiting_join.is_some())
        });
        if !leader_ok {
            let next = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next());
            self.leader = next.map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.member_list();
        let (generation, pt, proto) = (
            self.generation,
            self.protocol_type.clone(),
            self.protocol.clone(),
        );
        for m in self.members.values_mut() {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult {
                    error: NONE,
                    generation,
                    protocol_type: pt.clone(),
                    protocol_name: proto.clone(),
                    leader: leader.clone(),
                    skip_assignment: false,
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    /// Removes a member without moving the state machine.
    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            m.fail_waiters(
                ResponseError::UnknownMemberId,
                ResponseError::RebalanceInProgress,
            );
            if let Some(iid) = &m.instance_id {
                if self.instances.get(iid).is_some_and(|x| x == id) {
                    self.instances.remove(iid);
                }
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    fn remove_member_and_update(&mut self, id: &str, now_ms: i64, s: &GroupSettings) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, s);
                self.try_complete_join(now_ms);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    fn touch(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.heartbeat_deadline_ms = now_ms + m.session_timeout_ms as i64;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return Reply::Now(SyncResult::error(e));
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Reply::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        self.touch(member_id, now_ms);
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(SyncResult::error(ResponseError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => Reply::Now(self.sync_result(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(old) = m.awaiting_sync.replace(tx) {
                        let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now_ms);
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let r = self.sync_result(&id);
                        if let Some(tx) = self
                            .members
                            .get_mut(&id)
                            .and_then(|m| m.awaiting_sync.take())
                        {
                            let _ = tx.send(r);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Code {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return code(e);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                self.touch(member_id, now_ms);
                code(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(member_id, now_ms);
                NONE
            }
        }
    }

    /// One member of a LeaveGroup; returns its error code.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
        s: &GroupSettings,
    ) -> Code {
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.instances.get(i)) {
                Some(id) => id.clone(),
                None => return code(ResponseError::UnknownMemberId),
            }
        } else {
            if self.fenced(member_id, instance_id) {
                return code(ResponseError::FencedInstanceId);
            }
            member_id.to_string()
        };
        if self.pending.remove(&id).is_some() {
            self.try_complete_join(now_ms);
            return NONE;
        }
        if !self.members.contains_key(&id) {
            return code(ResponseError::UnknownMemberId);
        }
        self.remove_member_and_update(&id, now_ms, s);
        NONE
    }

    /// Validates an OffsetCommit against the membership (Kafka's rules); Ok = commit allowed.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        if generation < 0 && self.members.is_empty() && self.state == GroupState::Empty {
            // A commit from outside the group protocol (manual assignment, admin tools).
            return Ok(());
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.touch(member_id, now_ms);
        Ok(())
    }

    /// Timers: pending member ids lapse, silent members are removed after their session
    /// timeout, the join phase completes at its deadline or when the initial delay ends.
    pub fn tick(&mut self, now_ms: i64, s: &GroupSettings) {
        self.pending.retain(|_, until| *until > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none()
                    && m.awaiting_sync.is_none()
                    && m.heartbeat_deadline_ms <= now_ms
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member removed: session timeout expired");
            self.remove_member_and_update(&id, now_ms, s);
        }
        self.try_complete_join(now_ms);
    }

    /// Marks the group deleted: waiters get COORDINATOR_NOT_AVAILABLE and rediscover.
    pub fn kill(&mut self, now_ms: i64) {
        for m in self.members.values_mut() {
            m.fail_waiters(
                ResponseError::CoordinatorNotAvailable,
                ResponseError::CoordinatorNotAvailable,
            );
        }
        self.members.clear();
        self.instances.clear();
        self.pending.clear();
        self.set_state(GroupState::Dead, now_ms);
    }

    /// Topics the members subscribe to, from the consumer protocol metadata (for OffsetDelete).
    /// None when the group does not use the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        if self.members.is_empty() {
            return Some(Default::default());
        }
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut out = std::collections::HashSet::new();
        for m in self.members.values() {
            out.extend(parse_subscription_topics(&m.metadata_for(&protocol)).unwrap_or_default());
        }
        Some(out)
    }
}

/// The topics of a ConsumerProtocolSubscription (every version starts with
/// `version: i16, topics: [string]`, non-flexible).
pub fn parse_subscription_topics(b: &[u8]) -> Option<Vec<String>> {
    let mut p = 2usize;
    let n = i32::from_be_bytes(b.get(p..p + 4)?.try_into().ok()?);
    p += 4;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = i16::from_be_bytes(b.get(p..p + 2)?.try_into().ok()?);
        p += 2;
        let len = usize::try_from(len).ok()?;
        out.push(String::from_utf8_lossy(b.get(p..p + len)?).into_owned());
        p += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn settings(delay: i64) -> GroupSettings {
        GroupSettings {
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 1_000_000,
            initial_rebalance_delay_ms: delay,
            members_max: 10,
            protocol_metadata_bytes_max: 1000,
        }
    }

    fn params(member: &str, meta: &'static [u8]) -> JoinParams {
        JoinParams {
            member_id: member.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 5000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(meta))],
            require_known_member_id: false,
        }
    }

    fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected a delayed answer"),
        }
    }

    fn now<T: std::fmt::Debug>(r: Reply<T>) -> T {
        match r {
            Reply::Now(t) => t,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
        rx.try_recv().unwrap()
    }

    /// Two members join and sync; returns (group, leader id, follower id).
    fn stable_pair(s: &GroupSettings) -> (Group, String, String) {
        let mut g = Group::new("g".into(), 0);
        let mut a = later(g.join(params("", b"A"), 0, s));
        let mut b = later(g.join(params("", b"B"), 1, s));
        g.tick(s.initial_rebalance_delay_ms + 1, s);
        let ja = ready(&mut a).unwrap();
        let jb = ready(&mut b).unwrap();
        assert_eq!((ja.error, jb.error), (NONE, NONE));
        assert_eq!(ja.generation, 1);
        assert_eq!(ja.leader, ja.member_id);
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
        assert_eq!(g.state, GroupState::CompletingRebalance);
        let t = s.initial_rebalance_delay_ms;
        let mut sb = later(g.sync(&jb.member_id, None, 1, None, None, vec![], t + 2));
        assert!(ready(&mut sb).is_none());
        let assignments = vec![
            (ja.member_id.clone(), Bytes::from_static(b"a")),
            (jb.member_id.clone(), Bytes::from_static(b"b")),
        ];
        let mut sa = later(g.sync(
            &ja.member_id,
            None,
            1,
            Some("consumer"),
            Some("range"),
            assignments,
            t + 3,
        ));
        assert_eq!(ready(&mut sa).unwrap().assignment, Bytes::from_static(b"a"));
        assert_eq!(ready(&mut sb).unwrap().assignment, Bytes::from_static(b"b"));
        assert_eq!(g.state, GroupState::Stable);
        (g, ja.member_id, jb.member_id)
    }

    #[test]
    fn join_sync_heartbeat_and_initial_delay() {
        let s = settings(300);
        let mut g = Group::new("g".into(), 0);
        let mut a = later(g.join(params("", b"A"), 0, &s));
        g.tick(100, &s);
        assert!(
            ready(&mut a).is_none(),
            "initial delay holds the first rebalance"
        );
        let (mut g, leader, follower) = stable_pair(&s);
        assert_eq!(g.heartbeat(&leader, None, 1, 10), NONE);
        assert_eq!(
            g.heartbeat(&follower, None, 0, 10),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, 10),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn member_id_required_then_join() {
        let s = settings(0);
        let mut g = Group::new("g".into(), 0);
        let p = JoinParams {
            require_known_member_id: true,
            ..params("", b"A")
        };
        let r = now(g.join(p.clone(), 0, &s));
        assert_eq!(r.error, ResponseError::MemberIdRequired.code());
        assert!(!r.member_id.is_empty());
        let mut rx = later(g.join(
            JoinParams {
                member_id: r.member_id.clone(),
                ..p
            },
            1,
            &s,
        ));
        let j = ready(&mut rx).unwrap();
        assert_eq!(j.error, NONE);
        assert_eq!(j.member_id, r.member_id);
        assert_eq!(j.leader, r.member_id);
    }

    #[test]
    fn third_member_triggers_rebalance_and_silent_member_is_dropped() {
        let s = settings(100);
        let (mut g, leader, follower) = stable_pair(&s);
        let mut c = later(g.join(params("", b"C"), 200, &s));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&leader, None, 1, 201),
            ResponseError::RebalanceInProgress.code()
        );
        let mut ra = later(g.join(params(&leader, b"A"), 202, &s));
        // The follower heartbeats but never rejoins: the rebalance timeout (5000 ms) removes it.
        for t in (1000..5200).step_by(500) {
            assert_eq!(
                g.heartbeat(&follower, None, 1, t),
                ResponseError::RebalanceInProgress.code()
            );
            g.tick(t, &s);
        }
        assert!(ready(&mut ra).is_none());
        g.tick(5200, &s);
        let ja = ready(&mut ra).unwrap();
        let jc = ready(&mut c).unwrap();
        assert_eq!(ja.generation, 2);
        assert_eq!(jc.generation, 2);
        assert_eq!(ja.members.len(), 2);
        assert!(!g.members.contains_key(&follower));
        assert_eq!(
            g.heartbeat(&follower, None, 2, 5201),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn session_timeout_expires_member() {
        let s = settings(100);
        let (mut g, leader, follower) = stable_pair(&s);
        assert_eq!(g.heartbeat(&leader, None, 1, 900), NONE);
        g.tick(1500, &s); // follower's last touch was at 102 (sync), session 1000
        assert!(!g.members.contains_key(&follower));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let mut ra = later(g.join(params(&leader, b"A"), 1600, &s));
        let ja = ready(&mut ra).unwrap();
        assert_eq!(ja.generation, 2);
        assert_eq!(ja.members.len(), 1);
    }

    #[test]
    fn leave_triggers_rebalance_and_last_leave_empties() {
        let s = settings(100);
        let (mut g, leader, follower) = stable_pair(&s);
        assert_eq!(g.leave(&follower, None, 10, &s), NONE);
        assert_eq!(
            g.leave(&follower, None, 10, &s),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(g.leave(&leader, None, 11, &s), NONE);
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, 2);
    }

    #[test]
    fn static_member_rejoin_without_rebalance() {
        let s = settings(100);
        let mut g = Group::new("g".into(), 0);
        let pa = JoinParams {
            instance_id: Some("i-a".into()),
            ..params("", b"A")
        };
        let pb = JoinParams {
            instance_id: Some("i-b".into()),
            ..params("", b"B")
        };
        let mut a = later(g.join(pa.clone(), 0, &s));
        let mut b = later(g.join(pb.clone(), 0, &s));
        g.tick(100, &s);
        let ja = ready(&mut a).unwrap();
        let jb = ready(&mut b).unwrap();
        let mut sb = later(g.sync(&jb.member_id, Some("i-b"), 1, None, None, vec![], 1));
        let _sa = later(g.sync(
            &ja.member_id,
            Some("i-a"),
            1,
            None,
            None,
            vec![(jb.member_id.clone(), Bytes::from_static(b"part-b"))],
            1,
        ));
        assert_eq!(
            ready(&mut sb).unwrap().assignment,
            Bytes::from_static(b"part-b")
        );
        // b restarts: new JoinGroup without a member id, same instance id and metadata.
        let r = now(g.join(pb.clone(), 10, &s));
        assert_eq!(r.error, NONE);
        assert_eq!(r.generation, 1);
        assert_ne!(r.member_id, jb.member_id);
        assert_eq!(g.state, GroupState::Stable);
        let sync = now(g.sync(&r.member_id, Some("i-b"), 1, None, None, vec![], 11));
        assert_eq!(sync.assignment, Bytes::from_static(b"part-b"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat(&jb.member_id, Some("i-b"), 1, 12),
            ResponseError::FencedInstanceId.code()
        );
        // Changed metadata does rebalance.
        let pb2 = JoinParams {
            protocols: vec![("range".into(), Bytes::from_static(b"B2"))],
            ..pb
        };
        let _pending = later(g.join(pb2, 13, &s));
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn bounds_and_protocol_checks() {
        let s = settings(0);
        let mut g = Group::new("g".into(), 0);
        let huge = JoinParams {
            protocols: vec![("range".into(), Bytes::from(vec![0u8; 2000]))],
            ..params("", b"")
        };
        assert_eq!(
            now(g.join(huge, 0, &s)).error,
            ResponseError::InvalidRequest.code()
        );
        let short = JoinParams {
            session_timeout_ms: 1,
            ..params("", b"")
        };
        assert_eq!(
            now(g.join(short, 0, &s)).error,
            ResponseError::InvalidSessionTimeout.code()
        );
        let _a = later(g.join(params("", b"A"), 0, &s));
        let other = JoinParams {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..params("", b"")
        };
        assert_eq!(
            now(g.join(other, 0, &s)).error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        for _ in 1..10 {
            let _ = g.join(params("", b"x"), 0, &s);
        }
        assert_eq!(
            now(g.join(params("", b"x"), 0, &s)).error,
            ResponseError::GroupMaxSizeReached.code()
        );
    }

    #[test]
    fn protocol_vote() {
        let s = settings(100);
        let mut g = Group::new("g".into(), 0);
        let p1 = JoinParams {
            protocols: vec![
                ("range".into(), Bytes::new()),
                ("roundrobin".into(), Bytes::new()),
            ],
            ..params("", b"")
        };
        let p2 = JoinParams {
            protocols: vec![
                ("roundrobin".into(), Bytes::new()),
                ("range".into(), Bytes::new()),
            ],
            ..params("", b"")
        };
        let p3 = JoinParams {
            protocols: vec![("roundrobin".into(), Bytes::new())],
            ..params("", b"")
        };
        let _ = g.join(p1, 0, &s);
        let _ = g.join(p2, 0, &s);
        let mut r = later(g.join(p3, 0, &s));
        g.tick(100, &s);
        let j = ready(&mut r).unwrap();
        assert_eq!(j.protocol_name.as_deref(), Some("roundrobin"));
    }

    #[test]
    fn subscription_parse() {
        let mut b = vec![0u8, 1, 0, 0, 0, 2];
        for t in ["a", "bc"] {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse_subscription_topics(&b).unwrap(),
            vec!["a".to_string(), "bc".to_string()]
        );
        assert!(parse_subscription_topics(&[0, 1, 0, 0, 0, 9]).is_none());
    }
}
