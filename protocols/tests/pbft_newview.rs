//! The new-view rule (conditions A1, A2, B) never loses a committed value: for random histories
//! in which some sn was committed with digest `d` in view `v0` (so a strong quorum prepared it
//! there: at least `strong − f` correct nodes), random P and Q sets of the other correct nodes
//! consistent with that, arbitrary entries from up to `f` Byzantine nodes, and any strong quorum
//! `S` of view changes for a later view, [`reproposals`] decides `d` or waits — never ⊥, never
//! another value. Weighted and unweighted, n = 4 and 7.

use mir_dsl::Voters;
use mir_runtime::NodeId;
use proptest::prelude::*;
use protocols::ordering::pbft::viewchange::{reproposals, Reproposal};
use protocols::ordering::pbft::{PEntry, ViewChange};

const SN: u64 = 3;

fn digest(i: u8) -> Vec<u8> {
    vec![i; 32]
}

#[derive(Debug, Clone)]
struct History {
    n: usize,
    v0: u64,
    view: u64,
    /// Per node: P entry (view, digest index) and Q entries.
    p: Vec<Option<(u64, u8)>>,
    q: Vec<Vec<(u64, u8)>>,
    /// Which view changes are in S.
    in_s: Vec<bool>,
}

fn history() -> impl Strategy<Value = History> {
    (prop_oneof![Just(4usize), Just(7usize)], 0u64..3, 1u64..4).prop_flat_map(|(n, v0, dv)| {
        let view = v0 + dv;
        let f = (n - 1) / 3;
        let strong = n - f; // for equal weights, n ≥ 3f+1: the strong quorum is n − f
        let preparers = strong - f; // correct nodes that prepared d in v0
                                    // Correct nodes 0..n−f; Byzantine nodes n−f..n.
        let node = move |i: usize| {
            let correct = i < n - f;
            let prepared = i < preparers;
            let p = if prepared {
                // Prepared d in v0 or later (always d).
                (v0..view).prop_map(|v| Some((v, 1u8))).boxed()
            } else if correct {
                // Nothing, or something older than v0, or d later.
                prop_oneof![
                    Just(None),
                    (0..v0.max(1), 2u8..5).prop_map(move |(v, d)| if v < v0 {
                        Some((v, d))
                    } else {
                        None
                    }),
                    (v0..view).prop_map(|v| Some((v, 1u8))),
                ]
                .boxed()
            } else {
                proptest::option::of((0..view, 0u8..5)).boxed()
            };
            let q = if correct {
                // d in v0 or later; other digests only in v0 or before (an equivocating
                // primary of v0) — never prepared by a quorum there.
                proptest::collection::vec(
                    prop_oneof![(v0..view).prop_map(|v| (v, 1u8)), (0..=v0, 2u8..5)],
                    0..3,
                )
                .boxed()
            } else {
                proptest::collection::vec((0..view, 0u8..5), 0..3).boxed()
            };
            (p, q)
        };
        let nodes: Vec<_> = (0..n).map(node).collect();
        (nodes, proptest::collection::vec(any::<bool>(), n)).prop_map(move |(nodes, in_s)| {
            History {
                n,
                v0,
                view,
                p: nodes.iter().map(|(p, _)| *p).collect(),
                q: nodes.iter().map(|(_, q)| q.clone()).collect(),
                in_s,
            }
        })
    })
}

fn view_change(h: &History, i: usize) -> ViewChange {
    let mut q_set: Vec<PEntry> = Vec::new();
    let mut q = h.q[i].clone();
    // A node that prepared also pre-prepared.
    if let Some((v, d)) = h.p[i] {
        q.push((v, d));
    }
    for (v, d) in q {
        match q_set.iter_mut().find(|e| e.digest == digest(d)) {
            Some(e) => e.view = e.view.max(v),
            None => q_set.push(PEntry { sn: SN, view: v, digest: digest(d) }),
        }
    }
    ViewChange {
        view: h.view,
        p_set: h.p[i]
            .map(|(v, d)| PEntry { sn: SN, view: v, digest: digest(d) })
            .into_iter()
            .collect(),
        q_set,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn a_committed_value_is_never_replaced(h in history()) {
        let ids: Vec<NodeId> = (0..h.n).map(NodeId::from_index).collect();
        let voters = Voters::equal(ids.clone());
        // S: the drawn members, completed (from the last node down) up to a strong quorum.
        let mut in_s = h.in_s.clone();
        for i in (0..h.n).rev() {
            let s: Vec<&NodeId> = (0..h.n).filter(|j| in_s[*j]).map(|j| &ids[j]).collect();
            if voters.is_strong_quorum(s).unwrap() {
                break;
            }
            in_s[i] = true;
        }
        let vcs: Vec<(NodeId, ViewChange)> =
            (0..h.n).filter(|i| in_s[*i]).map(|i| (ids[i].clone(), view_change(&h, i))).collect();
        prop_assert!(voters.is_strong_quorum(vcs.iter().map(|(n, _)| n)).unwrap());
        let r = reproposals(&voters, &[SN], vcs.iter().map(|(n, v)| (n, v)));
        let decided = r[&SN].clone();
        prop_assert!(
            decided.is_none() || decided == Some(Reproposal::Value(digest(1))),
            "committed d in view {}, new view {} decides {:?}", h.v0, h.view, decided
        );
    }
}
