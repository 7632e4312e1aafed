//! Weighted quorums and vote counting.
//!
//! Voting power is weighted; weights are `u128` so Mir's test weights (10^20) fit. With total
//! weight `n` and `f = (n − 1) / 3` (the largest `f` with `n ≥ 3f + 1`), each threshold is a
//! weight (the first column) and a predicate over a set of nodes (the second):
//!
//! | threshold | predicate | weight | what it guarantees |
//! |---|---|---|---|
//! | [`Voters::strong_quorum`] | [`Voters::is_strong_quorum`] | ≥ (n + f) / 2 + 1 | two of them share more than `f` weight (a correct node); `f` silent weight never blocks one (≤ n − f) |
//! | [`Voters::weak_quorum`] ("at least f + 1") | [`Voters::is_weak_quorum`] | ≥ f + 1 | holds a correct node |
//! | [`Voters::more_than_2f`] ("more than 2f") | [`Voters::is_more_than_2f`] | ≥ 2f + 1 | holds `f + 1` correct weight (a weak quorum of correct nodes; Bracha's amplification); equals the strong quorum when n = 3f + 1, the textbook's assumption; for any other n it is smaller and two such sets need not share a correct node, so safety rules use the strong quorum |
//!
//! The guarantees hold for any weights with `n ≥ 1`; a membership of total weight 0 has no
//! quorum at all (every threshold is at least 1). "Correct" means outside any set of faulty
//! members that weighs at most `f`.
//!
//! Counting only ever uses distinct members: a repeated node or a node outside the membership is
//! an error, never counted twice (Mir's BCB counted repeated signers). [`Votes`] counts rules of
//! the form "exists m such that #{q | votes[q] = m} ≥ Q" (BCB, Bracha, PBFT prepare and commit),
//! so that a handler reads like the rule:
//!
//! ```
//! use mir_dsl::{Voters, Votes};
//! use mir_dsl::mir_runtime::NodeId;
//! let voters = Voters::equal((0..4).map(NodeId::from_index));
//! let mut echos: Votes<&str> = Votes::default();
//! for q in 0..3 {
//!     echos.add(&voters, NodeId::from_index(q), "m");
//! }
//! // upon exists m such that #{q | echos[q] = m} > 2f do …
//! if let Some(m) = echos.reached(voters.more_than_2f()) {
//!     assert_eq!(*m, "m");
//! }
//! # assert!(echos.reached(voters.more_than_2f()).is_some());
//! ```
//!
//! `mir-dsl/tests/quorum.rs` checks the guarantees above as properties — on worst-case sets, not
//! by re-computing the formulas — for every n from 1 to 50 and for random weights up to 10^20:
//! these formulas were Mir's most frequent bug.

use std::collections::BTreeMap;

use mir_runtime::NodeId;

/// A voting weight.
///
/// ```
/// let ten_to_the_20: mir_dsl::Weight = 100_000_000_000_000_000_000; // Mir's test weights fit
/// # assert!(ten_to_the_20 > u64::MAX as u128);
/// ```
pub type Weight = u128;

/// Why a set of nodes cannot be weighed.
///
/// ```
/// use mir_dsl::{QuorumError, Voters};
/// use mir_dsl::mir_runtime::NodeId;
/// let voters = Voters::equal((0..4).map(NodeId::from_index));
/// let a = NodeId::from_index(0);
/// assert_eq!(voters.weight_of([&a, &a]), Err(QuorumError::Repeated(a.clone())));
/// let x = NodeId::new("x");
/// assert_eq!(voters.weight_of([&x]), Err(QuorumError::NotMember(x)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuorumError {
    /// A node appears twice.
    Repeated(NodeId),
    /// A node is not a member.
    NotMember(NodeId),
}

impl std::fmt::Display for QuorumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuorumError::Repeated(n) => write!(f, "node {n} appears more than once"),
            QuorumError::NotMember(n) => write!(f, "node {n} is not a member"),
        }
    }
}

impl std::error::Error for QuorumError {}

/// A weighted membership.
///
/// ```
/// use mir_dsl::Voters;
/// use mir_dsl::mir_runtime::NodeId;
/// let m = Voters::equal((0..4).map(NodeId::from_index));
/// assert_eq!((m.total(), m.f()), (4, 1));
/// let ids: Vec<NodeId> = (0..3).map(NodeId::from_index).collect();
/// assert!(m.is_strong_quorum(&ids).unwrap());
/// assert!(!m.is_strong_quorum(&ids[..2]).unwrap());
/// assert!(m.is_weak_quorum(&ids[..2]).unwrap());
/// assert!(m.is_strong_quorum(&[ids[0].clone(), ids[0].clone(), ids[1].clone()]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voters {
    weights: BTreeMap<NodeId, Weight>,
    total: Weight,
}

