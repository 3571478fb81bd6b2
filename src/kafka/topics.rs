//! Creating, growing and deleting topics: the catalog change first (durable), then the owning
//! shards open or remove the partition logs. Shared by CreateTopics, auto-creation in
//! Metadata, CreatePartitions and DeleteTopics.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use crate::catalog::TopicMeta;
use crate::kafka::configs;
use crate::limits;
use crate::runtime::{owner_shard, Shard};
use crate::cluster::ClusterOf;

/// A Kafka error code with the message sent to the client.
#[derive(Debug, Clone)]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        TopicError {
            code: e.code(),
            message: message.into(),
        }
    }
}

/// Kafka's rule: 1 to 249 characters of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let bad = |why: &str| {
        Err(TopicError::new(
            ResponseError::InvalidTopicException,
            format!("Topic name \"{name}\" is illegal, {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("it can't be '.' or '..'");
    }
    if name.len() > limits::TOPIC_NAME_BYTES_MAX {
        return bad("it can't be longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b'-')
    {
        return bad("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

pub struct NewTopic {
    pub name: String,
    /// -1 = the broker's `num.partitions`.
    pub partitions: i32,
    /// -1 = default (1).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// A manual replica assignment (CreateTopics `assignments`): partition i's brokers at
    /// index i. Empty: the broker places the replicas.
    pub assignment: Vec<Vec<i32>>,
}

/// Checks a manual replica assignment as Kafka's controller does and returns it as
/// broker ids: every list non-empty, without duplicates, all of one length, and naming only
/// registered brokers (on one node: this broker's `node.id`).
pub fn check_assignment(shard: &Shard, snap: &crate::catalog::CatalogSnapshot, lists: &[Vec<i32>]) -> Result<Vec<Vec<u64>>, TopicError> {
    let bad = |m: String| TopicError::new(ResponseError::InvalidReplicaAssignment, m);
    let rf = lists.first().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(lists.len());
    for (p, brokers) in lists.iter().enumerate() {
        if brokers.is_empty() {
            return Err(bad(format!("The manual partition assignment of partition {p} is empty.")));
        }
        if brokers.len() != rf {
            return Err(bad("All partitions must have the same number of replicas.".into()));
        }
        let mut ids = Vec::with_capacity(brokers.len());
        for &b in brokers {
            let known = match shard.shared.cluster() {
                Some(_) => b >= 0 && snap.data.brokers.contains_key(&(b as u64)),
                None => b == shard.config().node_id,
            };
            if !known {
                return Err(bad(format!("The manual partition assignment includes broker {b}, but no such broker is registered.")));
            }
            if ids.contains(&(b as u64)) {
                return Err(bad(format!("The manual partition assignment of partition {p} names broker {b} twice.")));
            }
            ids.push(b as u64);
        }
        out.push(ids);
    }
    Ok(out)
}

impl From<crate::cluster::metadata::MetaError> for TopicError {
    fn from(e: crate::cluster::metadata::MetaError) -> TopicError {
        TopicError::new(crate::kafka::error::meta(&e), e.message)
    }
}

/// Validates and creates a topic, opening its partitions on their shards before returning.
pub async fn create_topic(
    shard: &Rc<Shard>,
    t: NewTopic,
    validate_only: bool,
) -> Result<TopicMeta, TopicError> {
    validate_topic_name(&t.name)?;
    if !t.assignment.is_empty() && (t.partitions != -1 || t.replication_factor != -1) {
        return Err(TopicError::new(
            ResponseError::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
        ));
    }
    let partitions = if !t.assignment.is_empty() {
        i32::try_from(t.assignment.len()).unwrap_or(i32::MAX)
    } else if t.partitions == -1 {
        shard.config().num_partitions
    } else {
        t.partitions
    };
    if !(1..=limits::PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(TopicError::new(
            ResponseError::InvalidPartitions,
            format!(
                "Number of partitions must be in [1, {}], got {partitions}",
                limits::PARTITIONS_PER_TOPIC_MAX
            ),
        ));
    }
    let clustered = shard.shared.cluster().is_some();
    if !clustered && t.replication_factor != -1 && t.replication_factor != 1 {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Replication factor {} is larger than the 1 available broker",
                t.replication_factor
            ),
        ));
    }
    for (k, v) in &t.configs {
        configs::validate(k, v).map_err(|m| TopicError::new(ResponseError::InvalidConfig, m))?;
    }
    let snap = shard.shared.catalog.snapshot();
    let assignment = check_assignment(shard, &snap, &t.assignment)?;
    if snap.topic(&t.name).is_some() {
        return Err(TopicError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", t.name),
        ));
    }
    if snap.partition_total() + partitions as usize > limits::PARTITIONS_TOTAL_MAX {
        return Err(TopicError::new(
            ResponseError::PolicyViolation,
            format!(
                "The broker holds at most {} partitions",
                limits::PARTITIONS_TOTAL_MAX
            ),
        ));
    }
    if clustered {
        return create_replicated(shard, &snap, t, partitions, assignment, validate_only).await;
    }
    let meta = TopicMeta {
        name: t.name.clone(),
        id: Uuid::new_v4(),
        partitions,
        configs: t.configs,
        replicas: Vec::new(),
        targets: Default::default(),
        raft_ids: Default::default(),
    };
    if validate_only {
        return Ok(meta);
    }
    let new = meta.clone();
    let res = shard
        .shared
        .catalog
        .update(move |d| {
            if d.topics.contains_key(&new.name) {
                return Err(TopicError::new(
                    ResponseError::TopicAlreadyExists,
                    format!("Topic '{}' already exists.", new.name),
                ));
            }
            d.topics.insert(new.name.clone(), new);
            Ok(())
        })
        .await
        .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
    res?;
    tracing::info!(topic = %meta.name, partitions, id = %meta.id, "topic created");
    open_partitions(shard, &meta, 0..partitions).await;
    Ok(meta)
}

/// Cluster mode: places the replicas and commits the topic to the metadata log; returns once
/// this node applied it (its own replicas are open).
async fn create_replicated(
    shard: &Rc<Shard>,
    snap: &crate::catalog::CatalogSnapshot,
    t: NewTopic,
    partitions: i32,
    assignment: Vec<Vec<u64>>,
    validate_only: bool,
) -> Result<TopicMeta, TopicError> {
    use crate::cluster::metadata;
    let brokers: Vec<u64> = snap.data.brokers.keys().copied().collect();
    let rf = match (
        !assignment.is_empty(),
        t.replication_factor,
        shard.config().default_replication_factor,
    ) {
        (true, _, _) => assignment.first().map_or(0, Vec::len),
        (false, -1, -1) => brokers.len().min(3),
        (false, -1, d) => d.max(1) as usize,
        (false, r, _) => r.max(0) as usize,
    };
    if rf == 0 || rf > brokers.len() {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "Replication factor: {rf} larger than available brokers: {}.",
                brokers.len()
            ),
        ));
    }
    let replicas = if assignment.is_empty() {
        metadata::place(
            &brokers,
            &metadata::racks(snap),
            &metadata::replica_load(snap),
            partitions as usize,
            rf,
        )
    } else {
        assignment
    };
    let meta = TopicMeta {
        name: t.name.clone(),
        id: Uuid::new_v4(),
        partitions,
        configs: t.configs,
        replicas,
        targets: Default::default(),
        raft_ids: Default::default(),
    };
    if validate_only {
        return Ok(meta);
    }
    metadata::propose(
        shard,
        metadata::MetaOp::CreateTopic {
            topic: meta.clone(),
        },
    )
    .await?;
    Ok(meta)
}

