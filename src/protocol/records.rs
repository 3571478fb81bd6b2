//! Looking inside a stored record batch without trusting its compressed payload.
//!
//! A batch's records may be compressed (gzip, snappy, lz4, zstd); a producer controls the
//! payload, and a few kilobytes can inflate to gigabytes (a compression bomb). Everything here
//! reads the records as a stream through the codec's reader, keeps only the record being looked
//! at (no buffer of the whole payload, no `Vec` of records), and stops with
//! [`ScanError::TooLarge`] once the payload would inflate past the caller's bound. So memory
//! stays O(codec window + one record header) and CPU time is bounded by the decompressed-bytes
//! bound, whatever the batch claims.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::storage::batch::{BatchHeader, HEADER_BYTES};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("records inflate past {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    #[error("malformed records: {0}")]
    Corrupt(String),
}

/// Compression codec ids of the batch attributes (bits 0-2).
const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;
/// Attribute bit 3: the batch's timestamps are the broker's append time (max_timestamp).
const LOG_APPEND_TIME: i16 = 0x08;

/// The first record of `batch` (one whole v2 batch) whose timestamp is at or after `ts` and
/// whose offset is at least `min_offset`: `(timestamp, offset)`. `None` if no record qualifies.
/// At most `decompressed_bytes_max` bytes of records are inflated; past that: `TooLarge`.
pub fn first_record_at_or_after(
    batch: &[u8],
    ts: i64,
    min_offset: i64,
    decompressed_bytes_max: u64,
) -> Result<Option<(i64, i64)>, ScanError> {
    let h = BatchHeader::parse(batch).ok_or_else(|| ScanError::Corrupt("batch header".into()))?;
    let end = usize::try_from(h.total_bytes())
        .ok()
        .filter(|&e| e >= HEADER_BYTES && e <= batch.len())
        .ok_or_else(|| ScanError::Corrupt("batch length".into()))?;
    let body = &batch[HEADER_BYTES..end];
    let exceeded = Rc::new(Cell::new(false));
    let codec = codec_reader(h.attributes & 0x7, body, decompressed_bytes_max, &exceeded)?;
    let mut reader = Bounded {
        inner: codec,
        left: decompressed_bytes_max,
        exceeded: exceeded.clone(),
    };
    match scan(&h, &mut reader, ts, min_offset) {
        Err(_) if exceeded.get() => Err(ScanError::TooLarge {
            limit_bytes: decompressed_bytes_max,
        }),
        r => r,
    }
}

/// The codec id of a topic's `compression.type`, or None for `producer` (keep the
/// producer's codec). `uncompressed` is codec 0.
pub fn codec_of_compression_type(value: &str) -> Option<i16> {
    match value {
        "uncompressed" => Some(CODEC_NONE),
        "gzip" => Some(CODEC_GZIP),
        "snappy" => Some(CODEC_SNAPPY),
        "lz4" => Some(CODEC_LZ4),
        "zstd" => Some(CODEC_ZSTD),
        _ => None,
    }
}

