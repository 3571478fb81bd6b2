//! Kafka RecordBatch v2: the 61-byte header, validation of incoming batches, and a small
//! builder for uncompressed batches (used by tests, benches and the load generator).
//!
//! ```text
//! offset  size  field                 covered by CRC
//!      0     8  baseOffset   i64      no  (set by the broker)
//!      8     4  batchLength  i32      no  (bytes after this field)
//!     12     4  partitionLeaderEpoch  no  (set by the broker)
//!     16     1  magic = 2             no
//!     17     4  crc (CRC32C) u32      no
//!     21     2  attributes   i16      yes
//!     23     4  lastOffsetDelta i32   yes
//!     27     8  baseTimestamp i64     yes
//!     35     8  maxTimestamp  i64     yes
//!     43     8  producerId    i64     yes
//!     51     2  producerEpoch i16     yes
//!     53     4  baseSequence  i32     yes
//!     57     4  recordCount   i32     yes
//!     61     …  records               yes
//! ```
//! This module does no I/O.

use bytes::Bytes;

/// Size of the fixed v2 header.
pub const HEADER_BYTES: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
pub const LOG_OVERHEAD_BYTES: usize = 12;

pub(crate) const OFF_BASE_OFFSET: usize = 0;
pub(crate) const OFF_LENGTH: usize = 8;
pub(crate) const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

/// The parsed fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the first 61 bytes of `b`. Returns None if `b` is shorter. No validation.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_BYTES {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, OFF_BASE_OFFSET),
            batch_length: be_i32(b, OFF_LENGTH),
            partition_leader_epoch: be_i32(b, OFF_LEADER_EPOCH),
            magic: b[OFF_MAGIC] as i8,
            crc: be_i32(b, OFF_CRC) as u32,
            attributes: be_i16(b, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(b, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(b, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(b, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(b, OFF_PRODUCER_ID),
            producer_epoch: be_i16(b, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(b, OFF_BASE_SEQUENCE),
            record_count: be_i32(b, OFF_RECORD_COUNT),
        })
    }

    /// Whole size of the batch on disk / on the wire (header + records).
    pub fn total_bytes(&self) -> u64 {
        LOG_OVERHEAD_BYTES as u64 + self.batch_length.max(0) as u64
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Last sequence number of the batch (sequences wrap at i32::MAX to 0, as in Kafka).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let s = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (s % (i64::from(i32::MAX) + 1)) as i32
    }

    /// True if the producer asked for idempotence (producerId and baseSequence set).
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0 && self.base_sequence >= 0
    }

    /// Checks the header fields that do not need the records: length bounds, magic,
    /// record count vs lastOffsetDelta. `avail` is the number of bytes from the batch start.
    pub fn check_shape(&self, avail: u64, max_bytes: u32) -> Result<(), String> {
        if self.batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(format!(
                "batchLength {} below header size",
                self.batch_length
            ));
        }
        if self.magic != 2 {
            return Err(format!("magic {} (only v2 is stored)", self.magic));
        }
        let total = self.total_bytes();
        if total > u64::from(crate::limits::BATCH_BYTES_MAX) || total > u64::from(max_bytes) {
            return Err(format!(
                "batch of {total} bytes over the {max_bytes}-byte bound"
            ));
        }
        if total > avail {
            return Err(format!("batch of {total} bytes but only {avail} present"));
        }
        if self.record_count < 1 {
            return Err(format!("recordCount {}", self.record_count));
        }
        if self.last_offset_delta < 0
            || i64::from(self.record_count) != i64::from(self.last_offset_delta) + 1
        {
            return Err(format!(
                "recordCount {} inconsistent with lastOffsetDelta {}",
                self.record_count, self.last_offset_delta
            ));
        }
        Ok(())
    }
}

/// CRC32C over attributes..end of one whole batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Full validation of one whole batch (`batch.len()` == its total size).
pub fn validate(batch: &[u8], max_bytes: u32) -> Result<BatchHeader, String> {
    let h = BatchHeader::parse(batch)
        .ok_or_else(|| format!("{} bytes: shorter than a header", batch.len()))?;
    h.check_shape(batch.len() as u64, max_bytes)?;
    let total = h.total_bytes() as usize;
    let crc = compute_crc(&batch[..total]);
    if crc != h.crc {
        return Err(format!(
            "CRC32C mismatch: stored {:#010x}, computed {crc:#010x}",
            h.crc
        ));
    }
    Ok(h)
}