impl Voters {
    /// A membership from (node, weight) pairs. Panics if the total weight overflows `u128` or a
    /// node is listed twice (configuration bugs).
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::new([(NodeId::new("big"), 7), (NodeId::new("small"), 3)]);
    /// assert_eq!((m.total(), m.f()), (10, 3));
    /// ```
    pub fn new(weights: impl IntoIterator<Item = (NodeId, Weight)>) -> Self {
        let mut map = BTreeMap::new();
        let mut total: Weight = 0;
        for (n, w) in weights {
            total = total.checked_add(w).expect("total weight overflows u128");
            assert!(map.insert(n.clone(), w).is_none(), "node {n} listed twice in a membership");
        }
        Voters { weights: map, total }
    }

    /// Every node with weight 1.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..7).map(NodeId::from_index));
    /// assert_eq!((m.total(), m.f(), m.strong_quorum()), (7, 2, 5));
    /// ```
    pub fn equal(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        Voters::new(nodes.into_iter().map(|n| (n, 1)))
    }

    /// The members, in order.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal([NodeId::new("b"), NodeId::new("a")]);
    /// assert_eq!(m.nodes().collect::<Vec<_>>(), [&NodeId::new("a"), &NodeId::new("b")]);
    /// ```
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.weights.keys()
    }

    /// Whether `n` is a member.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal([NodeId::new("a")]);
    /// assert!(m.contains(&NodeId::new("a")) && !m.contains(&NodeId::new("b")));
    /// ```
    pub fn contains(&self, n: &NodeId) -> bool {
        self.weights.contains_key(n)
    }

    /// Total weight n.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::new([(NodeId::new("a"), 2), (NodeId::new("b"), 5)]);
    /// assert_eq!(m.total(), 7);
    /// ```
    pub fn total(&self) -> Weight {
        self.total
    }

    /// The tolerated faulty weight f = (n − 1) / 3: the largest f with n ≥ 3f + 1 (0 when n is 0).
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let f = |n| Voters::equal((0..n).map(NodeId::from_index)).f();
    /// assert_eq!([f(3), f(4), f(6), f(7)], [0, 1, 1, 2]);
    /// ```
    pub fn f(&self) -> Weight {
        self.total.saturating_sub(1) / 3
    }

    /// The weight of a strong quorum: (n + f) / 2 + 1, the smallest weight q with 2q − n > f,
    /// so two sets that weigh q or more share more than f weight (a correct node). Never more
    /// than n − f (for n ≥ 1), so f silent weight cannot block one.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let strong = |n| Voters::equal((0..n).map(NodeId::from_index)).strong_quorum();
    /// assert_eq!([strong(4), strong(5), strong(6), strong(7)], [3, 4, 4, 5]);
    /// ```
    pub fn strong_quorum(&self) -> Weight {
        // (n + f) / 2 without overflow: n/2 + f/2 + (both odd).
        let (n, f) = (self.total, self.f());
        n / 2 + f / 2 + (n % 2 + f % 2) / 2 + 1
    }

    /// The weight of a weak quorum ("at least f + 1"): f + 1, the smallest weight that no
    /// faulty set (weight ≤ f) reaches, so a weak quorum holds a correct node.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..7).map(NodeId::from_index));
    /// assert_eq!(m.weak_quorum(), 3); // f = 2
    /// ```
    pub fn weak_quorum(&self) -> Weight {
        self.f() + 1
    }

    /// The textbook's "more than 2f": 2f + 1. Whatever f weight of it is faulty, f + 1 is
    /// correct (Bracha's "more than 2f echoes" means "a weak quorum of correct echoes").
    ///
    /// Equal to [`Voters::strong_quorum`] when n = 3f + 1 (the textbook's assumption), smaller
    /// otherwise (n = 6: 3 against 4), where two sets of this weight need not intersect in a
    /// correct node (they can share as little as 2(2f + 1) − n ≤ f, or nothing). Use it only
    /// where the paper's argument needs no intersection; safety rules use the strong quorum.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_runtime::NodeId;
    /// let four = Voters::equal((0..4).map(NodeId::from_index));
    /// assert_eq!(four.more_than_2f(), four.strong_quorum());
    /// let six = Voters::equal((0..6).map(NodeId::from_index));
    /// assert_eq!((six.more_than_2f(), six.strong_quorum()), (3, 4));
    /// ```
    pub fn more_than_2f(&self) -> Weight {
        2 * self.f() + 1 // f ≤ (n − 1) / 3, so 2f + 1 ≤ n: no overflow
    }

    /// The weight of `node` (0 for a non-member).
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::new([(NodeId::new("a"), 5)]);
    /// assert_eq!((m.weight(&NodeId::new("a")), m.weight(&NodeId::new("x"))), (5, 0));
    /// ```
    pub fn weight(&self, node: &NodeId) -> Weight {
        self.weights.get(node).copied().unwrap_or(0)
    }

    /// Whether distinct members `nodes` weigh at least `threshold`.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..4).map(NodeId::from_index));
    /// let two = [NodeId::from_index(0), NodeId::from_index(3)];
    /// assert!(m.reaches(&two, 2).unwrap() && !m.reaches(&two, 3).unwrap());
    /// ```
    pub fn reaches<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
        threshold: Weight,
    ) -> Result<bool, QuorumError> {
        Ok(self.weight_of(nodes)? >= threshold)
    }

    /// The total weight of distinct members `nodes`; an error for a repeated node or a
    /// non-member.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::new([(NodeId::new("a"), 2), (NodeId::new("b"), 5), (NodeId::new("c"), 1)]);
    /// assert_eq!(m.weight_of([&NodeId::new("a"), &NodeId::new("b")]), Ok(7));
    /// assert!(m.weight_of([&NodeId::new("a"), &NodeId::new("a")]).is_err());
    /// ```
    pub fn weight_of<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<Weight, QuorumError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut w: Weight = 0;
        for n in nodes {
            let nw = *self.weights.get(n).ok_or_else(|| QuorumError::NotMember(n.clone()))?;
            if !seen.insert(n) {
                return Err(QuorumError::Repeated(n.clone()));
            }
            w += nw; // cannot overflow: bounded by the total
        }
        Ok(w)
    }

    /// Whether distinct members `nodes` form a strong quorum (weigh at least
    /// [`Voters::strong_quorum`]).
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..6).map(NodeId::from_index));
    /// let ids: Vec<NodeId> = (0..6).map(NodeId::from_index).collect();
    /// assert!(m.is_strong_quorum(&ids[..4]).unwrap() && !m.is_strong_quorum(&ids[..3]).unwrap());
    /// ```
    pub fn is_strong_quorum<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<bool, QuorumError> {
        self.reaches(nodes, self.strong_quorum())
    }

    /// Whether distinct members `nodes` form a weak quorum (weigh at least f + 1).
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..4).map(NodeId::from_index));
    /// let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    /// assert!(m.is_weak_quorum(&ids[..2]).unwrap() && !m.is_weak_quorum(&ids[..1]).unwrap());
    /// ```
    pub fn is_weak_quorum<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<bool, QuorumError> {
        self.reaches(nodes, self.weak_quorum())
    }

    /// Whether distinct members `nodes` weigh "more than 2f" (at least 2f + 1); see
    /// [`Voters::more_than_2f`] for when that is weaker than a strong quorum.
    ///
    /// ```
    /// use mir_dsl::Voters;
    /// use mir_dsl::mir_runtime::NodeId;
    /// let m = Voters::equal((0..6).map(NodeId::from_index)); // f = 1
    /// let ids: Vec<NodeId> = (0..6).map(NodeId::from_index).collect();
    /// assert!(m.is_more_than_2f(&ids[..3]).unwrap()); // but not a strong quorum:
    /// assert!(!m.is_strong_quorum(&ids[..3]).unwrap());
    /// ```
    pub fn is_more_than_2f<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<bool, QuorumError> {
        self.reaches(nodes, self.more_than_2f())
    }
}