/// Kafka's broker-side recompression (topic `compression.type` other than `producer`): every
/// batch of `records` (one or more whole v2 batches) whose codec is not `to` is rewritten with
/// its records compressed by `to`: the header keeps every field but the codec bits, the length
/// and the CRC. Returns None when every batch already uses `to` (nothing to do). Each batch's
/// CRC is checked before its payload is trusted, and at most `decompressed_bytes_max` bytes
/// are inflated per batch (`TooLarge` past that). Control batches are left as they are.
pub fn recompress(records: &[u8], to: i16, decompressed_bytes_max: u64) -> Result<Option<bytes::Bytes>, ScanError> {
    use kafka_protocol::compression::Compressor;
    let corrupt = |m: String| ScanError::Corrupt(m);
    let mut batches = Vec::new();
    let mut pos = 0usize;
    let mut work = false;
    while pos < records.len() {
        let h = BatchHeader::parse(&records[pos..]).ok_or_else(|| corrupt(format!("batch at byte {pos}: header")))?;
        let end = usize::try_from(h.total_bytes())
            .ok()
            .and_then(|t| pos.checked_add(t))
            .filter(|&e| e >= pos + HEADER_BYTES && e <= records.len())
            .ok_or_else(|| corrupt(format!("batch at byte {pos}: length")))?;
        let is_control = h.attributes & 0x20 != 0;
        work |= !is_control && h.attributes & 0x7 != to;
        batches.push((pos, end, h, is_control));
        pos = end;
    }
    if !work {
        return Ok(None);
    }
    let mut out = bytes::BytesMut::with_capacity(records.len());
    for (start, end, h, is_control) in batches {
        let batch = &records[start..end];
        if is_control || h.attributes & 0x7 == to {
            out.extend_from_slice(batch);
            continue;
        }
        let crc = crate::storage::batch::compute_crc(batch);
        if crc != h.crc {
            return Err(corrupt(format!("batch at byte {start}: CRC32C mismatch: stored {:#010x}, computed {crc:#010x}", h.crc)));
        }
        let exceeded = Rc::new(Cell::new(false));
        let codec = codec_reader(h.attributes & 0x7, &batch[HEADER_BYTES..], decompressed_bytes_max, &exceeded)?;
        let mut reader = Bounded { inner: codec, left: decompressed_bytes_max, exceeded: exceeded.clone() };
        let mut raw = Vec::new();
        if let Err(e) = reader.read_to_end(&mut raw) {
            return Err(if exceeded.get() {
                ScanError::TooLarge { limit_bytes: decompressed_bytes_max }
            } else {
                corrupt(format!("batch at byte {start}: {e}"))
            });
        }
        let mut body = bytes::BytesMut::new();
        let put = |b: &mut bytes::BytesMut| {
            b.extend_from_slice(&raw);
            Ok(())
        };
        let done = match to {
            CODEC_NONE => kafka_protocol::compression::None::compress(&mut body, put),
            CODEC_GZIP => kafka_protocol::compression::Gzip::compress(&mut body, put),
            CODEC_SNAPPY => kafka_protocol::compression::Snappy::compress(&mut body, put),
            CODEC_LZ4 => kafka_protocol::compression::Lz4::compress(&mut body, put),
            CODEC_ZSTD => kafka_protocol::compression::Zstd::compress(&mut body, put),
            c => return Err(corrupt(format!("unknown compression codec {c}"))),
        };
        done.map_err(|e| corrupt(format!("compressing: {e}")))?;
        let at = out.len();
        out.extend_from_slice(&batch[..HEADER_BYTES]);
        out.extend_from_slice(&body);
        let length = i32::try_from(HEADER_BYTES - crate::storage::batch::LOG_OVERHEAD_BYTES + body.len())
            .map_err(|_| ScanError::TooLarge { limit_bytes: decompressed_bytes_max })?;
        let attributes = (h.attributes & !0x7) | to;
        out[at + 8..at + 12].copy_from_slice(&length.to_be_bytes());
        out[at + 21..at + 23].copy_from_slice(&attributes.to_be_bytes());
        let crc = crate::storage::batch::compute_crc(&out[at..]);
        out[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(Some(out.freeze()))
}

fn scan(
    h: &BatchHeader,
    r: &mut impl Read,
    ts: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, ScanError> {
    let corrupt = |what: &str| ScanError::Corrupt(what.to_string());
    for _ in 0..h.record_count.max(0) {
        let len = read_varlong(r).map_err(|_| corrupt("record length"))?;
        let len = u64::try_from(len).map_err(|_| corrupt("negative record length"))?;
        let mut head = Counting {
            inner: &mut *r,
            count: 0,
        };
        let mut attr = [0u8; 1];
        head.read_exact(&mut attr)
            .map_err(|_| corrupt("record attributes"))?;
        let ts_delta = read_varlong(&mut head).map_err(|_| corrupt("record timestamp"))?;
        let offset_delta = read_varlong(&mut head).map_err(|_| corrupt("record offset"))?;
        let used = head.count;
        let rest = len
            .checked_sub(used)
            .ok_or_else(|| corrupt("record shorter than its header"))?;
        let offset = h.base_offset.saturating_add(offset_delta);
        let record_ts = if h.attributes & LOG_APPEND_TIME != 0 {
            h.max_timestamp
        } else {
            h.base_timestamp.saturating_add(ts_delta)
        };
        if record_ts >= ts && offset >= min_offset {
            return Ok(Some((record_ts, offset)));
        }
        let skipped =
            io::copy(&mut r.take(rest), &mut io::sink()).map_err(|_| corrupt("record body"))?;
        if skipped != rest {
            return Err(corrupt("record body truncated"));
        }
    }
    Ok(None)
}

fn codec_reader<'a>(
    codec: i16,
    body: &'a [u8],
    limit: u64,
    exceeded: &Rc<Cell<bool>>,
) -> Result<Box<dyn Read + 'a>, ScanError> {
    let err = |e: io::Error| ScanError::Corrupt(e.to_string());
    Ok(match codec {
        CODEC_NONE => Box::new(body),
        // Java's GZIPInputStream reads concatenated members; so does MultiGzDecoder.
        CODEC_GZIP => Box::new(flate2::read::MultiGzDecoder::new(body)),
        CODEC_SNAPPY => Box::new(SnappyReader::new(body, limit, exceeded.clone())),
        CODEC_LZ4 => Box::new(lz4::Decoder::new(body).map_err(err)?),
        CODEC_ZSTD => Box::new(zstd::stream::read::Decoder::with_buffer(body).map_err(err)?),
        c => return Err(ScanError::Corrupt(format!("unknown compression codec {c}"))),
    })
}

/// Reads at most `left` bytes from `inner`; an attempt to read past it sets `exceeded` and
/// fails, so a failed scan can tell "the payload was too large" from "the payload is malformed".
struct Bounded<R> {
    inner: R,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(io::Error::other("decompressed size bound exceeded"))
                }
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Zigzag varlong (records use varint for some fields; a varlong reader accepts both).
fn read_varlong(r: &mut impl Read) -> io::Result<i64> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        z |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
}

