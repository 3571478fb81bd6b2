//! Record batches: building them for Produce, reading them from Fetch.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use super::error::ClientError;

/// Size of the fixed part of a v2 batch in front of `batchLength`'s payload (baseOffset + batchLength).
const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Size of a v2 record batch header.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Parses a compression name as used on the command line and in Kafka configs.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" | "" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "unknown compression '{other}' (none, gzip, snappy, lz4, zstd)"
        )),
    }
}

/// Kafka's name of a compression codec.
pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// A record for a new batch: key, value and create time.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub timestamp_ms: i64,
}

/// Encodes one v2 record batch (offsets relative from 0, the broker assigns the base).
pub fn encode_batch(records: &[NewRecord], compression: Compression) -> Result<Bytes, ClientError> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; keeping
            // sequence = offset - 1 gives one batch with baseSequence = NO_SEQUENCE (-1).
            sequence: (i as i32).wrapping_add(NO_SEQUENCE),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|e| ClientError::Records(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// A record read back from a partition.
#[derive(Debug, Clone)]
pub struct FetchedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
}

/// Decodes the complete batches in a Fetch `records` field, skipping control records,
/// records before `from_offset`, and a trailing partial batch (Kafka may cut one off).
pub fn decode_records(
    mut data: Bytes,
    from_offset: i64,
) -> Result<Vec<FetchedRecord>, ClientError> {
    let mut out = Vec::new();
    while data.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let batch_len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if batch_len < 0 {
            return Err(ClientError::Records(format!(
                "negative batch length {batch_len}"
            )));
        }
        let total = BATCH_LOG_OVERHEAD_BYTES + batch_len as usize;
        if data.len() < total {
            break; // partial batch at the end of the response
        }
        let mut batch = data.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| ClientError::Records(format!("{e:#}")))?;
        for r in set.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            out.push(FetchedRecord {
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
            });
        }
        debug_assert!(!batch.has_remaining() || batch.remaining() < total);
    }
    Ok(out)
}

