//! A small async Kafka client on compio, used by the CLI tools and `sluice bench`.
//!
//! It speaks the Kafka protocol through the `kafka-protocol` crate, so it works
//! against Sluice and any other Kafka-compatible broker. Shape:
//! - [`Connection`] (conn.rs): one socket, ApiVersions negotiation, pipelined
//!   requests with correlation ids matched in order, bounded frames.
//! - [`Client`] (this file): bootstrap, metadata cache, leader routing, admin
//!   calls, produce and fetch.
//! - records.rs: record batches in (RecordBatchEncoder) and out (RecordBatchDecoder).
//!
//! Architecture invariant: a `Client` lives on one compio runtime thread (Rc, not Send);
//! a program with several threads makes one client per thread.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `client` uses `limits`.

mod conn;
mod error;
pub mod partitioner;
pub mod records;
mod versions;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    describe_configs_request::DescribeConfigsResource,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

pub use conn::{Connection, ResponseFuture};
pub use error::ClientError;
pub use records::{FetchedRecord, NewRecord};

use crate::limits;

/// Acknowledgement level of a Produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker sends no response.
    None,
    /// The leader wrote the batch.
    Leader,
    /// The batch is durable on all in-sync replicas (Sluice: fdatasync'd).
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "0" | "none" => Ok(Acks::None),
            "1" | "leader" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(format!("acks must be 0, 1 or all (got '{other}')")),
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

/// One partition as Metadata describes it.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// One broker as Metadata describes it.
#[derive(Debug, Clone)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

/// Result of a Fetch for one partition.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    pub topic: String,
    pub partition: i32,
    pub high_watermark: i64,
    pub error_code: i16,
    /// Raw record batches as the broker sent them (possibly ending in a partial batch).
    pub records: Bytes,
}

/// A Produce submitted and not yet acknowledged; await [`PendingProduce::wait`].
pub struct PendingProduce {
    inner: Option<ResponseFuture<ProduceResponse>>,
    topic: String,
    partition: i32,
}

impl PendingProduce {
    /// Waits for the broker's answer; returns the base offset (None for acks=0).
    pub async fn wait(self) -> Result<Option<i64>, ClientError> {
        let Some(fut) = self.inner else {
            return Ok(None);
        };
        let resp = fut.wait().await?;
        let part = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == self.partition);
        let Some(p) = part else {
            return Err(ClientError::Records(format!(
                "Produce response has no entry for {}-{}",
                self.topic, self.partition
            )));
        };
        if p.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(ClientError::UnknownTopic(self.topic));
        }
        let (topic, partition) = (&self.topic, self.partition);
        ClientError::check(
            "Produce",
            || format!("{topic}-{partition}"),
            p.error_code,
            p.error_message.as_ref().map(|m| m.as_str()),
        )?;
        Ok(Some(p.base_offset))
    }
}

/// A client bound to one cluster through its bootstrap addresses.
pub struct Client {
    client_id: String,
    /// The bootstrap address that answered last.
    bootstrap: Cell<SocketAddr>,
    /// Every bootstrap address given (`host:port[,host:port...]`), tried in order.
    bootstraps: Vec<String>,
    conns: RefCell<HashMap<SocketAddr, Rc<Connection>>>,
    brokers: RefCell<HashMap<i32, BrokerInfo>>,
    topics: RefCell<HashMap<String, TopicInfo>>,
}

/// Resolves `host:port` to its first socket address.
pub fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    let mut it = addr.to_socket_addrs().map_err(|e| ClientError::Resolve {
        addr: addr.to_owned(),
        reason: e.to_string(),
    })?;
    it.next().ok_or_else(|| ClientError::Resolve {
        addr: addr.to_owned(),
        reason: "no address".into(),
    })
}

