//! Framing and request headers of the Kafka wire protocol.
//!
//! A frame is a big-endian i32 length followed by that many bytes. The length is checked
//! against `socket.request.max.bytes` before any buffer for the body is reserved.
//! Architecture invariant: nothing here panics on client bytes; a frame that cannot be
//! decoded yields an error, and the connection is closed by the caller.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `protocol` uses `limits`, `budget`, `storage` (batch headers).

pub mod records;

use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::buf::{BufResult, IntoInner, IoBuf};
use compio::io::AsyncRead;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::budget::{Budget, Permit};

/// Bytes reserved per socket read when the buffer has no room left.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative or larger than socket.request.max.bytes ({1})")]
    BadLength(i64, u32),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads length-prefixed frames from a stream, several per socket read when the client
/// pipelines small requests.
pub struct FrameReader {
    buf: BytesMut,
    max_frame_bytes: u32,
}

impl FrameReader {
    pub fn new(max_frame_bytes: u32) -> Self {
        FrameReader { buf: BytesMut::with_capacity(READ_CHUNK_BYTES), max_frame_bytes }
    }

    /// The next frame's body (without its length), or None at a clean end of stream.
    /// The frame's bytes are taken from `budget` before its buffer is reserved; the permit
    /// comes back with the body and returns the bytes when dropped.
    pub async fn next<S: AsyncRead>(&mut self, stream: &mut S, budget: &Rc<Budget>) -> Result<Option<(Bytes, Permit)>, FrameError> {
        let mut permit: Option<Permit> = None;
        loop {
            let mut want = 4usize;
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 0 || len as u32 > self.max_frame_bytes {
                    return Err(FrameError::BadLength(len as i64, self.max_frame_bytes));
                }
                want = 4 + len as usize;
                let p = match permit.take() {
                    Some(p) => p,
                    None => budget.acquire(want).await,
                };
                if self.buf.len() >= want {
                    self.buf.advance(4);
                    return Ok(Some((self.buf.split_to(len as usize).freeze(), p)));
                }
                permit = Some(p);
            }
            // Room for the rest of this frame (bounded by the check above), at least a chunk.
            let need = (want - self.buf.len()).max(READ_CHUNK_BYTES.min(want.max(4096)));
            if self.buf.capacity() - self.buf.len() < need {
                self.buf.reserve(need);
            }
            let filled = self.buf.len();
            let buf = std::mem::take(&mut self.buf);
            let BufResult(res, slice) = stream.read(buf.slice(filled..)).await;
            self.buf = slice.into_inner();
            match res {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(_) => {}
                Err(e) => return Err(FrameError::Io(e)),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("request shorter than a header")]
    Short,
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// Decodes a request header. On success `body` is left at the start of the request body.
pub fn decode_request_header(body: &mut Bytes) -> Result<(ApiKey, RequestHeader), HeaderError> {
    if body.len() < 8 {
        return Err(HeaderError::Short);
    }
    let key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let api = ApiKey::try_from(key).map_err(|_| HeaderError::UnknownApiKey(key))?;
    // A version outside the crate's schema range still has a well-defined header: clamp to
    // the nearest known version for the header layout only (ApiVersions answers the rest).
    let range = api.valid_versions();
    let header_version = api.request_header_version(version.clamp(range.min, range.max));
    let header = guard(|| RequestHeader::decode(body, header_version))
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok((api, header))
}

/// Runs a decoder over client bytes; a panic inside the codec becomes an error, so a
/// malformed frame can never take down a shard.
pub fn guard<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!("decoder panicked on malformed input")),
    }
}

/// Encodes a full response frame (length, header, body) for `api` at `version`.
pub fn encode_response<M: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> anyhow::Result<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, version)?;
    debug_assert_eq!(out.len(), 4 + size);
    Ok(out.freeze())
}