/// Kafka's snappy payload: xerial's framing (a 16-byte magic header, then blocks of a
/// big-endian u32 length and a raw snappy block), or one raw snappy block without the header,
/// as Java's SnappyInputStream accepts. One block is decompressed at a time, into a buffer
/// sized by the block's declared length; the declared lengths, summed, may not pass `left`
/// (checked before the buffer is allocated; past it: `exceeded`, as [`Bounded`]).
struct SnappyReader<'a> {
    rest: &'a [u8],
    raw: bool,
    block: Vec<u8>,
    at: usize,
    left: u64,
    exceeded: Rc<Cell<bool>>,
}

const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

impl<'a> SnappyReader<'a> {
    fn new(body: &'a [u8], limit: u64, exceeded: Rc<Cell<bool>>) -> Self {
        let (rest, raw) = match body.strip_prefix(&SNAPPY_MAGIC[..]) {
            Some(rest) => (rest, false),
            None => (body, true),
        };
        SnappyReader {
            rest,
            raw,
            block: Vec::new(),
            at: 0,
            left: limit,
            exceeded,
        }
    }

    fn next_block(&mut self) -> io::Result<bool> {
        let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        if self.rest.is_empty() {
            return Ok(false);
        }
        let compressed = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            let (len, rest) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("snappy block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let block = rest
                .get(..len)
                .ok_or_else(|| invalid("snappy block truncated"))?;
            self.rest = &rest[len..];
            block
        };
        let n = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if n as u64 > self.left {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed size bound exceeded"));
        }
        self.left -= n as u64;
        self.block.clear();
        self.block.resize(n, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn record(offset: i64, timestamp: i64, value: Vec<u8>) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // kafka-protocol's encoder keeps records in one batch while offset - sequence is constant.
            sequence: offset as i32,
            timestamp,
            key: None,
            value: Some(value.into()),
            headers: Default::default(),
            delete_horizon: false,
        }
    }

    fn batch(records: &[Record], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, records, &opts).unwrap();
        buf.to_vec()
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn finds_the_first_record_at_or_after_the_timestamp_in_every_codec() {
        let recs: Vec<Record> = (0..20)
            .map(|i| record(100 + i, 1000 + 10 * i, vec![i as u8; 50]))
            .collect();
        for c in CODECS {
            let b = batch(&recs, c);
            assert_eq!(
                first_record_at_or_after(&b, 1055, 0, 1 << 20),
                Ok(Some((1060, 106))),
                "{c:?}"
            );
            assert_eq!(
                first_record_at_or_after(&b, 0, 103, 1 << 20),
                Ok(Some((1030, 103))),
                "{c:?}"
            );
            assert_eq!(
                first_record_at_or_after(&b, 5000, 0, 1 << 20),
                Ok(None),
                "{c:?}"
            );
        }
    }

