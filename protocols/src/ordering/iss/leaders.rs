//! # Leader selection (spec §5)
//!
//! Which members lead segments in an epoch. Deterministic: a function of the policy's state,
//! which changes only through [`LeaderSelection::suspect`] and travels in checkpoints (it is
//! plain, ordered data with a canonical encoding). Leaders are always returned **sorted by node
//! ID**; ties are broken by ID, never by a hash map's order (Mir's and the research artifact's
//! leader lists were built by iterating hash maps).
//!
//! | policy | leaders of epoch e | on a suspect s in epoch e (counted once per epoch) |
//! |---|---|---|
//! | simple | all members | nothing |
//! | single | `[members[e mod n]]` (the single-leader baseline) | nothing |
//! | backoff | members whose ban has expired; if none, those whose ban ends first | ban s for 2 epochs the first time, twice as long each time after |
//! | blacklist | all but the most recent suspects, as many as weigh at most f | append s (moving it to the end), keep the most recent within weight f |

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mir_dsl::{Voters, Weight};
use mir_runtime::NodeId;
use serde::{Deserialize, Serialize};

/// Which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaderPolicy {
    /// Every member leads a segment in every epoch.
    Simple,
    /// One leader per epoch, rotating: the single-leader baseline, for comparison.
    Single,
    /// Suspects sit out, for 2 epochs the first time and twice as long each time after.
    Backoff,
    /// The most recent suspects (as many as weigh at most f) sit out.
    Blacklist,
}

impl std::str::FromStr for LeaderPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "simple" => Ok(LeaderPolicy::Simple),
            "single" => Ok(LeaderPolicy::Single),
            "backoff" => Ok(LeaderPolicy::Backoff),
            "blacklist" => Ok(LeaderPolicy::Blacklist),
            other => Err(format!(
                "unknown leader policy {other:?} (expected simple, single, backoff or blacklist)"
            )),
        }
    }
}

/// A member's ban under [`LeaderPolicy::Backoff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The first epoch it may lead again.
    pub until: u64,
    /// The length of its next ban.
    pub next_penalty: u64,
}

/// The state of a leader-selection policy over a membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderSelection {
    policy: LeaderPolicy,
    /// Members and weights, sorted by ID.
    members: Vec<(NodeId, Weight)>,
    /// Backoff: bans by member.
    bans: BTreeMap<NodeId, Ban>,
    /// Blacklist: suspects, oldest first.
    blacklist: VecDeque<NodeId>,
    /// Suspects already counted, by epoch (only the last epochs are kept).
    counted: BTreeMap<u64, BTreeSet<NodeId>>,
}

/// The first ban's length under [`LeaderPolicy::Backoff`], in epochs.
pub const FIRST_BAN: u64 = 2;