/// A per-topic error code of an admin response: UNKNOWN_TOPIC_OR_PARTITION becomes
/// [`ClientError::UnknownTopic`], any other error the broker's error with its message.
fn check_topic(api: &'static str, name: &str, code: i16, message: Option<&StrBytes>) -> Result<(), ClientError> {
    if code == ResponseError::UnknownTopicOrPartition.code() {
        return Err(ClientError::UnknownTopic(name.to_owned()));
    }
    ClientError::check(api, || format!("topic '{name}'"), code, message.map(|m| m.as_str()))
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

/// Splits a bootstrap list as Kafka's tools take it: `host:port[,host:port...]`, spaces
/// around the commas ignored, empty entries skipped.
pub fn bootstrap_list(bootstrap: &str) -> Vec<String> {
    bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Connects to the first of `bootstraps` that resolves and answers; the last error if none.
async fn connect_any(bootstraps: &[String], client_id: &str) -> Result<(SocketAddr, Rc<Connection>), ClientError> {
    let mut last = ClientError::Resolve { addr: bootstraps.join(","), reason: "no bootstrap address given".into() };
    for b in bootstraps {
        let addr = match resolve(b) {
            Ok(a) => a,
            Err(e) => {
                last = e;
                continue;
            }
        };
        match Connection::connect(addr, client_id).await {
            Ok(conn) => return Ok((addr, conn)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Client {
    /// Connects to the first bootstrap broker of `bootstrap` (`host:port[,host:port...]`, as
    /// Kafka's tools take it) that answers, and negotiates versions.
    pub async fn connect(bootstrap: &str, client_id: &str) -> Result<Client, ClientError> {
        let bootstraps = bootstrap_list(bootstrap);
        let (addr, conn) = connect_any(&bootstraps, client_id).await?;
        let client = Client {
            client_id: client_id.to_owned(),
            bootstrap: Cell::new(addr),
            bootstraps,
            conns: RefCell::new(HashMap::from([(addr, conn)])),
            brokers: RefCell::new(HashMap::new()),
            topics: RefCell::new(HashMap::new()),
        };
        Ok(client)
    }

    /// The bootstrap address in use (the one that answered last).
    pub fn bootstrap(&self) -> SocketAddr {
        self.bootstrap.get()
    }

    async fn conn_to(&self, addr: SocketAddr) -> Result<Rc<Connection>, ClientError> {
        if let Some(c) = self.conns.borrow().get(&addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Connection::connect(addr, &self.client_id).await?;
        self.conns.borrow_mut().insert(addr, c.clone());
        Ok(c)
    }

    /// The connection to the coordinator of consumer group `group` (FindCoordinator).
    pub async fn coordinator(&self, group: &str) -> Result<Rc<Connection>, ClientError> {
        let conn = self.any_conn().await?;
        let req = kafka_protocol::messages::FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_owned()))
            .with_key_type(0);
        let resp = conn.call(&req).await?;
        ClientError::check("FindCoordinator", || format!("group '{group}'"), resp.error_code, resp.error_message.as_ref().map(|m| m.as_str()))?;
        let addr = match resolve(&format!("{}:{}", resp.host.as_str(), resp.port)) {
            Ok(a) if a.ip().is_unspecified() => SocketAddr::new(self.bootstrap().ip(), a.port()),
            Ok(a) => a,
            Err(_) => self.bootstrap(),
        };
        self.conn_to(addr).await
    }

    /// The connection to the bootstrap broker (reconnecting if it failed; if it cannot be
    /// reached, the next bootstrap address that answers).
    pub async fn any_conn(&self) -> Result<Rc<Connection>, ClientError> {
        match self.conn_to(self.bootstrap()).await {
            Ok(c) => Ok(c),
            Err(e) if self.bootstraps.len() <= 1 => Err(e),
            Err(_) => {
                let (addr, conn) = connect_any(&self.bootstraps, &self.client_id).await?;
                self.bootstrap.set(addr);
                self.conns.borrow_mut().insert(addr, conn.clone());
                Ok(conn)
            }
        }
    }

    /// Fetches metadata for `topics` (all topics if None) and refreshes the cache.
    pub async fn metadata(&self, topics: Option<&[String]>) -> Result<Vec<TopicInfo>, ClientError> {
        let conn = self.any_conn().await?;
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let resp = conn.call(&req).await?;
        {
            let mut brokers = self.brokers.borrow_mut();
            brokers.clear();
            for b in &resp.brokers {
                brokers.insert(
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                    },
                );
            }
        }
        let mut out = Vec::new();
        for t in resp.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
                self.topics.borrow_mut().remove(&name);
                return Err(ClientError::UnknownTopic(name));
            }
            ClientError::check("Metadata", || format!("topic '{name}'"), t.error_code, None)?;
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let info = TopicInfo {
                name: name.clone(),
                topic_id: t.topic_id,
                internal: t.is_internal,
                partitions,
            };
            self.topics.borrow_mut().insert(name, info.clone());
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Brokers from the last Metadata response.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        let mut v: Vec<BrokerInfo> = self.brokers.borrow().values().cloned().collect();
        v.sort_by_key(|b| b.node_id);
        v
    }

    /// Metadata of one topic (cached after the first call).
    pub async fn topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.topics.borrow().get(name) {
            return Ok(t.clone());
        }
        let mut v = self.metadata(Some(&[name.to_owned()])).await?;
        v.pop()
            .ok_or_else(|| ClientError::UnknownTopic(name.to_owned()))
    }

    /// The connection to the leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Rc<Connection>, ClientError> {
        let t = self.topic(topic).await?;
        let Some(p) = t.partitions.iter().find(|p| p.partition == partition) else {
            return Err(ClientError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                count: t.partitions.len(),
            });
        };
        let broker = self.brokers.borrow().get(&p.leader).cloned();
        let Some(b) = broker else {
            return Err(ClientError::NoLeader {
                topic: topic.to_owned(),
                partition,
                leader: p.leader,
            });
        };
        // A broker advertising the wildcard address is reached through the bootstrap host.
        let addr = match resolve(&format!("{}:{}", b.host, b.port)) {
            Ok(a) if a.ip().is_unspecified() => SocketAddr::new(self.bootstrap().ip(), a.port()),
            Ok(a) => a,
            Err(_) if self.brokers.borrow().len() == 1 => self.bootstrap(),
            Err(e) => return Err(e),
        };
        self.conn_to(addr).await
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<(), ClientError> {
        let conn = self.any_conn().await?;
        let topic = CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            );
        let req = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(30_000);
        let resp = conn.call(&req).await?;
        for t in &resp.topics {
            ClientError::check(
                "CreateTopics",
                || format!("topic '{name}'"),
                t.error_code,
                t.error_message.as_ref().map(|m| m.as_str()),
            )?;
        }
        self.topics.borrow_mut().remove(name);
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let conn = self.any_conn().await?;
        let req = DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name(name)])
            .with_timeout_ms(30_000);
        let resp = conn.call(&req).await?;
        for t in &resp.responses {
            check_topic("DeleteTopics", name, t.error_code, t.error_message.as_ref())?;
        }
        self.topics.borrow_mut().remove(name);
        Ok(())
    }

    /// Raises the partition count of a topic to `count`.
    pub async fn create_partitions(&self, name: &str, count: i32) -> Result<(), ClientError> {
        let conn = self.any_conn().await?;
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)])
            .with_timeout_ms(30_000);
        let resp = conn.call(&req).await?;
        for r in &resp.results {
            check_topic("CreatePartitions", name, r.error_code, r.error_message.as_ref())?;
        }
        self.topics.borrow_mut().remove(name);
        Ok(())
    }

    /// The configs of a topic as (name, value) pairs.
    pub async fn describe_topic_configs(
        &self,
        name: &str,
    ) -> Result<Vec<(String, Option<String>)>, ClientError> {
        const RESOURCE_TOPIC: i8 = 2;
        let conn = self.any_conn().await?;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_owned()))
                .with_configuration_keys(None),
        ]);
        let resp = conn.call(&req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            check_topic("DescribeConfigs", name, r.error_code, r.error_message.as_ref())?;
            for c in r.configs {
                out.push((c.name.to_string(), c.value.map(|v| v.to_string())));
            }
        }
        out.sort();
        Ok(out)
    }

    /// ListOffsets for one partition: `timestamp` -1 = latest, -2 = earliest.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        let conn = self.leader(topic, partition).await?;
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let resp = conn.call(&req).await?;
        let p = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| {
                ClientError::Records(format!("ListOffsets response lacks {topic}-{partition}"))
            })?;
        if p.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Err(ClientError::UnknownTopic(topic.to_owned()));
        }
        ClientError::check(
            "ListOffsets",
            || format!("{topic}-{partition}"),
            p.error_code,
            None,
        )?;
        Ok(p.offset)
    }

    /// [`Client::list_offset`], retried with fresh metadata while the partition's leader is
    /// not serving it yet (a topic just created, a leader change), for at most
    /// `limits::CLIENT_LEADER_WAIT_MS`.
    pub async fn list_offset_when_led(&self, topic: &str, partition: i32, timestamp: i64) -> Result<i64, ClientError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(limits::CLIENT_LEADER_WAIT_MS);
        loop {
            match self.list_offset(topic, partition, timestamp).await {
                Err(e) if e.is_leader_not_ready() && std::time::Instant::now() < deadline => {
                    self.topics.borrow_mut().remove(topic);
                    compio::time::sleep(std::time::Duration::from_millis(limits::CLIENT_LEADER_RETRY_MS)).await;
                }
                r => return r,
            }
        }
    }

    /// Sends one record batch to a partition's leader, pipelined: the request is written
    /// before this returns; await the result for the acknowledgement.
    pub async fn submit_produce(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
        timeout_ms: i32,
    ) -> Result<PendingProduce, ClientError> {
        let conn = self.leader(topic, partition).await?;
        submit_produce_on(&conn, topic, partition, batch, acks, timeout_ms).await
    }

    /// Produces one batch and waits for the acknowledgement; returns the base offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<Option<i64>, ClientError> {
        self.submit_produce(topic, partition, batch, acks, 30_000)
            .await?
            .wait()
            .await
    }

    /// Fetches from one partition of one topic.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<PartitionFetch, ClientError> {
        let conn = self.leader(topic, partition).await?;
        let mut v = fetch_on(
            &conn,
            &[(topic.to_owned(), partition, offset)],
            max_wait_ms,
            1,
        )
        .await?;
        let p = v.pop().ok_or_else(|| {
            ClientError::Records(format!("Fetch response lacks {topic}-{partition}"))
        })?;
        if p.error_code == ResponseError::UnknownTopicOrPartition.code() {
            self.topics.borrow_mut().remove(topic);
            return Err(ClientError::UnknownTopic(topic.to_owned()));
        }
        ClientError::check(
            "Fetch",
            || format!("{topic}-{partition}"),
            p.error_code,
            None,
        )?;
        Ok(p)
    }
}