/// What [`Votes::add`] did with a vote.
///
/// ```
/// use mir_dsl::{Counted, Voters, Votes};
/// use mir_dsl::mir_runtime::NodeId;
/// let voters = Voters::equal((0..4).map(NodeId::from_index));
/// let mut votes: Votes<u8> = Votes::default();
/// let q = NodeId::from_index(0);
/// assert_eq!(votes.add(&voters, q.clone(), 1), Counted::New);
/// assert_eq!(votes.add(&voters, q.clone(), 1), Counted::Repeated);
/// assert_eq!(votes.add(&voters, q.clone(), 2), Counted::Equivocation);
/// assert_eq!(votes.add(&voters, NodeId::new("x"), 1), Counted::NotMember);
/// assert_eq!((votes.weight(&1), votes.weight(&2)), (1, 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// A member's first vote: counted.
    New,
    /// The same vote again from the same member: nothing changes.
    Repeated,
    /// A member's second, different vote: not counted; the first stands. Evidence of a faulty
    /// voter (see [`Votes::vote_of`] for the first).
    Equivocation,
    /// Not a member: not counted.
    NotMember,
}

/// A vote counter for rules of the form "exists m such that #{q | votes\[q\] = m} ≥ Q": one vote
/// per member, weighted, values compared by `Ord` (so the answer never depends on arrival
/// order or a hash).
///
/// ```
/// use mir_dsl::{Counted, Voters, Votes};
/// use mir_runtime::NodeId;
/// let voters = Voters::equal((0..4).map(NodeId::from_index));
/// let mut echoes: Votes<&str> = Votes::default();
/// assert_eq!(echoes.add(&voters, NodeId::from_index(0), "m"), Counted::New);
/// assert_eq!(echoes.add(&voters, NodeId::from_index(1), "m"), Counted::New);
/// assert_eq!(echoes.add(&voters, NodeId::from_index(1), "m"), Counted::Repeated);
/// assert_eq!(echoes.add(&voters, NodeId::from_index(2), "m'"), Counted::New);
/// assert_eq!(echoes.add(&voters, NodeId::from_index(2), "m"), Counted::Equivocation);
/// assert_eq!(echoes.add(&voters, NodeId::new("x"), "m"), Counted::NotMember);
/// assert_eq!(echoes.reached(voters.strong_quorum()), None); // 2 of 3 for "m"
/// echoes.add(&voters, NodeId::from_index(3), "m");
/// // upon exists m such that #echoes[m] ≥ strong quorum do …
/// assert_eq!(echoes.reached(voters.strong_quorum()), Some(&"m"));
/// ```
#[derive(Debug, Clone)]
pub struct Votes<V> {
    by_voter: BTreeMap<NodeId, V>,
    by_value: BTreeMap<V, Weight>,
}