impl LeaderSelection {
    /// `policy` over `members` (distinct IDs, positive weights; order does not matter).
    ///
    /// ```
    /// use protocols::ordering::iss::leaders::{LeaderPolicy, LeaderSelection};
    /// use mir_runtime::NodeId;
    /// let n = NodeId::from_index;
    /// let mut s = LeaderSelection::new(LeaderPolicy::Backoff, (0..4).map(|i| (n(i), 1)).collect());
    /// assert_eq!(s.leaders(0), vec![n(0), n(1), n(2), n(3)]);
    /// s.suspect(0, &n(2));
    /// assert_eq!(s.leaders(1), vec![n(0), n(1), n(3)]); // banned for epochs 1 and 2
    /// assert_eq!(s.leaders(3), vec![n(0), n(1), n(2), n(3)]);
    /// ```
    pub fn new(policy: LeaderPolicy, mut members: Vec<(NodeId, Weight)>) -> Self {
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        LeaderSelection {
            policy,
            members,
            bans: BTreeMap::new(),
            blacklist: VecDeque::new(),
            counted: BTreeMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> LeaderPolicy {
        self.policy
    }

    /// The members and weights, sorted by ID.
    pub fn members(&self) -> &[(NodeId, Weight)] {
        &self.members
    }

    /// The leaders of `epoch`, sorted by ID, never empty (for a non-empty membership).
    pub fn leaders(&self, epoch: u64) -> Vec<NodeId> {
        let ids: Vec<NodeId> = self.members.iter().map(|(n, _)| n.clone()).collect();
        if ids.is_empty() {
            return ids;
        }
        match self.policy {
            LeaderPolicy::Simple => ids,
            LeaderPolicy::Single => vec![ids[(epoch % ids.len() as u64) as usize].clone()],
            LeaderPolicy::Backoff => {
                let until = |n: &NodeId| self.bans.get(n).map_or(0, |b| b.until);
                let free: Vec<NodeId> = ids.iter().filter(|n| until(n) <= epoch).cloned().collect();
                if !free.is_empty() {
                    return free;
                }
                // Nobody would lead: shorten every ban until one ends now.
                let soonest = ids.iter().map(until).min().unwrap_or(0);
                ids.into_iter().filter(|n| until(n) == soonest).collect()
            }
            LeaderPolicy::Blacklist => {
                ids.into_iter().filter(|n| !self.blacklist.contains(n)).collect()
            }
        }
    }

    /// `node` was suspected in `epoch` (a ⊥ in its segment, or an invalid proposal). Counted
    /// once per epoch and node; a non-member is ignored. Returns whether it counted.
    #[must_use = "whether the suspect counted (it does once per epoch)"]
    pub fn suspect(&mut self, epoch: u64, node: &NodeId) -> bool {
        if !self.members.iter().any(|(n, _)| n == node) {
            return false;
        }
        if !self.counted.entry(epoch).or_default().insert(node.clone()) {
            return false;
        }
        // Keep what "once per epoch" needs: the current and the previous epoch.
        while self.counted.len() > 2 {
            self.counted.pop_first();
        }
        match self.policy {
            LeaderPolicy::Simple | LeaderPolicy::Single => {}
            LeaderPolicy::Backoff => {
                let ban = self
                    .bans
                    .entry(node.clone())
                    .or_insert(Ban { until: 0, next_penalty: FIRST_BAN });
                ban.until = ban.until.max(epoch + 1 + ban.next_penalty);
                ban.next_penalty = ban.next_penalty.saturating_mul(2);
            }
            LeaderPolicy::Blacklist => {
                self.blacklist.retain(|n| n != node);
                self.blacklist.push_back(node.clone());
                let voters = Voters::new(self.members.iter().cloned());
                let f = voters.f();
                let weight =
                    |l: &VecDeque<NodeId>| -> Weight { l.iter().map(|n| voters.weight(n)).sum() };
                while weight(&self.blacklist) > f {
                    self.blacklist.pop_front();
                }
            }
        }
        true
    }

    /// The membership changes to `members` (reconfiguration, at an epoch's start): the policy's
    /// state about nodes that left is forgotten; what it knows of the others stays.
    ///
    /// ```
    /// use protocols::ordering::iss::leaders::{LeaderPolicy, LeaderSelection};
    /// use mir_runtime::NodeId;
    /// let n = NodeId::from_index;
    /// let mut s = LeaderSelection::new(LeaderPolicy::Backoff, (0..4).map(|i| (n(i), 1)).collect());
    /// s.reconfigure((1..6).map(|i| (n(i), 1)).collect());
    /// assert_eq!(s.leaders(0), vec![n(1), n(2), n(3), n(4), n(5)]);
    /// ```
    pub fn reconfigure(&mut self, mut members: Vec<(NodeId, Weight)>) {
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        let stays = |n: &NodeId| members.iter().any(|(m, _)| m == n);
        self.bans.retain(|n, _| stays(n));
        self.blacklist.retain(|n| stays(n));
        for counted in self.counted.values_mut() {
            counted.retain(|n| stays(n));
        }
        self.members = members;
        if self.policy == LeaderPolicy::Blacklist {
            // Keep the blacklist within f of the new membership.
            let voters = Voters::new(self.members.iter().cloned());
            let f = voters.f();
            while self.blacklist.iter().map(|n| voters.weight(n)).sum::<Weight>() > f {
                self.blacklist.pop_front();
            }
        }
    }

    /// The canonical encoding (what a checkpoint carries).
    pub fn to_bytes(&self) -> Vec<u8> {
        mir_runtime::codec::encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<(NodeId, Weight)> {
        (0..n).map(|i| (NodeId::from_index(i), 1)).collect()
    }

    #[test]
    fn single_rotates_and_simple_takes_everyone_sorted() {
        let members: Vec<_> = ids(4).into_iter().rev().collect(); // order given does not matter
        let single = LeaderSelection::new(LeaderPolicy::Single, members.clone());
        let firsts: Vec<NodeId> = (0..5).map(|e| single.leaders(e)[0].clone()).collect();
        assert_eq!(firsts, [0, 1, 2, 3, 0].map(NodeId::from_index));
        let simple = LeaderSelection::new(LeaderPolicy::Simple, members);
        assert_eq!(simple.leaders(7), ids(4).into_iter().map(|(n, _)| n).collect::<Vec<_>>());
    }

    #[test]
    fn backoff_doubles_and_never_leaves_nobody() {
        let n = NodeId::from_index;
        let mut s = LeaderSelection::new(LeaderPolicy::Backoff, ids(2));
        assert!(s.suspect(0, &n(0)));
        assert!(!s.suspect(0, &n(0)), "once per epoch");
        assert_eq!(s.leaders(1), vec![n(1)]);
        assert_eq!(s.leaders(2), vec![n(1)]);
        assert_eq!(s.leaders(3), vec![n(0), n(1)]);
        assert!(s.suspect(3, &n(0))); // second time: 4 epochs
        assert_eq!(s.leaders(7), vec![n(1)]);
        assert_eq!(s.leaders(8), vec![n(0), n(1)]);
        // Both banned: the one whose ban ends first leads.
        assert!(s.suspect(8, &n(0))); // until 8 + 1 + 8 = 17
        assert!(s.suspect(8, &n(1))); // until 8 + 1 + 2 = 11
        assert_eq!(s.leaders(9), vec![n(1)]);
    }

    #[test]
    fn blacklist_keeps_the_most_recent_suspects_within_f() {
        let n = NodeId::from_index;
        let mut s = LeaderSelection::new(LeaderPolicy::Blacklist, ids(7)); // f = 2
        for (e, i) in [(0, 1), (1, 2), (2, 3)] {
            assert!(s.suspect(e, &n(i)));
        }
        let leaders = s.leaders(3);
        assert_eq!(leaders, [0, 1, 4, 5, 6].map(NodeId::from_index)); // 2 and 3 sit out
        assert!(s.suspect(3, &n(1))); // moves to the end: 3 and 1 sit out
        assert_eq!(s.leaders(4), [0, 2, 4, 5, 6].map(NodeId::from_index));
    }

    #[test]
    fn non_members_and_repeats_do_not_count_and_the_state_encodes_canonically() {
        let mut a = LeaderSelection::new(LeaderPolicy::Backoff, ids(4));
        assert!(!a.suspect(0, &NodeId::new("x")));
        let mut b = a.clone();
        assert!(a.suspect(1, &NodeId::from_index(2)));
        assert!(b.suspect(1, &NodeId::from_index(2)));
        assert_eq!(a.to_bytes(), b.to_bytes());
        let back: LeaderSelection =
            mir_runtime::codec::decode("iss.LeaderSelection", &a.to_bytes()).unwrap();
        assert_eq!(back, a);
    }
}