/// Validates a produce payload: one or more whole batches, back to back, nothing left over.
/// Returns (position, header) of each. Errors are `(is_too_large, message)`.
pub(crate) fn validate_all(
    records: &[u8],
    max_bytes: u32,
) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    if records.is_empty() {
        return Err(BatchError::Corrupt("no record batch".into()));
    }
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let h = BatchHeader::parse(rest).ok_or_else(|| {
            BatchError::Corrupt(format!(
                "{} trailing bytes at {pos}: not a batch",
                rest.len()
            ))
        })?;
        let total = h.total_bytes();
        if h.batch_length >= (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32
            && (total > u64::from(max_bytes) || total > u64::from(crate::limits::BATCH_BYTES_MAX))
        {
            return Err(BatchError::TooLarge {
                size: total as usize,
                max: max_bytes as usize,
            });
        }
        validate(&rest[..rest.len().min(total as usize)], max_bytes)
            .map_err(|e| BatchError::Corrupt(format!("batch at byte {pos}: {e}")))?;
        out.push((pos, h));
        pos += total as usize;
    }
    Ok(out)
}

#[derive(Debug)]
pub(crate) enum BatchError {
    Corrupt(String),
    TooLarge { size: usize, max: usize },
}

/// Rewrites baseOffset and partitionLeaderEpoch in place (both outside the CRC).
pub(crate) fn set_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Builder / decoder for uncompressed batches.

