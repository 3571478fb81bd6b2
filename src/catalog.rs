//! The catalog: topics, their ids, partition counts and configs.
//!
//! Written durably before any change is visible: the whole catalog is a small JSON file,
//! replaced atomically (write temp, fdatasync, rename, fsync the directory). Readers on every
//! shard take an immutable [`CatalogSnapshot`] (an `Arc`); a change publishes a new snapshot.
//! Changes are rare (admin requests), so the writer is a plain mutex and the file I/O runs on
//! the runtime's blocking pool, never on a shard's event loop.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `catalog` uses `limits`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("catalog writer task failed")]
    Writer,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    /// Topic-level config overrides, by Kafka name (`retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
    /// Cluster mode: each partition's replicas (node ids, preferred leader first). Empty on
    /// a one-node broker (this node holds every partition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<u64>>,
    /// Cluster mode: reassignments in progress, partition -> target replicas.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<i32, Vec<u64>>,
    /// Cluster mode: the Raft id of each replica added by a reassignment, partition -> broker
    /// -> id (see [`TopicMeta::raft_id`]); a replica placed when the partition was created has
    /// its broker id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raft_ids: BTreeMap<i32, BTreeMap<u64, u64>>,
}

impl TopicMeta {
    /// The Raft id of `broker`'s replica of partition `p`: the broker id in its low 32 bits,
    /// and, for a replica added by a reassignment, the metadata log index of that reassignment
    /// above. A broker removed and added back is a new member under a new id, so messages
    /// meant for (or sent by) its earlier copy, whose log is gone, are a stranger's.
    pub fn raft_id(&self, p: i32, broker: u64) -> u64 {
        self.raft_ids.get(&p).and_then(|m| m.get(&broker)).copied().unwrap_or(broker)
    }
}

/// The broker of a partition replica's Raft id ([`TopicMeta::raft_id`]): its low 32 bits.
pub fn broker_of(raft_id: u64) -> u64 {
    raft_id & 0xFFFF_FFFF
}

/// A cluster node as registered in the metadata log: where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub host: String,
    pub port: u16,
    /// `broker.rack`, if set: replicas of a partition go to different racks where possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CatalogData {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this were (or may have been) handed out; reserved in blocks.
    #[serde(default)]
    pub producer_id_next: i64,
    /// Cluster mode: registered nodes by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<u64, BrokerMeta>,
    /// Cluster mode: nodes that joined without being voters, by id: their replication address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<u64, String>,
}

/// An immutable view of the catalog at one version.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    pub version: u64,
    pub data: CatalogData,
    by_id: HashMap<Uuid, String>,
}

impl CatalogSnapshot {
    fn new(version: u64, data: CatalogData) -> Self {
        let by_id = data
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        CatalogSnapshot {
            version,
            data,
            by_id,
        }
    }
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.data.topics.get(name)
    }
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicMeta> {
        self.by_id.get(id).and_then(|n| self.data.topics.get(n))
    }
    pub fn topics(&self) -> impl Iterator<Item = &TopicMeta> {
        self.data.topics.values()
    }
    pub fn partition_total(&self) -> usize {
        self.data
            .topics
            .values()
            .map(|t| t.partitions.max(0) as usize)
            .sum()
    }
}

pub struct Catalog {
    path: PathBuf,
    current: RwLock<Arc<CatalogSnapshot>>,
    writer: Mutex<()>,
}

const CATALOG_FILE: &str = "catalog.json";

impl Catalog {
    /// Opens `<data_dir>/__sluice/catalog.json`, creating an empty catalog with a fresh
    /// cluster id when there is none.
    pub fn open(data_dir: &Path) -> Result<Catalog, CatalogError> {
        let dir = data_dir.join("__sluice");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CatalogError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join(CATALOG_FILE);
        let data = match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.len() > limits::CATALOG_FILE_BYTES_MAX {
                    return Err(CatalogError::Corrupt {
                        path,
                        reason: format!(
                            "{} bytes, more than {}",
                            meta.len(),
                            limits::CATALOG_FILE_BYTES_MAX
                        ),
                    });
                }
                let bytes = std::fs::read(&path).map_err(io(&path))?;
                serde_json::from_slice::<CatalogData>(&bytes).map_err(|e| {
                    CatalogError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let data = CatalogData {
                    cluster_id: new_cluster_id(),
                    topics: BTreeMap::new(),
                    producer_id_next: 0,
                    brokers: BTreeMap::new(),
                    nodes: BTreeMap::new(),
                };
                write_atomically(&path, &data)?;
                data
            }
            Err(e) => return Err(CatalogError::Io { path, source: e }),
        };
        Ok(Catalog {
            path,
            current: RwLock::new(Arc::new(CatalogSnapshot::new(1, data))),
            writer: Mutex::new(()),
        })
    }

    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies `change` to a copy of the catalog, writes it durably, then publishes it.
    /// `change` returning Err leaves the catalog untouched. Blocking: call through
    /// [`Catalog::update`] from a shard.
    pub fn update_blocking<T, E>(
        &self,
        change: impl FnOnce(&mut CatalogData) -> Result<T, E>,
    ) -> Result<Result<T, E>, CatalogError> {
        let _guard = match self.writer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let current = self.snapshot();
        let mut data = current.data.clone();
        let out = match change(&mut data) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        write_atomically(&self.path, &data)?;
        let next = Arc::new(CatalogSnapshot::new(current.version + 1, data));
        match self.current.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(Ok(out))
    }

