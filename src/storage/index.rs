//! Sparse offset index (`.index`) and time index (`.timeindex`), kept in memory per segment and
//! written whole when a segment is sealed or the log closes. This module does no I/O.
//!
//! `.index`: entries of (relative offset u32 BE, position u32 BE), 8 bytes, both strictly increasing.
//! The relative offset is that of the *last* record of the batch starting at `position` (as Kafka).
//! `.timeindex`: entries of (timestamp i64 BE, relative offset u32 BE), 12 bytes, both
//! non-decreasing: the largest batch max timestamp seen so far and the last offset of the batch
//! that first reached it.

pub const INDEX_ENTRY_BYTES: usize = 8;
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    pub entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Largest entry whose offset is <= `rel`: the position to start scanning from (0 if none).
    pub fn lookup(&self, rel: u32) -> u32 {
        let i = self.entries.partition_point(|e| e.0 <= rel);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }
    /// Largest entry position <= `pos` (batch boundary at or before a byte position).
    pub fn boundary_at_or_before(&self, pos: u32) -> Option<u32> {
        let i = self.entries.partition_point(|e| e.1 <= pos);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1].1)
        }
    }
    pub fn push(&mut self, rel: u32, pos: u32) {
        if let Some(&(r, p)) = self.entries.last() {
            assert!(rel > r && pos > p, "offset index not increasing");
        }
        self.entries.push((rel, pos));
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.entries.len() * INDEX_ENTRY_BYTES);
        for (r, p) in &self.entries {
            b.extend_from_slice(&r.to_be_bytes());
            b.extend_from_slice(&p.to_be_bytes());
        }
        b
    }
    /// Decodes and sanity-checks against the segment's file size. Err = corrupt.
    pub fn decode(b: &[u8], segment_bytes: u64) -> Result<OffsetIndex, String> {
        if b.len() % INDEX_ENTRY_BYTES != 0 {
            return Err(format!(
                "length {} not a multiple of {INDEX_ENTRY_BYTES}",
                b.len()
            ));
        }
        let mut idx = OffsetIndex::default();
        for c in b.chunks_exact(INDEX_ENTRY_BYTES) {
            let r = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let p = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(lr, lp)) = idx.entries.last() {
                if r <= lr || p <= lp {
                    return Err(format!("entry ({r}, {p}) not after ({lr}, {lp})"));
                }
            }
            if u64::from(p) >= segment_bytes {
                return Err(format!("position {p} beyond segment size {segment_bytes}"));
            }
            idx.entries.push((r, p));
        }
        Ok(idx)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    pub entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Appends if `ts` is larger than the last entry's timestamp.
    pub fn maybe_push(&mut self, ts: i64, rel: u32) {
        match self.entries.last() {
            Some(&(t, r)) if ts <= t || rel < r => {}
            _ => self.entries.push((ts, rel)),
        }
    }
    /// Relative offset of the last entry whose timestamp is < `ts`: every batch up to and
    /// including that offset's batch has a max timestamp < `ts`, so a scan may start there.
    pub fn start_for(&self, ts: i64) -> Option<u32> {
        let i = self.entries.partition_point(|e| e.0 < ts);
        if i == 0 {
            None
        } else {
            Some(self.entries[i - 1].1)
        }
    }
    pub fn max_timestamp(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for (t, r) in &self.entries {
            b.extend_from_slice(&t.to_be_bytes());
            b.extend_from_slice(&r.to_be_bytes());
        }
        b
    }
    /// Decodes and sanity-checks: `max_rel` is the largest relative offset in the segment.
    pub fn decode(b: &[u8], max_rel: u32) -> Result<TimeIndex, String> {
        if b.len() % TIME_INDEX_ENTRY_BYTES != 0 {
            return Err(format!(
                "length {} not a multiple of {TIME_INDEX_ENTRY_BYTES}",
                b.len()
            ));
        }
        let mut idx = TimeIndex::default();
        for c in b.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let t = i64::from_be_bytes(t);
            let r = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(&(lt, lr)) = idx.entries.last() {
                if t <= lt || r < lr {
                    return Err(format!("entry ({t}, {r}) not after ({lt}, {lr})"));
                }
            }
            if r > max_rel {
                return Err(format!("relative offset {r} beyond segment end {max_rel}"));
            }
            idx.entries.push((t, r));
        }
        Ok(idx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn lookup_and_roundtrip() {
        let mut i = OffsetIndex::default();
        i.push(9, 100);
        i.push(19, 250);
        assert_eq!(i.lookup(5), 0);
        assert_eq!(i.lookup(9), 100);
        assert_eq!(i.lookup(18), 100);
        assert_eq!(i.lookup(100), 250);
        assert_eq!(i.boundary_at_or_before(249), Some(100));
        assert_eq!(OffsetIndex::decode(&i.encode(), 300).unwrap(), i);
        assert!(OffsetIndex::decode(&i.encode(), 200).is_err());
        let mut bad = i.encode();
        bad.push(0);
        assert!(OffsetIndex::decode(&bad, 300).is_err());
    }

    #[test]
    fn time_index() {
        let mut t = TimeIndex::default();
        t.maybe_push(10, 0);
        t.maybe_push(10, 3);
        t.maybe_push(20, 5);
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.start_for(10), None);
        assert_eq!(t.start_for(15), Some(0));
        assert_eq!(t.start_for(25), Some(5));
        assert_eq!(TimeIndex::decode(&t.encode(), 5).unwrap(), t);
        assert!(TimeIndex::decode(&t.encode(), 4).is_err());
    }
}