/// Grows a topic to `count` partitions; `assignment` (may be empty) places the new ones by
/// hand, one broker list per new partition.
pub async fn add_partitions(
    shard: &Rc<Shard>,
    name: &str,
    count: i32,
    assignment: &[Vec<i32>],
    validate_only: bool,
) -> Result<(), TopicError> {
    let snap = shard.shared.catalog.snapshot();
    let Some(topic) = snap.topic(name) else {
        return Err(TopicError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic '{name}' does not exist."),
        ));
    };
    if count <= topic.partitions {
        return Err(TopicError::new(
            ResponseError::InvalidPartitions,
            format!(
                "Topic currently has {} partitions, which is higher than the requested {count}.",
                topic.partitions
            ),
        ));
    }
    if count > limits::PARTITIONS_PER_TOPIC_MAX
        || snap.partition_total() + (count - topic.partitions) as usize
            > limits::PARTITIONS_TOTAL_MAX
    {
        return Err(TopicError::new(
            ResponseError::InvalidPartitions,
            format!("{count} partitions is over the broker's limits"),
        ));
    }
    let manual = check_assignment(shard, &snap, assignment)?;
    if !manual.is_empty() {
        let added = (count - topic.partitions) as usize;
        if manual.len() != added {
            return Err(TopicError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Increasing the number of partitions by {added} but {} assignments provided.", manual.len()),
            ));
        }
        let rf = topic.replicas.first().map_or(1, Vec::len);
        if manual[0].len() != rf {
            return Err(TopicError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Inconsistent replication factor between partitions, partition 0 has {rf} while the new assignment has {}.", manual[0].len()),
            ));
        }
    }
    if validate_only {
        return Ok(());
    }
    if shard.shared.cluster().is_some() {
        use crate::cluster::metadata;
        let brokers: Vec<u64> = snap.data.brokers.keys().copied().collect();
        let rf = topic
            .replicas
            .first()
            .map_or(1, |r| r.len())
            .min(brokers.len())
            .max(1);
        let mut replicas = topic.replicas.clone();
        if manual.is_empty() {
            replicas.extend(metadata::place(
                &brokers,
                &metadata::racks(&snap),
                &metadata::replica_load(&snap),
                (count - topic.partitions) as usize,
                rf,
            ));
        } else {
            replicas.extend(manual);
        }
        let op = metadata::MetaOp::AddPartitions {
            name: name.to_string(),
            id: topic.id,
            replicas,
        };
        return Ok(metadata::propose(shard, op).await?);
    }
    let old = topic.partitions;
    let name_owned = name.to_string();
    let res = shard
        .shared
        .catalog
        .update(move |d| match d.topics.get_mut(&name_owned) {
            Some(t) if t.partitions == old => {
                t.partitions = count;
                Ok(t.clone())
            }
            Some(_) => Err(TopicError::new(
                ResponseError::ConcurrentTransactions,
                "the topic changed meanwhile; retry",
            )),
            None => Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                "the topic was deleted meanwhile",
            )),
        })
        .await
        .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
    let meta = res?;
    tracing::info!(topic = %name, from = old, to = count, "partitions added");
    open_partitions(shard, &meta, old..count).await;
    Ok(())
}

