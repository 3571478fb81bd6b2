//! One client connection: a reader that decodes frames and starts requests, and a writer
//! that sends their responses strictly in request order.
//!
//! At most `max_in_flight_requests_per_connection` requests are started and unanswered at
//! once; past that the reader stops reading the socket (back-pressure on the client).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use compio::io::AsyncWriteExt;
use compio::net::TcpStream;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};

use crate::kafka::handlers;
use crate::kafka::{Reply, RequestContext};
use crate::protocol::{decode_request_header, FrameError, FrameReader};
use crate::runtime::Shard;

struct OpenGuard(Rc<Shard>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.shared.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    shard.shared.connections_open.fetch_add(1, Ordering::Relaxed);
    let _guard = OpenGuard(shard.clone());
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let fd = stream.as_raw_fd();
    let (mut rd, mut wr) = stream.into_split();
    let cap = shard.config().max_in_flight_requests_per_connection.max(1);
    let (mut tx, mut rx) = mpsc::channel::<compio::runtime::JoinHandle<Reply>>(cap - 1);

    let writer = compio::runtime::spawn(async move {
        while let Some(task) = rx.next().await {
            let reply = match task.await {
                Ok(r) => r,
                Err(_) => Reply::Close("request handler panicked".into()),
            };
            match reply {
                Reply::Frame(bytes) => {
                    if let compio::BufResult(Err(e), _) = wr.write_all(bytes).await {
                        tracing::debug!(%peer, error = %e, "write failed");
                        break;
                    }
                }
                Reply::Nothing => {}
                Reply::Close(reason) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    break;
                }
            }
        }
        // Wake the reader if it is blocked on the socket.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    });

    let mut frames = FrameReader::new(shard.config().socket_request_max_bytes);
    loop {
        if shard.shared.shutdown.load(Ordering::Relaxed) {
            break;
        }
        let mut body = match frames.next(&mut rd).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(FrameError::Io(e)) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                tracing::debug!(%peer, error = %e, "client went away");
                break;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection");
                break;
            }
        };
        let (api, header) = match decode_request_header(&mut body) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad request header");
                break;
            }
        };
        let ctx = RequestContext { shard: shard.clone(), header, api, local_addr: local, peer_addr: peer };
        let rest = handlers::dispatch(ctx, body).await;
        let task = compio::runtime::spawn(rest);
        if tx.send(task).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
