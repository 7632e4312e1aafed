//! The quorum thresholds checked as the properties protocols rely on, not re-computed: for every
//! n from 1 to 50 with equal weights, exhaustively over set sizes, and for random weights up to
//! 10^20 over random sets. These formulas were Mir's most frequent bug (five separate fixes).

use std::collections::BTreeMap;

use mir_dsl::{Counted, Voters, Votes, Weight};
use mir_runtime::NodeId;
use proptest::prelude::*;

fn ids(n: usize) -> Vec<NodeId> {
    (0..n).map(NodeId::from_index).collect()
}

#[test]
fn equal_weights_every_n_from_1_to_50() {
    for n in 1..=50u128 {
        let v = Voters::equal(ids(n as usize));
        let (f, strong, weak, two_f) =
            (v.f(), v.strong_quorum(), v.weak_quorum(), v.more_than_2f());
        // f is the most faulty nodes n tolerates: 3f < n ≤ 3(f + 1).
        assert!(3 * f < n && n <= 3 * (f + 1), "n = {n}: f = {f}");
        // Two strong quorums (of any members) share more than f nodes: 2q − n > f.
        assert!(2 * strong > n + f, "n = {n}: two strong quorums of {strong} may share only f");
        // f silent nodes never block a strong quorum.
        assert!(strong <= n - f, "n = {n}: {strong} > n − f");
        // The strong quorum is the smallest threshold with the intersection property.
        assert!(2 * (strong - 1) <= n + f, "n = {n}: {strong} is larger than needed");
        // A weak quorum holds a correct node, and f faulty ones never make one.
        assert!(weak > f && weak == f + 1, "n = {n}");
        // "More than 2f" is the strong quorum exactly when n = 3f + 1, and never more.
        assert!(two_f <= strong, "n = {n}");
        assert_eq!(two_f == strong, n == 3 * f + 1, "n = {n}: 2f+1 = {two_f}, strong = {strong}");
        // The quorum predicates agree with the thresholds on every prefix.
        let all = ids(n as usize);
        for k in 0..=n as usize {
            assert_eq!(
                v.is_strong_quorum(&all[..k]).unwrap(),
                k as u128 >= strong,
                "n = {n}, k = {k}"
            );
            assert_eq!(v.is_weak_quorum(&all[..k]).unwrap(), k as u128 > f, "n = {n}, k = {k}");
        }
    }
}

/// Weights of 1 to 50 nodes, each from 1 to 10^20.
fn weights() -> impl Strategy<Value = Vec<Weight>> {
    prop::collection::vec(1..=100_000_000_000_000_000_000u128, 1..=50)
}

fn weighted(ws: &[Weight]) -> Voters {
    Voters::new(ws.iter().enumerate().map(|(i, w)| (NodeId::from_index(i), *w)))
}

fn subset(ws: &[Weight], mask: &[bool]) -> Vec<NodeId> {
    (0..ws.len()).filter(|i| mask[*i % mask.len()]).map(NodeId::from_index).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// With any weights: two sets that are strong quorums share more than f weight, f weight
    /// silent never blocks a strong quorum, and a weak quorum outweighs any faulty set.
    #[test]
    fn weighted_quorums_intersect_and_are_available(
        ws in weights(),
        a in prop::collection::vec(any::<bool>(), 1..=50),
        b in prop::collection::vec(any::<bool>(), 1..=50),
    ) {
        let v = weighted(&ws);
        let (n, f, strong) = (v.total(), v.f(), v.strong_quorum());
        prop_assert!(f.checked_mul(3).unwrap() < n);
        prop_assert!(strong <= n - f);
        prop_assert!(v.weak_quorum() > f);
        prop_assert!(v.more_than_2f() <= strong);
        let (qa, qb) = (subset(&ws, &a), subset(&ws, &b));
        let (wa, wb) = (v.weight_of(&qa).unwrap(), v.weight_of(&qb).unwrap());
        if wa >= strong && wb >= strong {
            let shared: Weight = qa.iter().filter(|x| qb.contains(x)).map(|x| v.weight(x)).sum();
            prop_assert!(shared > f, "strong quorums of {wa} and {wb} (n {n}, f {f}) share only {shared}");
        }
        // The complement of a faulty set (weight ≤ f) is a strong quorum.
        if wa <= f {
            let rest: Vec<NodeId> = v.nodes().filter(|x| !qa.contains(x)).cloned().collect();
            prop_assert!(v.is_strong_quorum(&rest).unwrap());
        }
        prop_assert_eq!(v.reaches(&qa, strong).unwrap(), v.is_strong_quorum(&qa).unwrap());
    }

    /// The vote counter agrees with a naive model: first vote per member counts, a different
    /// second vote is equivocation, weights add up, and `reached` finds the smallest value over
    /// the threshold.
    #[test]
    fn votes_match_a_naive_model(
        ws in prop::collection::vec(1..=1000u128, 1..=20),
        votes in prop::collection::vec((0usize..25, 0u8..4), 0..80),
        threshold in 1..=20_000u128,
    ) {
        let v = weighted(&ws);
        let mut counter: Votes<u8> = Votes::default();
        let mut model: BTreeMap<usize, u8> = BTreeMap::new();
        for (who, value) in votes {
            let outcome = counter.add(&v, NodeId::from_index(who), value);
            let expected = if who >= ws.len() {
                Counted::NotMember
            } else {
                match model.get(&who) {
                    None => { model.insert(who, value); Counted::New }
                    Some(x) if *x == value => Counted::Repeated,
                    Some(_) => Counted::Equivocation,
                }
            };
            prop_assert_eq!(outcome, expected);
        }
        let mut weight: BTreeMap<u8, Weight> = BTreeMap::new();
        for (who, value) in &model {
            *weight.entry(*value).or_default() += ws[*who];
        }
        for value in 0..4u8 {
            prop_assert_eq!(counter.weight(&value), weight.get(&value).copied().unwrap_or(0));
            prop_assert_eq!(counter.voters_for(&value).count(), model.values().filter(|x| **x == value).count());
        }
        let expected = weight.iter().find(|(_, w)| **w >= threshold).map(|(v, _)| *v);
        prop_assert_eq!(counter.reached(threshold).copied(), expected);
        prop_assert_eq!(counter.len(), model.len());
        // Above half the total weight, at most one value can reach the threshold.
        if threshold > v.total() / 2 {
            prop_assert!(weight.values().filter(|w| **w >= threshold).count() <= 1);
        }
    }
}