/// Deletes a topic: out of the catalog first, then each owning shard removes its logs.
pub async fn delete_topic(shard: &Rc<Shard>, name: &str) -> Result<TopicMeta, TopicError> {
    if shard.shared.cluster().is_some() {
        let Some(meta) = shard.shared.catalog.snapshot().topic(name).cloned() else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic '{name}' does not exist."),
            ));
        };
        let op = crate::cluster::metadata::MetaOp::DeleteTopic {
            name: name.to_string(),
            id: meta.id,
        };
        crate::cluster::metadata::propose(shard, op).await?;
        return Ok(meta);
    }
    let name_owned = name.to_string();
    let res = shard
        .shared
        .catalog
        .update(move |d| {
            d.topics.remove(&name_owned).ok_or_else(|| {
                TopicError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic '{name_owned}' does not exist."),
                )
            })
        })
        .await
        .map_err(|e| TopicError::new(ResponseError::KafkaStorageError, e.to_string()))?;
    let meta = res?;
    let n = shard.shared.shard_count();
    for p in 0..meta.partitions {
        let owner = owner_shard(&meta.id, p, n);
        let topic = meta.name.clone();
        let r = shard
            .run_on(owner, move |s| async move {
                s.remove_log(&topic, p).await.map_err(|e| e.to_string())
            })
            .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(topic = %meta.name, partition = p, error = %e, "removing partition data failed")
            }
            Err(e) => {
                tracing::error!(topic = %meta.name, partition = p, error = %e, "removing partition data failed")
            }
        }
    }
    tracing::info!(topic = %meta.name, "topic deleted");
    Ok(meta)
}

async fn open_partitions(shard: &Rc<Shard>, meta: &TopicMeta, range: std::ops::Range<i32>) {
    let n = shard.shared.shard_count();
    let parts: Vec<i32> = range.collect();
    let opens = parts.iter().map(|&p| {
        let owner = owner_shard(&meta.id, p, n);
        let m = meta.clone();
        shard.run_on(owner, move |s| async move {
            s.open_log(&m, p)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    for (p, r) in parts.iter().zip(futures::future::join_all(opens).await) {
        let err = match r {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        tracing::error!(topic = %meta.name, partition = p, error = %err, "partition failed to open; it stays offline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders").is_ok());
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        for bad in ["", ".", "..", "has space", "slash/", "ümlaut"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
