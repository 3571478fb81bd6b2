//! Node-to-node messages over the replication listener.
//!
//! A frame is `u32 length` (of what follows), `u8 kind`, payload:
//! - `KIND_RAFT`: 16-byte topic id, i32 partition (the Raft group), protobuf `eraftpb::Message`;
//! - `KIND_LEADERS`: JSON list of (topic id, partition, [`LeaderInfo`]) the sender leads.
//!
//! Each shard keeps one outgoing connection per peer, fed by a bounded queue. A full queue or a
//! broken connection drops messages: Raft retransmits, so loss costs time, never safety, and no
//! queue grows without bound. Incoming connections are accepted on every shard
//! (SO_REUSEPORT); each Raft message is handed to the shard owning its group, fire-and-forget.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::BufResult;
use protobuf::Message as _;
use raft::prelude::Message;
use uuid::Uuid;

use super::{GroupKey, LeaderInfo};
use crate::runtime::{owner_shard, Shard};
use crate::cluster::ClusterOf;
use crate::cluster::ClusterShard;

const KIND_RAFT: u8 = 1;
const KIND_LEADERS: u8 = 2;
const KIND_JOIN: u8 = 3;

/// Largest frame accepted from a peer (one Raft message carries at most
/// `MAX_SIZE_PER_MSG` of entries, and always at least one entry, itself at most one batch).
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Frames queued per peer per shard before new ones are dropped.
const PEER_QUEUE_FRAMES: usize = 4096;
/// Bytes gathered into one socket write.
const WRITE_COALESCE_BYTES: usize = 1 << 20;
const RECONNECT_MS: u64 = 200;

pub fn encode_raft(g: &GroupKey, m: &Message) -> Option<Bytes> {
    let body = m.write_to_bytes().ok()?;
    let mut b = BytesMut::with_capacity(4 + 1 + 20 + body.len());
    b.put_u32((1 + 20 + body.len()) as u32);
    b.put_u8(KIND_RAFT);
    b.put_slice(g.0.as_bytes());
    b.put_i32(g.1);
    b.put_slice(&body);
    Some(b.freeze())
}

/// A join request of a node that is not a voter: JSON (id, replication address).
pub fn encode_join(id: u64, addr: std::net::SocketAddr) -> Option<Bytes> {
    let body = serde_json::to_vec(&(id, addr.to_string())).ok()?;
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u32((1 + body.len()) as u32);
    b.put_u8(KIND_JOIN);
    b.put_slice(&body);
    Some(b.freeze())
}

pub fn encode_leaders(list: &[(GroupKey, LeaderInfo)]) -> Option<Bytes> {
    let body = serde_json::to_vec(list).ok()?;
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u32((1 + body.len()) as u32);
    b.put_u8(KIND_LEADERS);
    b.put_slice(&body);
    Some(b.freeze())
}

/// Queues a frame for node `to` from this shard; dropped if the queue is full.
pub fn send(shard: &Rc<Shard>, to: u64, frame: Bytes) {
    let Some(cluster) = shard.shared.cluster() else {
        return;
    };
    if let Some(sim) = &cluster.sim {
        // The simulation's network: the harness delivers the frame (without its length).
        if let Ok(mut out) = sim.outbox.lock() {
            out.push((cluster.node_id, to, frame.slice(4.min(frame.len())..)));
        }
        return;
    }
    let Some(addr) = cluster.peer_addr(to) else {
        return;
    };
    let tx = {
        let cl = shard.cl();
        let mut peers = cl.peers.borrow_mut();
        peers
            .entry(to)
            .or_insert_with(|| {
                let (tx, rx) = async_channel::bounded::<Bytes>(PEER_QUEUE_FRAMES);
                compio::runtime::spawn(peer_writer(addr, rx)).detach();
                tx
            })
            .clone()
    };
    if tx.try_send(frame).is_err() {
        crate::recorder::raft_message_dropped();
    }
}