/// Writes a Produce request for one batch on `conn` (pipelined).
pub async fn submit_produce_on(
    conn: &Connection,
    topic: &str,
    partition: i32,
    batch: Bytes,
    acks: Acks,
    timeout_ms: i32,
) -> Result<PendingProduce, ClientError> {
    let version = conn.version::<ProduceRequest>()?;
    let req = ProduceRequest::default()
        .with_acks(acks.wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let inner = if acks == Acks::None {
        conn.send_without_response(&req, version).await?;
        None
    } else {
        Some(conn.submit(&req, version).await?)
    };
    Ok(PendingProduce {
        inner,
        topic: topic.to_owned(),
        partition,
    })
}

/// Submits a Fetch for several (topic, partition, offset) on `conn`; await with `wait_fetch`.
pub async fn submit_fetch_on(
    conn: &Connection,
    parts: &[(String, i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> Result<ResponseFuture<kafka_protocol::messages::FetchResponse>, ClientError> {
    let version = conn.version::<FetchRequest>()?;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (t, p, off) in parts {
        let fp = FetchPartition::default()
            .with_partition(*p)
            .with_fetch_offset(*off)
            .with_partition_max_bytes(limits::CLIENT_FETCH_PARTITION_BYTES_MAX);
        match topics.iter_mut().find(|ft| ft.topic.0.as_str() == t) {
            Some(ft) => ft.partitions.push(fp),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(t))
                    .with_partitions(vec![fp]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(limits::CLIENT_FETCH_BYTES_MAX)
        .with_isolation_level(0)
        .with_topics(topics);
    conn.submit(&req, version).await
}

/// Flattens a Fetch response into per-partition results.
pub fn flatten_fetch(
    resp: kafka_protocol::messages::FetchResponse,
) -> Result<Vec<PartitionFetch>, ClientError> {
    ClientError::check("Fetch", String::new, resp.error_code, None)?;
    let mut out = Vec::new();
    for t in resp.responses {
        let topic = t.topic.0.to_string();
        for p in t.partitions {
            out.push(PartitionFetch {
                topic: topic.clone(),
                partition: p.partition_index,
                high_watermark: p.high_watermark,
                error_code: p.error_code,
                records: p.records.unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Fetches several partitions on `conn` and waits for the answer.
pub async fn fetch_on(
    conn: &Connection,
    parts: &[(String, i32, i64)],
    max_wait_ms: i32,
    min_bytes: i32,
) -> Result<Vec<PartitionFetch>, ClientError> {
    let fut = submit_fetch_on(conn, parts, max_wait_ms, min_bytes).await?;
    flatten_fetch(fut.wait().await?)
}

/// Runs `fut` to completion on a fresh single-threaded compio runtime.
pub fn block_on<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let rt = compio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the io_uring runtime: {e}"))?;
    rt.block_on(fut)
}

