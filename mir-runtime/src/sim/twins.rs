//! Twins (Bano et al., "Twins: BFT Systems Made Robust"): a Byzantine node is simulated by two
//! honest instances of one identity ([`Simulation::add_twin`](super::Simulation::add_twin)) that
//! partitions keep apart, so each tells its side a different, individually honest story. This
//! module enumerates the partition scenarios for small clusters.

use std::collections::BTreeSet;

use crate::id::NodeId;

/// One round of a scenario: the two sides of a partition, or no partition (`None`).
pub type Round = Option<[Vec<NodeId>; 2]>;

/// Every scenario of `rounds` rounds over `instances` (node IDs and twins' aliases): in each
/// round the instances are split in two sides or not split at all. Duplicates are removed: a
/// split and its mirror are one, and so are scenarios that differ only by exchanging the two
/// instances of a twin pair (`pairs`: (ID, alias)). At most `budget` scenarios, in a fixed order.
///
/// ```
/// use mir_runtime::sim::twins::scenarios;
/// use mir_runtime::NodeId;
/// let ids: Vec<NodeId> = ["0", "0b", "1", "2", "3"].iter().map(|s| NodeId::new(s)).collect();
/// let all = scenarios(&ids, &[(ids[0].clone(), ids[1].clone())], 1, usize::MAX);
/// // 16 splits of 5 instances (mirror images counted once, the unsplit one included), minus
/// // those that only exchange the twins.
/// assert!(all.len() < 16 && all.len() > 8);
/// ```
pub fn scenarios(
    instances: &[NodeId],
    pairs: &[(NodeId, NodeId)],
    rounds: usize,
    budget: usize,
) -> Vec<Vec<Round>> {
    let k = instances.len();
    assert!((1..=16).contains(&k), "Twins scenarios are for small clusters (1 to 16 instances)");
    // A split is the bit mask of the instances on the side away from instance 0 (whose bit is
    // always 0); 0 means "not split".
    let per_round: Vec<u32> = (0..1u32 << (k - 1)).map(|m| m << 1).collect();
    let swaps: Vec<Vec<usize>> = {
        // The permutations that exchange the instances of some twin pairs (every subset).
        let idx =
            |n: &NodeId| instances.iter().position(|x| x == n).expect("a pair names an instance");
        let pairs: Vec<(usize, usize)> = pairs.iter().map(|(a, b)| (idx(a), idx(b))).collect();
        (0..1usize << pairs.len())
            .map(|set| {
                let mut perm: Vec<usize> = (0..k).collect();
                for (i, (a, b)) in pairs.iter().enumerate() {
                    if set >> i & 1 == 1 {
                        perm.swap(*a, *b);
                    }
                }
                perm
            })
            .collect()
    };
    let canonical = |masks: &[u32]| -> Vec<u32> {
        swaps
            .iter()
            .map(|perm| {
                masks
                    .iter()
                    .map(|m| {
                        let mut out = 0u32;
                        for (i, p) in perm.iter().enumerate() {
                            out |= (m >> p & 1) << i;
                        }
                        // Mirrored so that instance 0 is on side 0 again, as generated.
                        if out & 1 == 1 {
                            !out & ((1 << k) - 1)
                        } else {
                            out
                        }
                    })
                    .collect::<Vec<u32>>()
            })
            .min()
            .expect("the identity is among the swaps")
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut masks = vec![0usize; rounds];
    'all: loop {
        let scenario: Vec<u32> = masks.iter().map(|i| per_round[*i]).collect();
        if seen.insert(canonical(&scenario)) {
            out.push(scenario);
            if out.len() >= budget {
                break;
            }
        }
        for r in (0..rounds).rev() {
            masks[r] += 1;
            if masks[r] < per_round.len() {
                continue 'all;
            }
            masks[r] = 0;
        }
        break;
    }
    out.into_iter()
        .map(|s| {
            s.into_iter()
                .map(|m| {
                    (m != 0).then(|| {
                        let side = |bit: u32| -> Vec<NodeId> {
                            (0..k)
                                .filter(|i| m >> i & 1 == bit)
                                .map(|i| instances[i].clone())
                                .collect()
                        };
                        [side(0), side(1)]
                    })
                })
                .collect()
        })
        .collect()
}
