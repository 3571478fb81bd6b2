//! One client connection: a reader that decodes frames and starts requests, and a writer
//! that sends their responses strictly in request order.
//!
//! At most `max_in_flight_requests_per_connection` requests are started and unanswered at
//! once; past that the reader stops reading the socket (back-pressure on the client).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use compio::io::AsyncWriteExt;
use compio::driver::ToSharedFd;
use compio::net::TcpStream;
use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};

use crate::kafka::handlers;
use crate::kafka::{Part, Reply, RequestContext};
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
        let mut pipe: Option<Pipe> = None;
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
                Reply::Parts(parts) => {
                    if let Err(e) = send_parts(&mut wr, &mut pipe, parts).await {
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
    // The last state-changing request started on this connection: resolves when it finished.
    // Each such request waits for the one before it, so they take effect in arrival order
    // (Kafka processes a connection's requests one at a time); Fetch and ApiVersions do not
    // wait, and Produce does its appends in arrival order in `dispatch` itself.
    let mut last_ordered: Option<oneshot::Receiver<()>> = None;
    loop {
        if shard.shared.shutdown.load(Ordering::Relaxed) {
            break;
        }
        let (mut body, permit) = match frames.next(&mut rd, &shard.budget).await {
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
        let order = handlers::ordering(api);
        if order == handlers::RequestOrder::AppendsFirst {
            // Its appends happen inside `dispatch`: after every earlier state change.
            if let Some(prev) = last_ordered.take() {
                let _ = prev.await;
            }
        }
        let rest = handlers::dispatch(ctx, body).await;
        let (prev, done) = if order == handlers::RequestOrder::Chained {
            let (done_tx, done_rx) = oneshot::channel::<()>();
            (last_ordered.replace(done_rx), Some(done_tx))
        } else {
            (None, None)
        };
        // The frame's budget is held until the response is built.
        let task = compio::runtime::spawn(async move {
            if let Some(prev) = prev {
                let _ = prev.await; // Err(Canceled) also means the earlier request is over
            }
            let reply = rest.await;
            drop(done);
            drop(permit);
            reply
        });
        if tx.send(task).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A pipe for splicing segment bytes to the socket (splice needs a pipe on one side).
struct Pipe {
    read: Rc<OwnedFd>,
    write: Rc<OwnedFd>,
    capacity: usize,
}

/// Bytes a connection's splice pipe asks the kernel for (F_SETPIPE_SZ; the default is 64 KiB).
const SPLICE_PIPE_BYTES: libc::c_int = 1 << 20;

impl Pipe {
    fn new() -> std::io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 fills two fds on success; we own them from here.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe moves more per splice; the default stays if the kernel refuses.
        let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, SPLICE_PIPE_BYTES) };
        let capacity = if got > 0 { got as usize } else { 64 * 1024 };
        Ok(Pipe { read: Rc::new(read), write: Rc::new(write), capacity })
    }
}

async fn splice(fd_in: impl AsFd + 'static, off_in: i64, fd_out: impl AsFd + 'static, len: usize) -> std::io::Result<usize> {
    let op = compio::driver::op::Splice::new(fd_in, off_in, fd_out, -1, len, compio::driver::op::SpliceFlags::empty());
    compio::runtime::submit(op).await.0
}

/// Writes a response made of bytes and segment-file ranges; the ranges go file → pipe →
/// socket with io_uring splice, never through user space.
async fn send_parts(wr: &mut TcpStream, pipe: &mut Option<Pipe>, parts: Vec<Part>) -> std::io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(b) => {
                if b.is_empty() {
                    continue;
                }
                let compio::BufResult(r, _) = wr.write_all(b).await;
                r?;
            }
            Part::File { file, position, len } => {
                if pipe.is_none() {
                    *pipe = Some(Pipe::new()?);
                }
                let Some(p) = pipe.as_ref() else { continue };
                let socket = wr.to_shared_fd();
                let mut done = 0usize;
                let len = len as usize;
                while done < len {
                    let chunk = (len - done).min(p.capacity);
                    let n = splice(file.clone(), (position + done as u64) as i64, p.write.clone(), chunk).await?;
                    if n == 0 {
                        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment ended before the range it was read for"));
                    }
                    let mut left = n;
                    while left > 0 {
                        let m = splice(p.read.clone(), -1, socket.clone(), left).await?;
                        if m == 0 {
                            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "socket closed during splice"));
                        }
                        left -= m;
                    }
                    done += n;
                }
            }
        }
    }
    Ok(())
}
