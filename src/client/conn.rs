//! One pipelined connection to one broker.
//!
//! Requests are written in the order `submit` is called; the broker answers in
//! the same order (Kafka guarantees per-connection ordering), so the reader task
//! matches each response frame to the oldest pending request and checks its
//! correlation id. Up to `CLIENT_IN_FLIGHT_REQUESTS_MAX` requests are in flight;
//! `submit` waits for a slot beyond that.
//!
//! Architecture invariant: everything here runs on one compio runtime thread
//! (Rc/RefCell, no locks other than the async write mutex that keeps frames whole).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::runtime::JoinHandle;
use compio::BufResult;
use futures::channel::oneshot;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use super::error::ClientError;
use super::versions;
use crate::limits;

type Reply = Result<Bytes, ClientError>;

struct Pending {
    correlation_id: i32,
    api_key: i16,
    response_header_version: i16,
    reply: oneshot::Sender<Reply>,
}

struct State {
    next_correlation_id: i32,
    pending: VecDeque<Pending>,
    /// Set once the connection failed; every later request fails with it.
    closed: Option<String>,
    /// Woken when a pending slot frees (a response arrived or the connection died).
    slot_waiters: Vec<std::task::Waker>,
}

struct Shared {
    addr: SocketAddr,
    state: RefCell<State>,
    broker_versions: RefCell<HashMap<i16, (i16, i16)>>,
    client_id: StrBytes,
}

impl Shared {
    fn fail(&self, reason: String) {
        let mut state = self.state.borrow_mut();
        if state.closed.is_none() {
            state.closed = Some(reason.clone());
        }
        for p in state.pending.drain(..) {
            let _ = p.reply.send(Err(ClientError::Closed {
                addr: self.addr,
                reason: reason.clone(),
            }));
        }
        for w in state.slot_waiters.drain(..) {
            w.wake();
        }
    }
}

/// A connection to one broker, with negotiated API versions.
pub struct Connection {
    shared: Rc<Shared>,
    writer: futures::lock::Mutex<TcpStream>,
    reader: Cell<Option<JoinHandle<()>>>,
    write_failed: Cell<bool>,
}

/// A response not yet received: await [`ResponseFuture::wait`].
pub struct ResponseFuture<T> {
    rx: oneshot::Receiver<Reply>,
    addr: SocketAddr,
    version: i16,
    api: &'static str,
    _t: PhantomData<T>,
}

impl<T: Decodable> ResponseFuture<T> {
    /// Waits for the response (bounded by `CLIENT_REQUEST_TIMEOUT_MS`) and decodes it.
    pub async fn wait(self) -> Result<T, ClientError> {
        let timeout = Duration::from_millis(limits::CLIENT_REQUEST_TIMEOUT_MS);
        let reply = match compio::time::timeout(timeout, self.rx).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: format!("{} request to {}", self.api, self.addr),
                    ms: limits::CLIENT_REQUEST_TIMEOUT_MS,
                })
            }
            Ok(Err(_canceled)) => {
                return Err(ClientError::Closed {
                    addr: self.addr,
                    reason: "connection dropped".into(),
                })
            }
            Ok(Ok(reply)) => reply?,
        };
        let mut body = reply;
        T::decode(&mut body, self.version).map_err(|e| ClientError::Protocol {
            addr: self.addr,
            detail: format!(
                "cannot decode {} v{} response: {e:#}",
                self.api, self.version
            ),
        })
    }
}

fn api_name(key: i16) -> &'static str {
    versions::api_name(key)
}