    /// [`Catalog::update_blocking`] on the runtime's blocking pool.
    pub async fn update<T, E, F>(self: &Arc<Self>, change: F) -> Result<Result<T, E>, CatalogError>
    where
        F: FnOnce(&mut CatalogData) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let me = self.clone();
        compio::runtime::spawn_blocking(move || me.update_blocking(change))
            .await
            .map_err(|_| CatalogError::Writer)?
    }
}

fn new_cluster_id() -> String {
    // Kafka cluster ids are 16 random bytes, base64url without padding (22 characters).
    let id = Uuid::new_v4();
    let hex = id.simple().to_string();
    hex[..22].to_string()
}

fn write_atomically(path: &Path, data: &CatalogData) -> Result<(), CatalogError> {
    let io = |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(data).map_err(|e| CatalogError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_data().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn raft_ids_default_to_the_broker_and_survive_json() {
        let mut t = TopicMeta {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 2,
            configs: BTreeMap::new(),
            replicas: vec![vec![1, 2, 3], vec![2, 3, 4]],
            targets: BTreeMap::new(),
            raft_ids: BTreeMap::new(),
        };
        assert_eq!(t.raft_id(0, 3), 3);
        // Broker 3 added back to partition 1 by the reassignment at metadata index 41.
        t.raft_ids.insert(1, BTreeMap::from([(3, 3 | (41 << 32))]));
        assert_eq!((t.raft_id(0, 3), t.raft_id(1, 3), t.raft_id(1, 2)), (3, 3 | (41 << 32), 2));
        assert_eq!(broker_of(t.raft_id(1, 3)), 3);
        let back: TopicMeta = serde_json::from_slice(&serde_json::to_vec(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        // Catalogs written before raft ids existed read back with none.
        let old = r#"{"name":"t","id":"00000000-0000-0000-0000-000000000001","partitions":1,"configs":{},"replicas":[[1,2,3]]}"#;
        let old: TopicMeta = serde_json::from_str(old).unwrap();
        assert!(old.raft_ids.is_empty());
    }

    #[test]
    fn survives_reopen_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let cluster = cat.snapshot().data.cluster_id.clone();
        let r: Result<(), ()> = cat
            .update_blocking(|d| {
                d.topics.insert(
                    "orders".into(),
                    TopicMeta {
                        name: "orders".into(),
                        id: Uuid::new_v4(),
                        partitions: 3,
                        configs: BTreeMap::new(),
                        replicas: Vec::new(),
                        targets: BTreeMap::new(),
                        raft_ids: BTreeMap::new(),
                    },
                );
                Ok(())
            })
            .unwrap();
        r.unwrap();
        assert_eq!(cat.snapshot().version, 2);
        let again = Catalog::open(dir.path()).unwrap();
        let snap = again.snapshot();
        assert_eq!(snap.data.cluster_id, cluster);
        assert_eq!(snap.topic("orders").unwrap().partitions, 3);
        let id = snap.topic("orders").unwrap().id;
        assert_eq!(snap.topic_by_id(&id).unwrap().name, "orders");

        std::fs::write(dir.path().join("__sluice").join(CATALOG_FILE), b"{not json").unwrap();
        assert!(matches!(
            Catalog::open(dir.path()),
            Err(CatalogError::Corrupt { .. })
        ));
    }

    #[test]
    fn failed_change_leaves_catalog_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let r: Result<(), &str> = cat
            .update_blocking(|d| {
                d.topics.clear();
                Err("no")
            })
            .unwrap();
        assert_eq!(r, Err("no"));
        assert_eq!(cat.snapshot().version, 1);
    }
}
