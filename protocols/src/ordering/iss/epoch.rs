//! # Epochs, segments and buckets (spec §1)
//!
//! * Epoch `e` covers `[first, first + len)` with `len = segment_length · |Leaders(e)|`; the
//!   leaders are sorted by ID ([`super::leaders`]).
//! * The segment of the leader at index `i` holds `first + i + k · |Leaders(e)|` for
//!   `k < segment_length`: the segments interleave, so the log advances through all leaders at
//!   once. Its view-change primaries are all members, rotated to start at its leader (PBFT's
//!   [`primary`](crate::ordering::pbft::Pbft::primary)).
//! * The request space is split into `B` buckets; request `(client, n)` falls in bucket
//!   `(H(client) + n) mod B`, so a client's consecutive requests spread over buckets. In epoch
//!   `e`, bucket `b` goes to the leader at index `(b + e) mod |Leaders(e)|`: no two segments of
//!   an epoch share a bucket, and a bucket moves to the next leader every epoch (a censoring
//!   leader loses it).

use mir_runtime::NodeId;
use serde::{Deserialize, Serialize};

use crate::ordering::Sn;

/// The layout of one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLayout {
    /// The epoch.
    pub epoch: u64,
    /// Its first sequence number.
    pub first_sn: Sn,
    /// Its leaders, sorted by ID, distinct, at least one.
    pub leaders: Vec<NodeId>,
    /// Sequence numbers per segment (at least 1).
    pub segment_length: u64,
    /// Buckets of the request space (at least 1).
    pub buckets: u64,
}

impl EpochLayout {
    /// The layout; an error for no leaders, unsorted or repeated leaders, or a zero length or
    /// bucket count.
    ///
    /// ```
    /// use protocols::ordering::iss::epoch::EpochLayout;
    /// use mir_runtime::NodeId;
    /// let leaders = (0..3).map(NodeId::from_index).collect();
    /// let e = EpochLayout::new(1, 12, leaders, 2, 6).unwrap();
    /// assert_eq!(e.len(), 6);
    /// assert_eq!(e.segment_sns(1), vec![13, 16]);
    /// assert_eq!(e.leader_of(17), Some(&NodeId::from_index(2)));
    /// assert_eq!(e.segment_buckets(0), vec![2, 5]); // bucket b → leader (b + 1) mod 3
    /// ```
    pub fn new(
        epoch: u64,
        first_sn: Sn,
        leaders: Vec<NodeId>,
        segment_length: u64,
        buckets: u64,
    ) -> Result<Self, String> {
        if leaders.is_empty() {
            return Err("an epoch needs at least one leader".into());
        }
        if leaders.windows(2).any(|w| w[0] >= w[1]) {
            return Err("leaders must be sorted by ID and distinct".into());
        }
        if segment_length == 0 || buckets == 0 {
            return Err("segment length and bucket count must be positive".into());
        }
        Ok(EpochLayout { epoch, first_sn, leaders, segment_length, buckets })
    }

    /// The number of sequence numbers in the epoch.
    pub fn len(&self) -> u64 {
        self.segment_length * self.leaders.len() as u64
    }

    /// Never empty (at least one leader and one sn per segment).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The first sequence number of the next epoch.
    pub fn next_first_sn(&self) -> Sn {
        self.first_sn + self.len()
    }

    /// Whether `sn` is in this epoch.
    pub fn contains(&self, sn: Sn) -> bool {
        (self.first_sn..self.next_first_sn()).contains(&sn)
    }

    /// The sequence numbers of the segment of the leader at index `i`.
    pub fn segment_sns(&self, i: usize) -> Vec<Sn> {
        let l = self.leaders.len() as u64;
        (0..self.segment_length).map(|k| self.first_sn + i as u64 + k * l).collect()
    }

    /// The leader whose segment holds `sn`, if `sn` is in this epoch.
    pub fn leader_of(&self, sn: Sn) -> Option<&NodeId> {
        if !self.contains(sn) {
            return None;
        }
        let i = ((sn - self.first_sn) % self.leaders.len() as u64) as usize;
        Some(&self.leaders[i])
    }

    /// The buckets of the segment of the leader at index `i`.
    pub fn segment_buckets(&self, i: usize) -> Vec<u64> {
        (0..self.buckets).filter(|b| self.bucket_leader(*b) == i).collect()
    }

    /// The index of the leader that owns bucket `b` in this epoch.
    pub fn bucket_leader(&self, b: u64) -> usize {
        ((b + self.epoch) % self.leaders.len() as u64) as usize
    }
}

pub use crate::availability::bucket_of;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layout(epoch: u64, first: Sn, leaders: usize, len: u64, buckets: u64) -> EpochLayout {
        let leaders = (0..leaders).map(NodeId::from_index).collect();
        EpochLayout::new(epoch, first, leaders, len, buckets).unwrap()
    }

    proptest! {
        #[test]
        fn segments_partition_the_epoch_and_buckets_partition_the_request_space(
            epoch in 0u64..100, first in 0u64..10_000, leaders in 1usize..10,
            len in 1u64..20, buckets in 1u64..200,
        ) {
            let e = layout(epoch, first, leaders, len, buckets);
            let mut sns: Vec<Sn> = (0..leaders).flat_map(|i| e.segment_sns(i)).collect();
            sns.sort();
            prop_assert_eq!(sns, (first..first + e.len()).collect::<Vec<_>>());
            for i in 0..leaders {
                for sn in e.segment_sns(i) {
                    prop_assert_eq!(e.leader_of(sn), Some(&e.leaders[i]));
                }
            }
            let mut all: Vec<u64> = (0..leaders).flat_map(|i| e.segment_buckets(i)).collect();
            all.sort();
            prop_assert_eq!(all, (0..buckets).collect::<Vec<_>>());
        }

        #[test]
        fn every_bucket_visits_every_leader(leaders in 1usize..10, buckets in 1u64..50, b in 0u64..50) {
            let b = b % buckets;
            let owners: std::collections::BTreeSet<usize> =
                (0..leaders as u64).map(|e| layout(e, 0, leaders, 1, buckets).bucket_leader(b)).collect();
            prop_assert_eq!(owners.len(), leaders);
        }
    }

    #[test]
    fn bad_layouts_are_refused() {
        let n = NodeId::from_index;
        assert!(EpochLayout::new(0, 0, vec![], 1, 1).is_err());
        assert!(EpochLayout::new(0, 0, vec![n(1), n(0)], 1, 1).is_err());
        assert!(EpochLayout::new(0, 0, vec![n(0), n(0)], 1, 1).is_err());
        assert!(EpochLayout::new(0, 0, vec![n(0)], 0, 1).is_err());
        assert!(EpochLayout::new(0, 0, vec![n(0)], 1, 0).is_err());
    }
}