impl Connection {
    /// Opens a TCP connection and negotiates API versions.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> Result<Rc<Connection>, ClientError> {
        let timeout = Duration::from_millis(limits::CLIENT_CONNECT_TIMEOUT_MS);
        let stream = match compio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    reason: format!("timed out after {} ms", limits::CLIENT_CONNECT_TIMEOUT_MS),
                })
            }
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    reason: describe_io_error(&e),
                })
            }
            Ok(Ok(s)) => s,
        };
        stream
            .set_nodelay(true)
            .map_err(|source| ClientError::Io { addr, source })?;
        let (read_half, write_half) = stream.into_split();
        let shared = Rc::new(Shared {
            addr,
            state: RefCell::new(State {
                next_correlation_id: 1,
                pending: VecDeque::new(),
                closed: None,
                slot_waiters: Vec::new(),
            }),
            broker_versions: RefCell::new(HashMap::new()),
            client_id: StrBytes::from_string(client_id.to_owned()),
        });
        let reader = compio::runtime::spawn(read_loop(read_half, shared.clone()));
        let conn = Rc::new(Connection {
            shared,
            writer: futures::lock::Mutex::new(write_half),
            reader: Cell::new(Some(reader)),
            write_failed: Cell::new(false),
        });
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// The broker address this connection talks to.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Whether the connection has failed (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.write_failed.get() || self.shared.state.borrow().closed.is_some()
    }

    /// Requests currently waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.shared.state.borrow().pending.len()
    }

    async fn negotiate_versions(&self) -> Result<(), ClientError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 is what every current broker answers; a broker that does not know it
        // answers in v0 with UNSUPPORTED_VERSION and its range, and we retry.
        let mut version = 3;
        for _attempt in 0..2 {
            let raw = self.submit_raw(&req, version, true).await?;
            let body = raw.await_bytes().await?;
            // UNSUPPORTED_VERSION is answered in the v0 layout (Kafka's rule); the error
            // code is the first field in every version.
            let unsupported = body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == 35;
            let decode_version = if unsupported { 0 } else { version };
            let resp =
                ApiVersionsResponse::decode(&mut body.clone(), decode_version).map_err(|e| {
                    ClientError::Protocol {
                        addr: self.addr(),
                        detail: format!(
                            "cannot decode ApiVersions v{decode_version} response: {e:#}"
                        ),
                    }
                })?;
            if resp.error_code == 35 {
                let broker_max = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                let next = broker_max.min(version - 1).max(0);
                if next == version {
                    break;
                }
                version = next;
                continue;
            }
            ClientError::check("ApiVersions", String::new, resp.error_code, None)?;
            let mut map = self.shared.broker_versions.borrow_mut();
            for k in &resp.api_keys {
                map.insert(k.api_key, (k.min_version, k.max_version));
            }
            return Ok(());
        }
        Err(ClientError::UnsupportedVersion {
            addr: self.addr(),
            api: "ApiVersions",
            client_min: 0,
            client_max: 3,
            broker: "none".into(),
        })
    }

    /// The highest version of `R` both sides speak, within the client's window.
    pub fn version<R: Request>(&self) -> Result<i16, ClientError> {
        let (cmin, cmax) = versions::client_window(R::KEY);
        let map = self.shared.broker_versions.borrow();
        let Some(&(bmin, bmax)) = map.get(&R::KEY) else {
            return Err(ClientError::UnsupportedVersion {
                addr: self.addr(),
                api: api_name(R::KEY),
                client_min: cmin,
                client_max: cmax,
                broker: "not offered".into(),
            });
        };
        let lo = cmin.max(bmin).max(R::VERSIONS.min);
        let hi = cmax.min(bmax).min(R::VERSIONS.max);
        if lo > hi {
            return Err(ClientError::UnsupportedVersion {
                addr: self.addr(),
                api: api_name(R::KEY),
                client_min: cmin,
                client_max: cmax,
                broker: format!("{bmin}..={bmax}"),
            });
        }
        Ok(hi)
    }

    /// Sends `req` at the negotiated version and waits for its response.
    pub async fn call<R: Request>(&self, req: &R) -> Result<R::Response, ClientError> {
        let version = self.version::<R>()?;
        self.submit(req, version).await?.wait().await
    }

    /// Writes `req` now (pipelined) and returns the future of its response.
    pub async fn submit<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<ResponseFuture<R::Response>, ClientError> {
        let raw = self.submit_raw(req, version, true).await?;
        Ok(ResponseFuture {
            rx: raw.rx_or_closed()?,
            addr: self.addr(),
            version,
            api: api_name(R::KEY),
            _t: PhantomData,
        })
    }

    /// Writes a request for which the broker sends no response (Produce with acks=0).
    pub async fn send_without_response<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        self.submit_raw(req, version, false).await.map(|_| ())
    }

    async fn wait_for_slot(&self) -> Result<(), ClientError> {
        std::future::poll_fn(|cx| {
            let mut state = self.shared.state.borrow_mut();
            if let Some(reason) = &state.closed {
                return std::task::Poll::Ready(Err(ClientError::Closed {
                    addr: self.shared.addr,
                    reason: reason.clone(),
                }));
            }
            if state.pending.len() < limits::CLIENT_IN_FLIGHT_REQUESTS_MAX {
                return std::task::Poll::Ready(Ok(()));
            }
            state.slot_waiters.push(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    async fn submit_raw<R: Request>(
        &self,
        req: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<RawPending, ClientError> {
        let api = api_name(R::KEY);
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Encode {
            api,
            detail: "unknown api key".into(),
        })?;
        let mut writer = self.writer.lock().await;
        // The slot is checked under the write lock so frames and pending entries stay in order.
        if expect_response {
            self.wait_for_slot().await?;
        } else if let Some(reason) = &self.shared.state.borrow().closed {
            return Err(ClientError::Closed {
                addr: self.addr(),
                reason: reason.clone(),
            });
        }
        let (frame, rx) = {
            let mut state = self.shared.state.borrow_mut();
            let correlation_id = state.next_correlation_id;
            state.next_correlation_id = correlation_id.wrapping_add(1).max(1);
            let header = RequestHeader::default()
                .with_request_api_key(R::KEY)
                .with_request_api_version(version)
                .with_correlation_id(correlation_id)
                .with_client_id(Some(self.shared.client_id.clone()));
            let frame = encode_frame(&header, api_key, req, version)?;
            let rx = if expect_response {
                let (tx, rx) = oneshot::channel();
                state.pending.push_back(Pending {
                    correlation_id,
                    api_key: R::KEY,
                    response_header_version: api_key.response_header_version(version),
                    reply: tx,
                });
                Some(rx)
            } else {
                None
            };
            (frame, rx)
        };
        let BufResult(res, _) = writer.write_all(frame).await;
        if let Err(source) = res {
            self.write_failed.set(true);
            self.shared.fail(format!("write failed: {source}"));
            return Err(ClientError::Io {
                addr: self.addr(),
                source,
            });
        }
        Ok(RawPending {
            rx,
            addr: self.addr(),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the reader's handle cancels it; the socket closes with the last half.
        drop(self.reader.take());
        self.shared.fail("connection dropped by the client".into());
    }
}

struct RawPending {
    rx: Option<oneshot::Receiver<Reply>>,
    addr: SocketAddr,
}

impl RawPending {
    fn rx_or_closed(self) -> Result<oneshot::Receiver<Reply>, ClientError> {
        self.rx.ok_or(ClientError::Closed {
            addr: self.addr,
            reason: "request sent without response".into(),
        })
    }

    async fn await_bytes(self) -> Result<Bytes, ClientError> {
        let addr = self.addr;
        let rx = self.rx_or_closed()?;
        let timeout = Duration::from_millis(limits::CLIENT_REQUEST_TIMEOUT_MS);
        match compio::time::timeout(timeout, rx).await {
            Err(_) => Err(ClientError::Timeout {
                what: format!("request to {addr}"),
                ms: limits::CLIENT_REQUEST_TIMEOUT_MS,
            }),
            Ok(Err(_)) => Err(ClientError::Closed {
                addr,
                reason: "connection dropped".into(),
            }),
            Ok(Ok(r)) => r,
        }
    }
}

/// Encodes `size | header | body` into one buffer.
pub(crate) fn encode_frame<R: Encodable>(
    header: &RequestHeader,
    api_key: ApiKey,
    req: &R,
    version: i16,
) -> Result<Vec<u8>, ClientError> {
    let api = api_name(api_key as i16);
    let err = |e: anyhow::Error| ClientError::Encode {
        api,
        detail: format!("{e:#}"),
    };
    let header_version = api_key.request_header_version(version);
    let mut buf = BytesMut::with_capacity(
        4 + header.compute_size(header_version).map_err(err)?
            + req.compute_size(version).map_err(err)?,
    );
    buf.put_i32(0);
    header.encode(&mut buf, header_version).map_err(err)?;
    req.encode(&mut buf, version).map_err(err)?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| ClientError::Encode {
        api,
        detail: format!("request of {} bytes is too large", buf.len()),
    })?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.to_vec())
}

fn describe_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the broker running?)".into()
        }
        std::io::ErrorKind::TimedOut => "timed out".into(),
        _ => {
            let s = e.to_string();
            // "Connection refused (os error 111)" -> keep the words only.
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

async fn read_loop(mut stream: TcpStream, shared: Rc<Shared>) {
    let reason = match read_frames(&mut stream, &shared).await {
        Ok(()) => "closed by the broker".to_string(),
        Err(ClientError::Io { source, .. }) => describe_io_error(&source),
        Err(ClientError::Closed { reason, .. }) => reason,
        Err(e) => e.to_string(),
    };
    tracing::debug!(addr = %shared.addr, %reason, "connection reader stopped");
    shared.fail(reason);
}

async fn read_frames(stream: &mut TcpStream, shared: &Shared) -> Result<(), ClientError> {
    const READ_CHUNK_BYTES: usize = 64 * 1024;
    let addr = shared.addr;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut start = 0usize;
    loop {
        let mut need = 4usize;
        while buf.len() - start >= 4 {
            let len =
                i32::from_be_bytes([buf[start], buf[start + 1], buf[start + 2], buf[start + 3]]);
            if len < 0 || len as usize > limits::CLIENT_RESPONSE_FRAME_BYTES_MAX {
                return Err(ClientError::FrameTooLarge {
                    addr,
                    len: len.into(),
                    max: limits::CLIENT_RESPONSE_FRAME_BYTES_MAX,
                });
            }
            let len = len as usize;
            if buf.len() - start - 4 < len {
                need = 4 + len;
                break;
            }
            let frame = Bytes::copy_from_slice(&buf[start + 4..start + 4 + len]);
            start += 4 + len;
            dispatch(shared, frame)?;
        }
        if start > 0 {
            buf.drain(..start);
            start = 0;
        }
        let want = need.saturating_sub(buf.len()).max(READ_CHUNK_BYTES);
        buf.reserve(want);
        let BufResult(res, b) = stream.append(buf).await;
        buf = b;
        match res {
            Ok(0) => {
                let outstanding = shared.state.borrow().pending.len();
                if outstanding == 0 {
                    return Ok(());
                }
                return Err(ClientError::Closed {
                    addr,
                    reason: format!("closed by the broker with {outstanding} requests unanswered"),
                });
            }
            Ok(_) => {}
            Err(source) => return Err(ClientError::Io { addr, source }),
        }
    }
}

fn dispatch(shared: &Shared, mut frame: Bytes) -> Result<(), ClientError> {
    let addr = shared.addr;
    let mut state = shared.state.borrow_mut();
    let Some(pending) = state.pending.pop_front() else {
        return Err(ClientError::Protocol {
            addr,
            detail: "response without a pending request".into(),
        });
    };
    let header =
        ResponseHeader::decode(&mut frame, pending.response_header_version).map_err(|e| {
            ClientError::Protocol {
                addr,
                detail: format!("bad response header: {e:#}"),
            }
        })?;
    if header.correlation_id != pending.correlation_id {
        return Err(ClientError::Protocol {
            addr,
            detail: format!(
                "response correlation id {} does not match request {} ({})",
                header.correlation_id,
                pending.correlation_id,
                api_name(pending.api_key)
            ),
        });
    }
    debug_assert!(frame.remaining() <= limits::CLIENT_RESPONSE_FRAME_BYTES_MAX);
    // The receiver may have been dropped (caller gave up); that is fine.
    let _ = pending.reply.send(Ok(frame));
    for w in state.slot_waiters.drain(..) {
        w.wake();
    }
    Ok(())
}