impl<V> Default for Votes<V> {
    fn default() -> Self {
        Votes { by_voter: BTreeMap::new(), by_value: BTreeMap::new() }
    }
}

impl<V: Ord + Clone> Votes<V> {
    /// Records `from`'s vote for `value`, weighted by `voters` (pass the same `Voters` every
    /// time: the weights are read when a vote is counted). Only a member's first vote counts.
    ///
    /// ```
    /// use mir_dsl::{Counted, Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::new([(NodeId::new("a"), 3)]);
    /// let mut votes = Votes::default();
    /// assert_eq!(votes.add(&voters, NodeId::new("a"), "yes"), Counted::New);
    /// assert_eq!(votes.weight(&"yes"), 3);
    /// ```
    pub fn add(&mut self, voters: &Voters, from: NodeId, value: V) -> Counted {
        let w = match voters.weights.get(&from) {
            Some(w) => *w,
            None => return Counted::NotMember,
        };
        match self.by_voter.get(&from) {
            Some(v) if *v == value => Counted::Repeated,
            Some(_) => Counted::Equivocation,
            None => {
                *self.by_value.entry(value.clone()).or_default() += w; // ≤ total: no overflow
                self.by_voter.insert(from, value);
                Counted::New
            }
        }
    }

    /// The weight of the votes for `value`.
    ///
    /// ```
    /// use mir_dsl::{Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::new([(NodeId::new("a"), 2), (NodeId::new("b"), 5)]);
    /// let mut votes = Votes::default();
    /// votes.add(&voters, NodeId::new("a"), 'x');
    /// votes.add(&voters, NodeId::new("b"), 'x');
    /// assert_eq!((votes.weight(&'x'), votes.weight(&'y')), (7, 0));
    /// ```
    pub fn weight(&self, value: &V) -> Weight {
        self.by_value.get(value).copied().unwrap_or(0)
    }

    /// The smallest value (by `Ord`) whose votes weigh at least `threshold`, if any. For a
    /// threshold above half the total weight (a strong quorum) there is at most one.
    ///
    /// ```
    /// use mir_dsl::{Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::equal((0..4).map(NodeId::from_index));
    /// let mut votes = Votes::default();
    /// for (q, v) in [(0, 'b'), (1, 'b'), (2, 'a'), (3, 'a')] {
    ///     votes.add(&voters, NodeId::from_index(q), v);
    /// }
    /// assert_eq!(votes.reached(voters.weak_quorum()), Some(&'a')); // both reach 2: the smaller
    /// assert_eq!(votes.reached(voters.strong_quorum()), None);
    /// ```
    pub fn reached(&self, threshold: Weight) -> Option<&V> {
        self.by_value.iter().find(|(_, w)| **w >= threshold).map(|(v, _)| v)
    }

