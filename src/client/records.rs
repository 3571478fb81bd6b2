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
        other => Err(format!("unknown compression '{other}' (none, gzip, snappy, lz4, zstd)")),
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
    RecordBatchEncoder::encode(&mut buf, &recs, &RecordEncodeOptions { version: 2, compression })
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
pub fn decode_records(mut data: Bytes, from_offset: i64) -> Result<Vec<FetchedRecord>, ClientError> {
    let mut out = Vec::new();
    while data.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let batch_len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if batch_len < 0 {
            return Err(ClientError::Records(format!("negative batch length {batch_len}")));
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
            assert_eq!(out[3].value.as_deref(), Some(b"value number 3value number 3value number 3".as_slice()));
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
        assert_eq!(out.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![7, 8, 9]);
    }

    #[test]
    fn unknown_codec_is_rejected() {
        assert!(parse_compression("brotli").is_err());
    }
}
