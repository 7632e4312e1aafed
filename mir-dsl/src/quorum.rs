//! Weighted quorums and vote counting.
//!
//! Voting power is weighted; weights are `u128` so Mir's test weights (10^20) fit. With total
//! weight `n` and `f = (n − 1) / 3`:
//!
//! | threshold | weight | what it guarantees |
//! |---|---|---|
//! | [`Voters::strong_quorum`] | ≥ (n + f) / 2 + 1 | two of them share more than `f` weight (a correct node); `f` silent weight never blocks one (≤ n − f) |
//! | [`Voters::weak_quorum`] ("at least f + 1") | ≥ f + 1 | holds a correct node |
//! | [`Voters::more_than_2f`] ("more than 2f") | ≥ 2f + 1 | the textbook's rule for n = 3f + 1, where it **equals** the strong quorum; for other n it is smaller and two such sets need not share a correct node, so safety rules use the strong quorum |
//!
//! Counting only ever uses distinct members: a repeated node or a node outside the membership is
//! an error, never counted twice (Mir's BCB counted repeated signers). [`Votes`] counts rules of
//! the form "exists m such that #{q | votes[q] = m} ≥ Q" (BCB, Bracha, PBFT prepare and commit).
//! `mir-dsl/tests/quorum.rs` checks the guarantees above as properties for every n from 1 to 50
//! and for random weights up to 10^20: these formulas were Mir's most frequent bug.

use std::collections::BTreeMap;

use mir_runtime::NodeId;

/// A voting weight.
pub type Weight = u128;

/// Why a set of nodes cannot be weighed.
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
    pub fn equal(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        Voters::new(nodes.into_iter().map(|n| (n, 1)))
    }

    /// The members, in order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.weights.keys()
    }

    /// Whether `n` is a member.
    pub fn contains(&self, n: &NodeId) -> bool {
        self.weights.contains_key(n)
    }

    /// Total weight n.
    pub fn total(&self) -> Weight {
        self.total
    }

    /// The tolerated faulty weight f = (n − 1) / 3.
    pub fn f(&self) -> Weight {
        self.total.saturating_sub(1) / 3
    }

    /// The weight of a strong quorum: (n + f) / 2 + 1.
    pub fn strong_quorum(&self) -> Weight {
        // (n + f) / 2 without overflow: n/2 + f/2 + (both odd).
        let (n, f) = (self.total, self.f());
        n / 2 + f / 2 + (n % 2 + f % 2) / 2 + 1
    }

    /// The weight of a weak quorum ("at least f + 1"): f + 1.
    pub fn weak_quorum(&self) -> Weight {
        self.f() + 1
    }

    /// The textbook's "more than 2f": 2f + 1. Equal to [`Voters::strong_quorum`] when
    /// n = 3f + 1 (the textbook's assumption), smaller otherwise (n = 6: 3 against 4), where two
    /// sets of this weight need not intersect in a correct node. Use it only where the paper's
    /// argument needs no intersection; safety rules use the strong quorum.
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
    pub fn weight(&self, node: &NodeId) -> Weight {
        self.weights.get(node).copied().unwrap_or(0)
    }

    /// Whether distinct members `nodes` weigh at least `threshold`.
    pub fn reaches<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
        threshold: Weight,
    ) -> Result<bool, QuorumError> {
        Ok(self.weight_of(nodes)? >= threshold)
    }

    /// The total weight of distinct members `nodes`.
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

    /// Whether distinct members `nodes` form a strong quorum.
    pub fn is_strong_quorum<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<bool, QuorumError> {
        Ok(self.weight_of(nodes)? >= self.strong_quorum())
    }

    /// Whether distinct members `nodes` form a weak quorum.
    pub fn is_weak_quorum<'a>(
        &self,
        nodes: impl IntoIterator<Item = &'a NodeId>,
    ) -> Result<bool, QuorumError> {
        Ok(self.weight_of(nodes)? >= self.weak_quorum())
    }
}

/// What [`Votes::add`] did with a vote.
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
    /// Records `from`'s vote for `value`, weighted by `voters`.
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
    pub fn weight(&self, value: &V) -> Weight {
        self.by_value.get(value).copied().unwrap_or(0)
    }

    /// The smallest value whose votes weigh at least `threshold`, if any. For a threshold above
    /// half the total weight (a strong quorum) there is at most one.
    pub fn reached(&self, threshold: Weight) -> Option<&V> {
        self.by_value.iter().find(|(_, w)| **w >= threshold).map(|(v, _)| v)
    }

    /// `node`'s counted vote.
    pub fn vote_of(&self, node: &NodeId) -> Option<&V> {
        self.by_voter.get(node)
    }

    /// The members who voted for `value`, in order.
    pub fn voters_for<'a>(&'a self, value: &'a V) -> impl Iterator<Item = &'a NodeId> + 'a {
        self.by_voter.iter().filter(move |(_, v)| *v == value).map(|(n, _)| n)
    }

    /// How many members voted.
    pub fn len(&self) -> usize {
        self.by_voter.len()
    }

    /// Whether nobody voted.
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
