//! Idempotent-producer state of one partition: producerId -> epoch + the last
//! [`PRODUCER_BATCHES_RETAINED_COUNT`] batches. Checked on append, rebuilt from the batches
//! scanned at recovery, snapshotted at clean shutdown. This module does no I/O.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
use crate::limits::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_RETAINED_COUNT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<ProducerBatch>,
}

impl ProducerEntry {
    fn push(&mut self, b: ProducerBatch) {
        if self.batches.len() == PRODUCER_BATCHES_RETAINED_COUNT {
            self.batches.pop_front();
        }
        self.batches.push_back(b);
    }
    fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }
}

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqError {
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    Fenced {
        producer_id: i64,
        current_epoch: i16,
        got: i16,
    },
}

/// Outcome of checking one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// New and in sequence (or not idempotent).
    Accept,
    /// Exact duplicate of a retained batch: answer with its offsets, write nothing.
    Duplicate(ProducerBatch),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTable {
    pub map: HashMap<i64, ProducerEntry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX {
        0
    } else {
        s + 1
    }
}

impl ProducerTable {
    /// Checks `h` against the state (staged entries in `staged` take precedence, for requests
    /// carrying several batches). Does not modify the table.
    pub fn check(
        &self,
        staged: &HashMap<i64, ProducerEntry>,
        h: &BatchHeader,
    ) -> Result<Check, SeqError> {
        if !h.is_idempotent() {
            return Ok(Check::Accept);
        }
        let pid = h.producer_id;
        let Some(e) = staged.get(&pid).or_else(|| self.map.get(&pid)) else {
            // Unknown producer (new, or its state aged out with retention): accept any sequence.
            return Ok(Check::Accept);
        };
        if h.producer_epoch < e.epoch {
            return Err(SeqError::Fenced {
                producer_id: pid,
                current_epoch: e.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            if h.base_sequence != 0 {
                return Err(SeqError::OutOfOrder {
                    producer_id: pid,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(Check::Accept);
        }
        let last_seq = h.last_sequence();
        if let Some(d) = e
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*d));
        }
        match e.batches.back() {
            Some(b) if h.base_sequence != next_seq(b.last_seq) => Err(SeqError::OutOfOrder {
                producer_id: pid,
                expected: next_seq(b.last_seq),
                got: h.base_sequence,
            }),
            _ => Ok(Check::Accept),
        }
    }

    /// Records an accepted batch (already assigned `base_offset`) into `staged`.
    pub fn stage(
        &self,
        staged: &mut HashMap<i64, ProducerEntry>,
        h: &BatchHeader,
        base_offset: i64,
    ) {
        if !h.is_idempotent() {
            return;
        }
        let e = staged.entry(h.producer_id).or_insert_with(|| {
            self.map
                .get(&h.producer_id)
                .cloned()
                .unwrap_or(ProducerEntry {
                    epoch: h.producer_epoch,
                    batches: VecDeque::new(),
                })
        });
        apply(e, h, base_offset);
    }

    /// Makes staged entries current.
    pub fn commit(&mut self, staged: HashMap<i64, ProducerEntry>) {
        for (pid, e) in staged {
            self.map.insert(pid, e);
        }
        self.evict_over_bound();
    }

    /// Recovery: replays a batch read from the log, without checks.
    pub fn replay(&mut self, h: &BatchHeader) {
        if !h.is_idempotent() {
            return;
        }
        let e = self
            .map
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        apply(e, h, h.base_offset);
        self.evict_over_bound();
    }

    /// Drops producers whose last batch is below `offset` (their batches were deleted).
    pub fn forget_before(&mut self, offset: i64) {
        self.map.retain(|_, e| e.last_offset() >= offset);
    }

    fn evict_over_bound(&mut self) {
        while self.map.len() > PRODUCERS_PER_PARTITION_MAX {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_offset())
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }

    // ---- snapshot file ----
    // magic "SLPS" | version u16 = 1 | count u32 | count x entry | crc32c u32 (of all before)
    // entry: producerId i64 | epoch i16 | n u8 | n x (firstSeq i32, lastSeq i32, baseOffset i64,
    //        lastOffset i64, maxTimestamp i64)

    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(SNAPSHOT_MAGIC);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(self.map.len() as u32).to_be_bytes());
        let mut pids: Vec<_> = self.map.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            let Some(e) = self.map.get(&pid) else {
                continue;
            };
            b.extend_from_slice(&pid.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.push(e.batches.len() as u8);
            for x in &e.batches {
                b.extend_from_slice(&x.first_seq.to_be_bytes());
                b.extend_from_slice(&x.last_seq.to_be_bytes());
                b.extend_from_slice(&x.base_offset.to_be_bytes());
                b.extend_from_slice(&x.last_offset.to_be_bytes());
                b.extend_from_slice(&x.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    pub fn decode_snapshot(b: &[u8]) -> Option<ProducerTable> {
        if b.len() < 14 || &b[..4] != SNAPSHOT_MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return None;
        }
        let mut r = Reader { b: body, pos: 4 };
        if r.u16()? != 1 {
            return None;
        }
        let count = r.u32()? as usize;
        if count > PRODUCERS_PER_PARTITION_MAX {
            return None;
        }
        let mut t = ProducerTable::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.u16()? as i16;
            let n = r.u8()? as usize;
            if n > PRODUCER_BATCHES_RETAINED_COUNT {
                return None;
            }
            let mut e = ProducerEntry {
                epoch,
                batches: VecDeque::new(),
            };
            for _ in 0..n {
                e.batches.push_back(ProducerBatch {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                    max_timestamp: r.i64()?,
                });
            }
            t.map.insert(pid, e);
        }
        (r.pos == body.len()).then_some(t)
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";

fn apply(e: &mut ProducerEntry, h: &BatchHeader, base_offset: i64) {
    if h.producer_epoch != e.epoch {
        e.epoch = h.producer_epoch;
        e.batches.clear();
    }
    e.push(ProducerBatch {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        base_offset,
        last_offset: base_offset + i64::from(h.last_offset_delta),
        max_timestamp: h.max_timestamp,
    });
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}
impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.pos..self.pos + N)?;
        self.pos += N;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::storage::batch::{BatchBuilder, BatchHeader};

    fn hdr(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let mut b = BatchBuilder::new(0).producer(pid, epoch, seq);
        for _ in 0..n {
            b = b.record(None, None);
        }
        BatchHeader::parse(&b.build()).unwrap()
    }

    #[test]
    fn sequence_rules_and_snapshot() {
        let mut t = ProducerTable::default();
        let none = HashMap::new();
        let h = hdr(1, 0, 0, 3);
        assert_eq!(t.check(&none, &h), Ok(Check::Accept));
        let mut s = HashMap::new();
        t.stage(&mut s, &h, 100);
        t.commit(s);
        assert!(
            matches!(t.check(&none, &h), Ok(Check::Duplicate(b)) if b.base_offset == 100 && b.last_offset == 102)
        );
        assert!(matches!(
            t.check(&none, &hdr(1, 0, 4, 1)),
            Err(SeqError::OutOfOrder { expected: 3, .. })
        ));
        assert_eq!(t.check(&none, &hdr(1, 0, 3, 1)), Ok(Check::Accept));
        assert!(matches!(
            t.check(&none, &hdr(1, 1, 5, 1)),
            Err(SeqError::OutOfOrder { expected: 0, .. })
        ));
        assert_eq!(t.check(&none, &hdr(1, 1, 0, 1)), Ok(Check::Accept));
        let mut s = HashMap::new();
        t.stage(&mut s, &hdr(1, 1, 0, 1), 103);
        t.commit(s);
        assert!(matches!(
            t.check(&none, &hdr(1, 0, 3, 1)),
            Err(SeqError::Fenced { .. })
        ));
        let snap = t.encode_snapshot();
        assert_eq!(ProducerTable::decode_snapshot(&snap), Some(t.clone()));
        let mut bad = snap;
        bad[6] ^= 1;
        assert_eq!(ProducerTable::decode_snapshot(&bad), None);
    }
}