/// Decodes a request body with the crate's codec, guarded against panics.
pub fn decode_body<M: Decodable>(body: &mut Bytes, version: i16) -> anyhow::Result<M> {
    guard(|| M::decode(body, version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use compio::buf::IoBufMut;

    struct Chunks(Vec<Vec<u8>>);
    impl AsyncRead for Chunks {
        async fn read<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
            if self.0.is_empty() {
                return BufResult(Ok(0), buf);
            }
            let chunk = self.0.remove(0);
            let dst = buf.as_uninit();
            let n = chunk.len().min(dst.len());
            for (d, s) in dst.iter_mut().zip(&chunk[..n]) {
                d.write(*s);
            }
            if n < chunk.len() {
                self.0.insert(0, chunk[n..].to_vec());
            }
            unsafe { compio::buf::SetLen::set_len(&mut buf, n) };
            BufResult(Ok(n), buf)
        }
    }

    fn budget() -> Rc<Budget> {
        Budget::new(1 << 30)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[compio::test]
    async fn frames_split_and_merged_across_reads() {
        let mut all = frame(b"hello");
        all.extend(frame(b""));
        all.extend(frame(&[7u8; 100_000]));
        let chunks: Vec<Vec<u8>> = all.chunks(3).map(|c| c.to_vec()).collect();
        let mut s = Chunks(chunks);
        let mut r = FrameReader::new(1 << 20);
        assert_eq!(&r.next(&mut s, &budget()).await.unwrap().unwrap().0[..], b"hello");
        assert_eq!(r.next(&mut s, &budget()).await.unwrap().unwrap().0.len(), 0);
        assert_eq!(r.next(&mut s, &budget()).await.unwrap().unwrap().0.len(), 100_000);
        assert!(r.next(&mut s, &budget()).await.unwrap().is_none());
    }

    #[compio::test]
    async fn hostile_lengths_rejected_before_allocation() {
        for len in [-1i32, i32::MIN, 0x7fff_ffff, (1 << 20) + 1] {
            let mut s = Chunks(vec![len.to_be_bytes().to_vec()]);
            let mut r = FrameReader::new(1 << 20);
            assert!(matches!(r.next(&mut s, &budget()).await, Err(FrameError::BadLength(..))), "{len}");
        }
        let mut s = Chunks(vec![frame(b"abcdef")[..7].to_vec()]);
        let mut r = FrameReader::new(1 << 20);
        assert!(matches!(r.next(&mut s, &budget()).await, Err(FrameError::Truncated)));
    }

    #[test]
    fn header_decoding_rejects_garbage() {
        assert!(matches!(decode_request_header(&mut Bytes::from_static(b"\x00")), Err(HeaderError::Short)));
        let mut b = Bytes::from_static(b"\x7f\x00\x00\x00\x00\x00\x00\x01\x00\x00");
        assert!(matches!(decode_request_header(&mut b), Err(HeaderError::UnknownApiKey(_))));
        // ApiVersions v3 header (flexible) with a client id whose length lies.
        let mut b = Bytes::from_static(b"\x00\x12\x00\x03\x00\x00\x00\x01\x7f\xff");
        assert!(decode_request_header(&mut b).is_err());
    }
}

#[cfg(test)]
mod hostile {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};

    /// An array count far beyond the bytes that follow must be an error, not an attempt to
    /// reserve memory for it (which would abort the process).
    #[test]
    fn lying_array_counts_are_errors() {
        // Metadata v1: topics array (i32 count) claiming 2^31-1 entries, no bytes after.
        let mut b = Bytes::from_static(b"\x7f\xff\xff\xff");
        assert!(decode_body::<MetadataRequest>(&mut b, 1).is_err());
        // Metadata v9 (flexible): compact array count as an unsigned varint of ~2^32.
        let mut b = Bytes::from_static(b"\xff\xff\xff\xff\x0f");
        assert!(decode_body::<MetadataRequest>(&mut b, 9).is_err());
        // Produce v3: transactional_id null, acks, timeout, topic array claiming 2^31-1.
        let mut b = Bytes::from_static(b"\xff\xff\x00\x01\x00\x00\x03\xe8\x7f\xff\xff\xff");
        assert!(decode_body::<ProduceRequest>(&mut b, 3).is_err());
    }
}