async fn peer_writer(addr: std::net::SocketAddr, rx: async_channel::Receiver<Bytes>) {
    loop {
        let stream =
            match compio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                _ => {
                    // Peer down: what is queued is stale by the time it returns; Raft resends.
                    while rx.try_recv().is_ok() {}
                    if rx.is_closed() {
                        return;
                    }
                    compio::time::sleep(Duration::from_millis(RECONNECT_MS)).await;
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        let mut stream = stream;
        loop {
            let Ok(first) = rx.recv().await else { return };
            let mut buf = Vec::with_capacity(first.len().max(4096));
            buf.extend_from_slice(&first);
            while buf.len() < WRITE_COALESCE_BYTES {
                match rx.try_recv() {
                    Ok(f) => buf.extend_from_slice(&f),
                    Err(_) => break,
                }
            }
            let BufResult(r, _) = stream.write_all(buf).await;
            if r.is_err() {
                break;
            }
        }
    }
}

/// Accepts peers on this shard's replication listener until shutdown.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let s = shard.clone();
                compio::runtime::spawn(async move {
                    if let Err(e) = read_peer(&s, stream).await {
                        tracing::debug!(%peer, error = %e, "replication connection closed");
                    }
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "replication accept failed");
                compio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn read_peer(shard: &Rc<Shard>, mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    loop {
        // Parse every complete frame in the buffer.
        let mut start = 0;
        while buf.len() - start >= 4 {
            let len =
                u32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]])
                    as usize;
            if len == 0 || len > FRAME_BYTES_MAX {
                return Err(std::io::Error::other(format!("bad frame length {len}")));
            }
            if buf.len() - start < 4 + len {
                break;
            }
            let frame = Bytes::copy_from_slice(&buf[start + 4..start + 4 + len]);
            start += 4 + len;
            deliver(shard, frame);
        }
        buf.drain(..start);
        buf.reserve(64 << 10);
        let BufResult(r, b) = stream.append(buf).await;
        buf = b;
        if r? == 0 {
            return Ok(());
        }
    }
}

/// Handles one frame from a peer (without its length prefix): a Raft message goes to its
/// group's replica, leadership reports to the leadership table, a join to the metadata group.
pub fn deliver(shard: &Rc<Shard>, frame: Bytes) {
    let Some(cluster) = shard.shared.cluster().cloned() else {
        return;
    };
    let Some(&kind) = frame.first() else { return };
    match kind {
        KIND_RAFT if frame.len() >= 21 => {
            let Ok(id) = Uuid::from_slice(&frame[1..17]) else {
                return;
            };
            let p = i32::from_be_bytes([frame[17], frame[18], frame[19], frame[20]]);
            let Ok(msg) = Message::parse_from_bytes(&frame[21..]) else {
                tracing::warn!("undecodable Raft message from a peer");
                return;
            };
            if super::broker_of(msg.to) != cluster.node_id {
                return;
            }
            let g: GroupKey = (id, p);
            let owner = if g == super::METADATA_GROUP {
                0
            } else {
                owner_shard(&id, p, shard.shared.shard_count())
            };
            shard.post(owner, move |s| {
                if let Some(r) = s.replica(&g) {
                    r.deliver(msg);
                }
            });
        }
        KIND_LEADERS => {
            let Ok(list) = serde_json::from_slice::<Vec<(GroupKey, LeaderInfo)>>(&frame[1..])
            else {
                return;
            };
            for (g, info) in list {
                // Our own replicas know better for the groups we hold.
                if shard
                    .shared
                    .cluster()
                    .is_some_and(|c| c.leader(&g).is_some_and(|l| l.term > info.term))
                {
                    continue;
                }
                cluster.set_leader(g, info);
            }
        }
        KIND_JOIN => {
            let Ok((id, addr)) = serde_json::from_slice::<(u64, String)>(&frame[1..]) else { return };
            let Ok(addr) = addr.parse() else { return };
            super::metadata::on_join(shard, id, addr);
        }
        _ => {}
    }
}

/// Every `interval`, tells every peer which partitions this node leads (so that nodes not
/// holding a partition can still name its leader in Metadata).
pub async fn report_leaders(shard: Rc<Shard>, interval: Duration) {
    loop {
        compio::time::sleep(interval).await;
        let Some(cluster) = shard.shared.cluster().cloned() else {
            return;
        };
        let led = cluster.led_by_me();
        for chunk in led.chunks(1000) {
            let Some(frame) = encode_leaders(chunk) else {
                continue;
            };
            for id in cluster.peer_ids() {
                send(&shard, id, frame.clone());
            }
        }
    }
}
