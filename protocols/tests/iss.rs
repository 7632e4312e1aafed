//! ISS in the simulator (issue 15, in progress): PBFT instances per segment over several epochs,
//! one log delivered in sn order at every node, checkpoints at epoch ends, leader policies that
//! sideline a crashed leader.

mod iss_support;
use iss_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mir_runtime::sim::{Fault, SimConfig, Simulation};
use protocols::ordering::iss::leaders::LeaderPolicy;

/// Runs 4 nodes (`crashed` down from the start) until every other node delivered `entries`
/// log entries; checks that their logs agree and returns what each saw.
fn run(
    seed: u64,
    policy: LeaderPolicy,
    crashed: &[usize],
    entries: usize,
) -> BTreeMap<NodeId, Seen> {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in ids() {
        sim.add_node(node(&me, policy, &outcome)).unwrap();
    }
    for c in crashed {
        sim.apply_fault(Fault::Crash(ids()[*c].clone())).unwrap();
    }
    let live: Vec<NodeId> = ids()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !crashed.contains(i))
        .map(|(_, n)| n)
        .collect();
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            live.iter().all(|n| all.get(n).is_some_and(|s| s.log.len() >= entries))
        })
        .unwrap();
    let all = outcome.lock().unwrap().clone();
    assert!(
        done,
        "seed {seed}: not every node delivered {entries} entries: {:?}",
        all.iter().map(|(n, s)| (n, s.log.len())).collect::<Vec<_>>()
    );
    let first = &all[&live[0]];
    for n in &live {
        let s = &all[n];
        let k = s.log.len().min(first.log.len());
        assert_eq!(s.log[..k], first.log[..k], "seed {seed}: node {n}'s log differs");
        let sns: Vec<u64> = s.log.iter().map(|e| e.sn).collect();
        assert_eq!(
            sns,
            (0..s.log.len() as u64).collect::<Vec<_>>(),
            "seed {seed}: {n} out of order"
        );
    }
    all.into_iter().filter(|(n, _)| live.contains(n)).collect()
}

/// The leaders of each epoch, as node 0 saw them (or the first live node).
fn leaders_by_epoch(seen: &BTreeMap<NodeId, Seen>) -> BTreeMap<u64, Vec<NodeId>> {
    let s = seen.values().next().unwrap();
    s.epochs.iter().map(|e| (e.epoch, e.leaders.clone())).collect()
}

#[test]
fn iss_orders_one_log_over_several_epochs_with_checkpoints() {
    for seed in 0..5 {
        // 4 leaders × segments of 4: 16 sns per epoch; 4 epochs.
        let seen = run(seed, LeaderPolicy::Simple, &[], 64);
        let epochs = leaders_by_epoch(&seen);
        for s in seen.values() {
            for e in &s.log {
                // Each value comes from the leader of its segment.
                let leaders = &epochs[&e.epoch];
                let leader = &leaders[(e.sn % leaders.len() as u64) as usize];
                assert_eq!(
                    e.value,
                    Some(format!("{} by {leader}", e.sn).into_bytes()),
                    "seed {seed}"
                );
            }
        }
        // Stable checkpoints at epoch ends, the same certificate at every node.
        let first = &seen.values().next().unwrap().stable;
        assert!(first.len() >= 2, "seed {seed}: {first:?}");
        for s in seen.values() {
            let k = s.stable.len().min(first.len());
            assert_eq!(s.stable[..k], first[..k]);
        }
        assert_eq!(first[0].epoch, 1);
        assert_eq!(first[0].first_sn, 16);
    }
}

#[test]
fn a_crashed_leader_gets_bottom_then_backoff_sidelines_it() {
    let seen = run(1, LeaderPolicy::Backoff, &[3], 40);
    let epochs = leaders_by_epoch(&seen);
    let n = NodeId::from_index;
    assert_eq!(epochs[&0], vec![n(0), n(1), n(2), n(3)]);
    // Epoch 0: node 3's segment (sn 3, 7, 11, 15) ends ⊥; it sits out epochs 1 and 2.
    let log = &seen[&n(0)].log;
    for e in log.iter().filter(|e| e.epoch == 0) {
        assert_eq!(e.value.is_none(), e.sn % 4 == 3, "sn {}", e.sn);
    }
    assert_eq!(epochs[&1], vec![n(0), n(1), n(2)]);
    assert_eq!(epochs[&2], vec![n(0), n(1), n(2)]);
    assert!(log.iter().filter(|e| e.epoch >= 1).all(|e| e.value.is_some()));
}

#[test]
fn with_the_simple_policy_a_crashed_leader_keeps_its_segments_and_they_end_bottom() {
    let seen = run(2, LeaderPolicy::Simple, &[3], 40);
    let log = &seen[&NodeId::from_index(0)].log;
    assert!(log.iter().all(|e| e.value.is_none() == (e.sn % 4 == 3)));
}

#[test]
fn the_single_leader_policy_rotates_one_leader() {
    let seen = run(3, LeaderPolicy::Single, &[], 12);
    let epochs = leaders_by_epoch(&seen);
    for (e, leaders) in &epochs {
        assert_eq!(leaders, &vec![NodeId::from_index((*e % 4) as usize)]);
    }
    assert!(epochs.len() >= 3);
}