    /// `node`'s counted vote (its first).
    ///
    /// ```
    /// use mir_dsl::{Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::equal([NodeId::new("a")]);
    /// let mut votes = Votes::default();
    /// votes.add(&voters, NodeId::new("a"), 1);
    /// votes.add(&voters, NodeId::new("a"), 2); // equivocation: not counted
    /// assert_eq!(votes.vote_of(&NodeId::new("a")), Some(&1));
    /// ```
    pub fn vote_of(&self, node: &NodeId) -> Option<&V> {
        self.by_voter.get(node)
    }

    /// The members who voted for `value`, in order (a certificate's signers, say).
    ///
    /// ```
    /// use mir_dsl::{Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::equal((0..3).map(NodeId::from_index));
    /// let mut votes = Votes::default();
    /// for (q, v) in [(2, 'x'), (1, 'y'), (0, 'x')] {
    ///     votes.add(&voters, NodeId::from_index(q), v);
    /// }
    /// let x: Vec<_> = votes.voters_for(&'x').cloned().collect();
    /// assert_eq!(x, [NodeId::from_index(0), NodeId::from_index(2)]);
    /// ```
    pub fn voters_for<'a>(&'a self, value: &'a V) -> impl Iterator<Item = &'a NodeId> + 'a {
        self.by_voter.iter().filter(move |(_, v)| *v == value).map(|(n, _)| n)
    }

    /// How many members voted.
    ///
    /// ```
    /// use mir_dsl::{Voters, Votes};
    /// use mir_dsl::mir_runtime::NodeId;
    /// let voters = Voters::equal((0..4).map(NodeId::from_index));
    /// let mut votes = Votes::default();
    /// votes.add(&voters, NodeId::from_index(0), ());
    /// votes.add(&voters, NodeId::from_index(0), ());
    /// assert_eq!(votes.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.by_voter.len()
    }

    /// Whether nobody voted.
    ///
    /// ```
    /// let votes: mir_dsl::Votes<u8> = Default::default();
    /// assert!(votes.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.by_voter.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<NodeId> {
        (0..n).map(NodeId::from_index).collect()
    }

    #[test]
    fn equal_weights() {
        for (n, f, strong) in [(1u128, 0u128, 1u128), (4, 1, 3), (7, 2, 5), (10, 3, 7)] {
            let m = Voters::equal(ids(n as usize));
            assert_eq!((m.f(), m.strong_quorum(), m.weak_quorum()), (f, strong, f + 1), "n = {n}");
        }
    }

    #[test]
    fn weights_beyond_64_bits() {
        let big: Weight = 100_000_000_000_000_000_000; // 10^20, as in Mir's tests
        let m = Voters::new(ids(4).into_iter().map(|n| (n, big)));
        assert_eq!(m.total(), 4 * big);
        assert_eq!(m.f(), (4 * big - 1) / 3);
        let all = ids(4);
        assert!(m.is_strong_quorum(&all[..3]).unwrap());
        assert!(!m.is_strong_quorum(&all[..2]).unwrap());
        assert!(m.is_weak_quorum(&all[..2]).unwrap());
        assert!(!m.is_weak_quorum(&all[..1]).unwrap());
        // Near the top of u128: no overflow in the quorum arithmetic.
        let huge =
            Voters::new([(NodeId::new("a"), u128::MAX / 2), (NodeId::new("b"), u128::MAX / 2)]);
        assert!(huge.strong_quorum() > huge.f());
    }

    #[test]
    fn unequal_weights() {
        // One heavy node holds most of the weight.
        let m = Voters::new([
            (NodeId::new("heavy"), 7),
            (NodeId::new("a"), 1),
            (NodeId::new("b"), 1),
            (NodeId::new("c"), 1),
        ]);
        assert_eq!((m.total(), m.f(), m.strong_quorum()), (10, 3, 7));
        assert!(m.is_strong_quorum([&NodeId::new("heavy")]).unwrap());
        assert!(!m
            .is_weak_quorum([&NodeId::new("a"), &NodeId::new("b"), &NodeId::new("c")])
            .unwrap());
    }

    #[test]
    fn repeated_and_foreign_nodes_are_errors() {
        let m = Voters::equal(ids(4));
        let a = NodeId::new("0");
        assert_eq!(m.weight_of([&a, &a]), Err(QuorumError::Repeated(a.clone())));
        assert_eq!(m.weight_of([&NodeId::new("9")]), Err(QuorumError::NotMember(NodeId::new("9"))));
    }
}
