//! The quorum thresholds checked as the properties protocols rely on, not re-computed: each
//! property is asserted on the worst-case sets (two quorums that overlap the least, the heaviest
//! faulty set), built node by node and weighed by membership. For every n from 1 to 50 with equal
//! weights, and for random weights — up to 10^20 per node as in Mir's tests, and up to
//! u128::MAX / 50 to catch overflow — over up to 50 nodes. These formulas were Mir's most
//! frequent bug (five separate fixes). The vote counter is checked against a naive model.

use std::collections::{BTreeMap, BTreeSet};

use mir_dsl::{Counted, QuorumError, Voters, Votes, Weight};
use mir_runtime::NodeId;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn ids(n: usize) -> Vec<NodeId> {
    (0..n).map(NodeId::from_index).collect()
}

/// The weight of the members in both `a` and `b`, found by membership.
fn shared(v: &Voters, a: &[NodeId], b: &[NodeId]) -> Weight {
    let b: BTreeSet<&NodeId> = b.iter().collect();
    a.iter().filter(|x| b.contains(x)).map(|x| v.weight(x)).sum()
}

/// The members of `a` not in `b`.
fn minus(a: &[NodeId], b: &[NodeId]) -> Vec<NodeId> {
    let b: BTreeSet<&NodeId> = b.iter().collect();
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

#[test]
fn equal_weights_every_n_from_1_to_50() {
    for n in 1..=50usize {
        let v = Voters::equal(ids(n));
        let all = ids(n);
        let (f, strong, weak, two_f) =
            (v.f(), v.strong_quorum(), v.weak_quorum(), v.more_than_2f());
        let (nw, fu, q, t) = (n as Weight, f as usize, strong as usize, two_f as usize);
        // f is the most faulty nodes n tolerates: n ≥ 3f + 1, but not n ≥ 3(f + 1) + 1.
        assert!(nw > 3 * f && nw <= 3 * (f + 1), "n = {n}: f = {f}");

        // Strong quorums. With equal weights the first q and the last q nodes are the two
        // strong quorums that overlap the least: if they share more than f nodes, any two do.
        assert!(q <= n, "n = {n}: no set reaches {q}");
        let (a, b) = (&all[..q], &all[n - q..]);
        assert!(v.is_strong_quorum(a).unwrap() && v.is_strong_quorum(b).unwrap(), "n = {n}");
        assert!(shared(&v, a, b) > f, "n = {n}: strong quorums of {q} may share only f = {f}");
        // q is the smallest such threshold: two sets of q − 1 may share only f nodes.
        assert!(shared(&v, &all[..q - 1], &all[n - (q - 1)..]) <= f, "n = {n}: {q} is not needed");
        // f silent nodes never block a strong quorum: the other n − f form one.
        assert!(v.is_strong_quorum(&all[fu..]).unwrap(), "n = {n}: f silent block a quorum");

        // A weak quorum holds a correct node: f (faulty) nodes never form one; f + 1 do.
        assert_eq!(weak, f + 1, "n = {n}");
        assert!(
            !v.is_weak_quorum(&all[..fu]).unwrap() && v.is_weak_quorum(&all[..fu + 1]).unwrap()
        );

        // "More than 2f": 2f + 1 nodes, f of them faulty, leave a weak quorum of correct nodes.
        assert!(
            v.is_more_than_2f(&all[..t]).unwrap() && !v.is_more_than_2f(&all[..t - 1]).unwrap()
        );
        assert!(v.is_weak_quorum(&all[fu..t]).unwrap(), "n = {n}");
        // It is the strong quorum exactly when n = 3f + 1, and never more. Otherwise two such
        // sets (the first and the last 2f + 1) may share only f nodes: no correct node.
        assert!(two_f <= strong, "n = {n}");
        assert_eq!(two_f == strong, nw == 3 * f + 1, "n = {n}: 2f+1 = {two_f}, strong = {strong}");
        assert_eq!(shared(&v, &all[..t], &all[n - t..]) > f, nw == 3 * f + 1, "n = {n}");

        // The predicates agree with the thresholds on every prefix.
        for k in 0..=n {
            let kw = k as Weight;
            assert_eq!(v.is_strong_quorum(&all[..k]).unwrap(), kw >= strong, "n = {n}, k = {k}");
            assert_eq!(v.is_weak_quorum(&all[..k]).unwrap(), kw > f, "n = {n}, k = {k}");
            assert_eq!(v.is_more_than_2f(&all[..k]).unwrap(), kw > 2 * f, "n = {n}, k = {k}");
            assert!(v.reaches(&all[..k], kw).unwrap() && !v.reaches(&all[..k], kw + 1).unwrap());
        }
    }
}

const TEN_TO_THE_20: Weight = 100_000_000_000_000_000_000;

/// Realistic weights: some 0, some 1, small ones, and large ones up to 10^20 (so that one heavy
/// node among light ones is common).
fn weight() -> impl Strategy<Value = Weight> {
    prop_oneof![1 => Just(0), 2 => Just(1), 3 => 1..=1000u128, 6 => 1..=TEN_TO_THE_20]
}

/// 1 to 50 nodes with weights from `w` (not all 0), and two orders of them.
fn membership(
    w: impl Strategy<Value = Weight>,
) -> impl Strategy<Value = (Vec<Weight>, Vec<usize>, Vec<usize>)> {
    prop::collection::vec(w, 1..=50)
        .prop_filter("some weight", |ws| ws.iter().any(|w| *w > 0))
        .prop_flat_map(|ws| {
            let order: Vec<usize> = (0..ws.len()).collect();
            (Just(ws), Just(order.clone()).prop_shuffle(), Just(order).prop_shuffle())
        })
}

fn weighted(ws: &[Weight]) -> Voters {
    Voters::new(ws.iter().enumerate().map(|(i, w)| (NodeId::from_index(i), *w)))
}

/// The nodes of `order`, taken in turn until they weigh at least `threshold`.
fn taken_until(v: &Voters, order: &[NodeId], threshold: Weight) -> Vec<NodeId> {
    let (mut set, mut w) = (Vec::new(), 0);
    for x in order {
        if w >= threshold {
            break;
        }
        w += v.weight(x);
        set.push(x.clone());
    }
    set
}

/// A maximal faulty set: the nodes of `order` (which may repeat one), each taken if the set
/// stays within f.
fn faulty(v: &Voters, order: &[NodeId]) -> Vec<NodeId> {
    let (mut set, mut w) = (Vec::new(), 0);
    for x in order {
        if !set.contains(x) && w + v.weight(x) <= v.f() {
            w += v.weight(x);
            set.push(x.clone());
        }
    }
    set
}

/// Every guarantee of the module's table, for weights `ws`, on sets built in orders `p` and `r`.
fn check_guarantees(ws: &[Weight], p: &[usize], r: &[usize]) -> Result<(), TestCaseError> {
    let v = weighted(ws);
    let (n, f, strong, weak, two_f) =
        (v.total(), v.f(), v.strong_quorum(), v.weak_quorum(), v.more_than_2f());
    let p: Vec<NodeId> = p.iter().map(|i| NodeId::from_index(*i)).collect();
    let r: Vec<NodeId> = r.iter().map(|i| NodeId::from_index(*i)).collect();
    let reversed: Vec<NodeId> = p.iter().rev().cloned().collect();
    let mut heaviest_first = p.clone();
    heaviest_first.sort_by_key(|x| std::cmp::Reverse(v.weight(x)));

    // f is the most faulty weight n tolerates: n ≥ 3f + 1, but not n ≥ 3(f + 1) + 1.
    let three_f = f.checked_mul(3).expect("3f overflows");
    prop_assert!(three_f < n && n - three_f <= 3, "n {}, f {}", n, f);

    // Two strong quorums share more than f weight, and a correct node whatever the faulty set:
    // one built in order p, one in the reverse order (overlapping as little as the weights
    // allow), one in another order.
    let qs = [
        taken_until(&v, &p, strong),
        taken_until(&v, &reversed, strong),
        taken_until(&v, &r, strong),
    ];
    for q in &qs {
        prop_assert!(v.is_strong_quorum(q).unwrap());
    }
    // A quorum counted with one node twice, or with a stranger, is refused, not counted.
    let (mut twice, mut foreign) = (qs[0].clone(), qs[0].clone());
    twice.push(qs[0][0].clone());
    prop_assert_eq!(v.is_strong_quorum(&twice), Err(QuorumError::Repeated(qs[0][0].clone())));
    foreign.push(NodeId::new("stranger"));
    prop_assert_eq!(v.weight_of(&foreign), Err(QuorumError::NotMember(NodeId::new("stranger"))));
    for (i, a) in qs.iter().enumerate() {
        for b in &qs[i + 1..] {
            let both = minus(a, &minus(a, b));
            let w = shared(&v, a, b);
            prop_assert!(w > f, "strong quorums (n {}, f {}) share only {}", n, f, w);
            // The faulty set that takes the shared nodes first still leaves a correct one.
            let mut order = both.clone();
            order.extend(p.iter().cloned());
            let bad = faulty(&v, &order);
            prop_assert!(v.weight_of(&minus(&both, &bad)).unwrap() > 0);
        }
    }

    // f silent weight never blocks a strong quorum: whatever maximal faulty set is silent, the
    // others form one.
    for order in [&p, &r, &heaviest_first] {
        let bad = faulty(&v, order);
        prop_assert!(v.weight_of(&bad).unwrap() <= f);
        prop_assert!(!v.is_weak_quorum(&bad).unwrap(), "a faulty set is a weak quorum");
        let rest: Vec<NodeId> = minus(&v.nodes().cloned().collect::<Vec<_>>(), &bad);
        prop_assert!(
            v.is_strong_quorum(&rest).unwrap(),
            "f silent (n {}, f {}) block a quorum",
            n,
            f
        );
    }

    // A weak quorum holds correct weight, even against the faulty set that takes its nodes first.
    let w = taken_until(&v, &p, weak);
    prop_assert!(v.is_weak_quorum(&w).unwrap());
    prop_assert!(v.weight_of(&minus(&w, &faulty(&v, &p))).unwrap() > 0);

    // "More than 2f" without its faulty part is still a weak quorum (of correct nodes).
    let t = taken_until(&v, &p, two_f);
    prop_assert!(v.is_more_than_2f(&t).unwrap());
    for order in [&p, &heaviest_first] {
        prop_assert!(v.is_weak_quorum(&minus(&t, &faulty(&v, order))).unwrap());
    }
    // It is the strong quorum exactly when n = 3f + 1, and never more.
    prop_assert!(two_f <= strong);
    prop_assert_eq!(two_f == strong, n - three_f == 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// With random weights up to 10^20: strong quorums intersect in a correct node and survive
    /// f silent weight; weak quorums and "more than 2f" hold correct weight.
    #[test]
    fn weighted_quorums_intersect_and_are_available((ws, p, r) in membership(weight())) {
        check_guarantees(&ws, &p, &r)?;
    }

    /// The same with total weights near u128::MAX: no overflow, the same guarantees.
    #[test]
    fn weights_near_the_top_of_u128_do_not_overflow(
        (ws, p, r) in membership(prop_oneof![Just(0), 1..=u128::MAX / 50, Just(u128::MAX / 50)]),
    ) {
        check_guarantees(&ws, &p, &r)?;
    }

    /// The vote counter agrees with a naive model: first vote per member counts, a different
    /// second vote is equivocation, weights add up, and `reached` finds the smallest value over
    /// the threshold.
    #[test]
    fn votes_match_a_naive_model(
        ws in prop::collection::vec(weight(), 1..=20),
        votes in prop::collection::vec((0usize..25, 0u8..4), 0..80),
        threshold in 1..=2 * TEN_TO_THE_20,
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
        for who in 0..25 {
            prop_assert_eq!(counter.vote_of(&NodeId::from_index(who)), model.get(&who));
        }
        // The model's weight behind a value: the sum over the members whose first vote it is.
        let weight_for = |value: u8| -> Weight {
            model.iter().filter(|(_, x)| **x == value).map(|(who, _)| ws[*who]).sum()
        };
        for value in 0..4u8 {
            prop_assert_eq!(counter.weight(&value), weight_for(value));
            let voters: Vec<NodeId> = counter.voters_for(&value).cloned().collect();
            let mut expected: Vec<NodeId> = model
                .iter()
                .filter(|(_, x)| **x == value)
                .map(|(who, _)| NodeId::from_index(*who))
                .collect();
            expected.sort();
            prop_assert_eq!(voters, expected);
        }
        for q in [threshold, v.weak_quorum(), v.more_than_2f(), v.strong_quorum()] {
            let voted: BTreeSet<u8> = model.values().copied().collect();
            let expected = voted.into_iter().find(|value| weight_for(*value) >= q);
            prop_assert_eq!(counter.reached(q).copied(), expected, "threshold {}", q);
            // Above half the total weight, at most one value can reach the threshold.
            if q > v.total() / 2 {
                prop_assert!((0..4u8).filter(|value| weight_for(*value) >= q).count() <= 1);
            }
        }
        prop_assert_eq!(counter.len(), model.len());
        prop_assert_eq!(counter.is_empty(), model.is_empty());
    }
}