/// The offset after the last complete batch in `data`, if any (for consumers that skip decoding).
pub fn next_offset_after(data: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut next = None;
    while data.len() - pos >= BATCH_HEADER_BYTES {
        let base = i64::from_be_bytes(data[pos..pos + 8].try_into().ok()?);
        let batch_len = i32::from_be_bytes(data[pos + 8..pos + 12].try_into().ok()?);
        if batch_len < 0 {
            return next;
        }
        let total = BATCH_LOG_OVERHEAD_BYTES + batch_len as usize;
        if data.len() - pos < total {
            break;
        }
        // lastOffsetDelta sits at byte 23 of the batch.
        let last_delta = i32::from_be_bytes(data[pos + 23..pos + 27].try_into().ok()?);
        next = Some(base + i64::from(last_delta) + 1);
        pos += total;
    }
    next
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn recs(n: usize) -> Vec<NewRecord> {
        (0..n)
            .map(|i| NewRecord {
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value number {i}").repeat(3))),
                timestamp_ms: 1_700_000_000_000 + i as i64,
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let codec = parse_compression(c).unwrap();
            let batch = encode_batch(&recs(50), codec).unwrap();
            // Two batches back to back plus a cut-off third must yield the two.
            let mut data = BytesMut::new();
            data.extend_from_slice(&batch);
            data.extend_from_slice(&batch);
            data.extend_from_slice(&batch[..batch.len() / 2]);
            let out = decode_records(data.freeze(), 0).unwrap();
            assert_eq!(out.len(), 100, "{c}");
            assert_eq!(
                out[3].value.as_deref(),
                Some(b"value number 3value number 3value number 3".as_slice())
            );
            assert_eq!(out[2].key.as_deref(), Some(b"k2".as_slice()));
            assert_eq!(out[1].key, None);
            assert_eq!(next_offset_after(&batch), Some(50));
            let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
            assert_eq!(info.len(), 1, "{c}: one batch for all records");
            assert_eq!(info[0].base_sequence, NO_SEQUENCE);
            assert_eq!(info[0].producer_id, NO_PRODUCER_ID);
        }
    }

    #[test]
    fn records_before_the_requested_offset_are_skipped() {
        let batch = encode_batch(&recs(10), Compression::None).unwrap();
        let out = decode_records(batch, 7).unwrap();
        assert_eq!(
            out.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn unknown_codec_is_rejected() {
        assert!(parse_compression("brotli").is_err());
    }
}

/// Reads a zigzag varint (Kafka record fields) from `buf` at `*pos`.
fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

/// Calls `f(offset, value)` for every record at or after `from_offset` in the complete
/// batches of `data`, without allocating per record for uncompressed batches (the
/// load generator's consumer path). Compressed batches go through the full decoder.
/// Returns the offset after the last complete batch, if any.
pub fn visit_values(
    data: &Bytes,
    from_offset: i64,
    mut f: impl FnMut(i64, &[u8]),
) -> Result<Option<i64>, ClientError> {
    let corrupt = |what: &str| ClientError::Records(format!("malformed record batch: {what}"));
    let mut pos = 0usize;
    let mut next = None;
    while data.len() - pos >= BATCH_HEADER_BYTES {
        let b = &data[pos..];
        let base = i64::from_be_bytes(b[0..8].try_into().map_err(|_| corrupt("header"))?);
        let batch_len = i32::from_be_bytes(b[8..12].try_into().map_err(|_| corrupt("header"))?);
        if batch_len < (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32 {
            return Err(corrupt("batch length"));
        }
        let total = BATCH_LOG_OVERHEAD_BYTES + batch_len as usize;
        if b.len() < total {
            break;
        }
        if b[16] != 2 {
            return Err(corrupt("magic is not 2"));
        }
        let attributes = i16::from_be_bytes([b[21], b[22]]);
        let last_delta = i32::from_be_bytes(b[23..27].try_into().map_err(|_| corrupt("header"))?);
        let count = i32::from_be_bytes(b[57..61].try_into().map_err(|_| corrupt("header"))?);
        let control = attributes & 0x20 != 0;
        if !control {
            if attributes & 0x7 == 0 {
                let recs = &b[BATCH_HEADER_BYTES..total];
                let mut rp = 0usize;
                for _ in 0..count.max(0) {
                    let len = read_varint(recs, &mut rp).ok_or_else(|| corrupt("record length"))?;
                    let end = rp
                        .checked_add(usize::try_from(len).map_err(|_| corrupt("record length"))?)
                        .filter(|&e| e <= recs.len())
                        .ok_or_else(|| corrupt("record length"))?;
                    let r = &recs[..end];
                    let mut q = rp + 1; // attributes
                    read_varint(r, &mut q).ok_or_else(|| corrupt("timestamp"))?;
                    let off_delta = read_varint(r, &mut q).ok_or_else(|| corrupt("offset"))?;
                    let klen = read_varint(r, &mut q).ok_or_else(|| corrupt("key length"))?;
                    if klen > 0 {
                        q += klen as usize;
                    }
                    let vlen = read_varint(r, &mut q).ok_or_else(|| corrupt("value length"))?;
                    let value: &[u8] = if vlen >= 0 {
                        r.get(q..q + vlen as usize)
                            .ok_or_else(|| corrupt("value"))?
                    } else {
                        &[]
                    };
                    let offset = base + off_delta;
                    if offset >= from_offset {
                        f(offset, value);
                    }
                    rp = end;
                }
            } else {
                let mut one = data.slice(pos..pos + total);
                let set = RecordBatchDecoder::decode(&mut one)
                    .map_err(|e| ClientError::Records(format!("{e:#}")))?;
                for r in set.records {
                    if r.offset >= from_offset && !r.control {
                        f(r.offset, r.value.as_deref().unwrap_or(&[]));
                    }
                }
            }
        }
        next = Some(base + i64::from(last_delta) + 1);
        pos += total;
    }
    Ok(next)
}

#[cfg(test)]
mod visit_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn visit_matches_the_full_decoder_for_every_codec() {
        let recs: Vec<NewRecord> = (0..40)
            .map(|i| NewRecord {
                key: (i % 3 == 0).then(|| Bytes::from(vec![b'k'; i])),
                value: if i == 5 {
                    None
                } else {
                    Some(Bytes::from(vec![i as u8; 200 + i]))
                },
                timestamp_ms: 1_700_000_000_000 + i as i64 * 1000,
            })
            .collect();
        for c in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let batch = encode_batch(&recs, parse_compression(c).unwrap()).unwrap();
            let mut seen = Vec::new();
            let next = visit_values(&batch, 3, |o, v| seen.push((o, v.to_vec()))).unwrap();
            assert_eq!(next, Some(40), "{c}");
            let full = decode_records(batch.clone(), 3).unwrap();
            let want: Vec<(i64, Vec<u8>)> = full
                .into_iter()
                .map(|r| (r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()))
                .collect();
            assert_eq!(seen, want, "{c}");
        }
    }

    #[test]
    fn truncated_batch_is_left_for_the_next_fetch() {
        let batch = encode_batch(
            &[NewRecord {
                key: None,
                value: Some(Bytes::from_static(b"x")),
                timestamp_ms: 0,
            }],
            Compression::None,
        )
        .unwrap();
        let cut = batch.slice(..batch.len() - 1);
        let mut n = 0;
        assert_eq!(visit_values(&cut, 0, |_, _| n += 1).unwrap(), None);
        assert_eq!(n, 0);
    }
}