    /// A compression bomb: one record of `inflated` zero bytes compresses to a few KiB in every
    /// codec; a lookup that must look past it stops at the bound with `TooLarge` instead of
    /// inflating it (memory stays small: nothing holds the payload).
    #[test]
    fn a_payload_inflating_past_the_bound_is_refused_in_every_codec() {
        let inflated = 8 << 20; // 8 MiB of zeros, bound 1 MiB
        let bound = 1 << 20;
        let recs = vec![
            record(0, 1000, vec![0u8; inflated]),
            record(1, 2000, b"after".to_vec()),
        ];
        for c in CODECS {
            let b = batch(&recs, c);
            if c != Compression::None {
                assert!(
                    b.len() < inflated / 10,
                    "{c:?} compressed to {} bytes",
                    b.len()
                );
            }
            // The first record qualifies: found without inflating the rest.
            assert_eq!(
                first_record_at_or_after(&b, 0, 0, bound),
                Ok(Some((1000, 0))),
                "{c:?}"
            );
            // The second needs skipping 8 MiB: refused at the bound.
            assert_eq!(
                first_record_at_or_after(&b, 1500, 0, bound),
                Err(ScanError::TooLarge { limit_bytes: bound }),
                "{c:?}"
            );
            // With room enough it is found.
            assert_eq!(
                first_record_at_or_after(&b, 1500, 0, 2 * inflated as u64),
                Ok(Some((2000, 1))),
                "{c:?}"
            );
        }
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        let recs: Vec<Record> = (0..5).map(|i| record(i, 1000 + i, vec![7; 100])).collect();
        for c in CODECS {
            let good = batch(&recs, c);
            for cut in [
                HEADER_BYTES,
                HEADER_BYTES + 3,
                good.len() / 2,
                good.len() - 1,
            ] {
                let mut b = good[..cut].to_vec();
                // Keep the header's length consistent with the truncated bytes.
                let len = (b.len() - 12) as i32;
                b[8..12].copy_from_slice(&len.to_be_bytes());
                // No record qualifies, so the scan reads every record: a cut is found unless it
                // only removed a codec trailer after the last record (gzip's CRC and size).
                let r = first_record_at_or_after(&b, 5000, 0, 1 << 20);
                assert!(
                    matches!(r, Err(ScanError::Corrupt(_)) | Ok(None)),
                    "{c:?} cut {cut}: {r:?}"
                );
                if cut < good.len() / 2 + 1 {
                    assert!(r.is_err(), "{c:?} cut {cut}: {r:?}");
                }
            }
            let mut b = good.clone();
            for x in &mut b[HEADER_BYTES..] {
                *x ^= 0x5a;
            }
            let _ = first_record_at_or_after(&b, 1004, 0, 1 << 20);
        }
    }

    /// `batch` with its records replaced by `payload` under `codec` (CRC not updated: the scan
    /// does not check it; storage does, at append and recovery).
    fn with_payload(batch: &[u8], codec: i16, payload: &[u8]) -> Vec<u8> {
        let mut b = batch[..HEADER_BYTES].to_vec();
        b[22] = (b[22] & !0x7) | codec as u8;
        b.extend_from_slice(payload);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn raw_snappy_blocks_are_bounded_before_allocation() {
        let recs = vec![
            record(0, 1000, vec![0u8; 8 << 20]),
            record(1, 2000, b"after".to_vec()),
        ];
        let plain = batch(&recs, Compression::None);
        // Raw snappy (no xerial header) of the whole 8 MiB payload: one block.
        let raw = snap::raw::Encoder::new()
            .compress_vec(&plain[HEADER_BYTES..])
            .unwrap();
        let b = with_payload(&plain, CODEC_SNAPPY, &raw);
        assert_eq!(
            first_record_at_or_after(&b, 1500, 0, 16 << 20),
            Ok(Some((2000, 1)))
        );
        // Its declared 8 MiB is over a 1 MiB bound: refused before the block buffer exists.
        assert_eq!(
            first_record_at_or_after(&b, 0, 0, 1 << 20),
            Err(ScanError::TooLarge {
                limit_bytes: 1 << 20
            })
        );
        // A raw block claiming 4 GiB in five bytes.
        let b = with_payload(&plain, CODEC_SNAPPY, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(first_record_at_or_after(&b, 0, 0, 1 << 20).is_err());
    }
}
