//! A minimal blocking Kafka client for tests: kafka-protocol codecs over std TcpStream.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

pub struct Conn {
    pub stream: TcpStream,
    correlation: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn { stream, correlation: 0 }
    }

    pub fn send_raw(&mut self, frame_body: &[u8]) {
        let mut b = BytesMut::new();
        b.put_i32(frame_body.len() as i32);
        b.put_slice(frame_body);
        self.stream.write_all(&b).unwrap();
    }

    /// Reads one response frame; None when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    pub fn encode<R: Request>(&mut self, req: &R, version: i16) -> BytesMut {
        self.correlation += 1;
        let api = ApiKey::try_from(R::KEY).unwrap();
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice-it")));
        let mut b = BytesMut::new();
        header.encode(&mut b, api.request_header_version(version)).unwrap();
        req.encode(&mut b, version).unwrap();
        b
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let body = self.encode(req, version);
        self.send_raw(&body);
        let mut frame = self.read_frame().expect("broker closed the connection");
        let api = ApiKey::try_from(R::KEY).unwrap();
        let h = ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(h.correlation_id, self.correlation);
        R::Response::decode(&mut frame, version).unwrap()
    }

    /// Sends without reading (acks=0 produce).
    pub fn send<R: Request>(&mut self, req: &R, version: i16) {
        let body = self.encode(req, version);
        self.send_raw(&body);
    }

    /// True when the broker has closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn batch(values: &[&[u8]], compression: Compression) -> Bytes {
    batch_with(values, compression, -1, -1, -1)
}

pub fn batch_with(values: &[&[u8]], compression: Compression, producer_id: i64, epoch: i16, base_seq: i32) -> Bytes {
    let now = 1_700_000_000_000i64;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch where offset - sequence changes; -1 + i keeps one
            // batch whose header baseSequence is -1 (no idempotence).
            sequence: if base_seq >= 0 { base_seq + i as i32 } else { -1 + i as i32 },
            timestamp: now + i as i64,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

/// Every record value in a fetched records blob, in order, with offsets.
pub fn decode_values(mut records: Bytes) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    while records.remaining() > 0 {
        let sets = RecordBatchDecoder::decode_all(&mut records).unwrap();
        for set in sets {
            for r in set.records {
                out.push((r.offset, r.value.unwrap_or_default()));
            }
        }
    }
    out
}