/// One record of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Builds an uncompressed RecordBatch v2 (baseOffset 0, leader epoch -1, CRC filled in).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
    records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(base_timestamp: i64) -> Self {
        BatchBuilder {
            base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            records: Vec::new(),
        }
    }
    /// Marks the batch a control batch (attribute bit 5): consumers skip it.
    pub fn control(mut self) -> Self {
        self.attributes |= ATTR_CONTROL;
        self
    }
    /// Marks the batch idempotent.
    pub fn producer(mut self, producer_id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }
    pub fn record(self, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        let ts = self.base_timestamp;
        self.record_at(ts, key, value)
    }
    pub fn record_at(mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        let offset_delta = self.records.len() as i32;
        self.records.push(Record {
            offset_delta,
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
        });
        self
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn build(&self) -> Bytes {
        let mut body = Vec::new();
        let mut max_ts = self.base_timestamp;
        for rec in &self.records {
            let (ts, key, value) = (&rec.timestamp, &rec.key, &rec.value);
            max_ts = max_ts.max(*ts);
            let mut r = Vec::new();
            r.push(0u8); // attributes
            put_varlong(&mut r, ts - self.base_timestamp);
            put_varlong(&mut r, i64::from(rec.offset_delta));
            put_bytes(&mut r, key.as_deref());
            put_bytes(&mut r, value.as_deref());
            put_varlong(&mut r, 0); // headers
            put_varlong(&mut body, r.len() as i64);
            body.extend_from_slice(&r);
        }
        let count = self.records.len() as i32;
        let mut b = Vec::with_capacity(HEADER_BYTES + body.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(
            &((HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32).to_be_bytes(),
        );
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.attributes.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = compute_crc(&b);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }
}

/// Attribute bit of a control batch (transaction markers, leader changes).
pub const ATTR_CONTROL: i16 = 0x20;

/// Control record type of KRaft's LEADER_CHANGE record; Sluice writes it for Raft entries
/// that carry no producer data (a new leader's no-op, a refused batch). Clients skip control
/// batches (and ignore control types they do not know).
pub const CONTROL_TYPE_LEADER_CHANGE: i16 = 2;

/// A one-record control batch of `control_type` (key: version 0 + type, value: version 0).
pub fn control_batch(timestamp: i64, control_type: i16) -> Bytes {
    control_batch_with_value(timestamp, control_type, &0i16.to_be_bytes())
}

/// A one-record control batch of `control_type` (key: version 0 + type) holding `value`.
pub fn control_batch_with_value(timestamp: i64, control_type: i16, value: &[u8]) -> Bytes {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    BatchBuilder::new(timestamp)
        .control()
        .record(Some(&key), Some(value))
        .build()
}

/// The control type and value of the first record of `batch`, if it is a control batch.
pub fn control_record(batch: &[u8]) -> Option<(i16, Option<Vec<u8>>)> {
    let h = BatchHeader::parse(batch)?;
    if h.attributes & ATTR_CONTROL == 0 {
        return None;
    }
    let (_, recs) = decode_records(batch)?;
    let r = recs.into_iter().next()?;
    let k = r.key.as_deref().filter(|k| k.len() >= 4)?;
    Some((i16::from_be_bytes([k[2], k[3]]), r.value))
}

/// A batch of `count` records with `value_bytes`-byte values, all at `timestamp`.
pub fn simple_batch(count: usize, value_bytes: usize, timestamp: i64) -> Bytes {
    let value = vec![b'x'; value_bytes];
    let mut b = BatchBuilder::new(timestamp);
    for _ in 0..count {
        b = b.record(None, Some(&value));
    }
    b.build()
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn get_varlong(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

fn get_bytes(b: &[u8], pos: &mut usize) -> Option<Option<Vec<u8>>> {
    let len = get_varlong(b, pos)?;
    if len < 0 {
        return Some(None);
    }
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    let v = b.get(*pos..end)?.to_vec();
    *pos = end;
    Some(Some(v))
}

/// Decodes the records of one uncompressed batch (headers skipped). None if malformed or compressed.
pub fn decode_records(batch: &[u8]) -> Option<(BatchHeader, Vec<Record>)> {
    let h = BatchHeader::parse(batch)?;
    if h.attributes & 0x7 != 0 {
        return None;
    }
    let end = usize::try_from(h.total_bytes()).ok()?;
    let body = batch.get(HEADER_BYTES..end)?;
    let mut pos = 0;
    let mut out = Vec::new();
    for _ in 0..h.record_count {
        let len = usize::try_from(get_varlong(body, &mut pos)?).ok()?;
        let rec_end = pos.checked_add(len)?;
        let r = body.get(pos..rec_end)?;
        let mut p = 1; // attributes
        let ts_delta = get_varlong(r, &mut p)?;
        let offset_delta = get_varlong(r, &mut p)? as i32;
        let key = get_bytes(r, &mut p)?;
        let value = get_bytes(r, &mut p)?;
        out.push(Record {
            offset_delta,
            timestamp: h.base_timestamp + ts_delta,
            key,
            value,
        });
        pos = rec_end;
    }
    Some((h, out))
}

/// Splits a byte range of whole batches (e.g. a read) into its batches.
pub fn split_batches(mut b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some(h) = BatchHeader::parse(b) {
        let total = h.total_bytes() as usize;
        if total > b.len() || total < HEADER_BYTES {
            break;
        }
        out.push(&b[..total]);
        b = &b[total..];
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn build_validate_decode() {
        let b = BatchBuilder::new(1000)
            .producer(7, 1, 3)
            .record(Some(b"k"), Some(b"v1"))
            .record_at(1005, None, Some(b"v2"))
            .build();
        let h = validate(&b, 1 << 20).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(h.last_sequence(), 4);
        let (_, recs) = decode_records(&b).unwrap();
        assert_eq!(recs[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(recs[1].timestamp, 1005);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn crc_detects_flip_and_offset_rewrite_keeps_crc() {
        let mut b = simple_batch(3, 10, 5).to_vec();
        set_offset_and_epoch(&mut b, 12345, 9);
        assert!(validate(&b, 1 << 20).is_ok());
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(validate(&b, 1 << 20).unwrap_err().contains("CRC"));
    }

    #[test]
    fn sequence_wraps() {
        let b = BatchBuilder::new(0)
            .producer(1, 0, i32::MAX)
            .record(None, None)
            .record(None, None)
            .build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.last_sequence(), 0);
    }
}
