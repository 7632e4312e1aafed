//! ISS in the simulator: PBFT instances per segment over several epochs, one log delivered in sn
//! order at every node, checkpoints at epoch ends, leader policies that sideline a crashed
//! leader; state transfer for a node cut off for several epochs, and forged state refused.

mod iss_support;
use iss_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mir_runtime::sim::{Fault, LinkConfig, SimConfig, Simulation};
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::IssConfig;

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

#[test]
fn a_node_that_misses_several_epochs_catches_up_through_a_checkpoint() {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(7) });
    for me in ids() {
        // The default retention: the others keep one epoch behind their stable checkpoint.
        sim.add_node(node_with(&me, IssConfig::default(), &outcome)).unwrap();
    }
    let n = NodeId::from_index;
    let next = |s: &Seen| s.log.last().map_or(0, |e| e.sn + 1);
    sim.apply_fault(Fault::Partition(vec![vec![n(0), n(1), n(2)], vec![n(3)]])).unwrap();
    // The three order on (node 3's segments end ⊥) until they are 4 epochs ahead.
    let ahead = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            all.get(&n(0)).is_some_and(|s| s.stable.len() >= 4)
        })
        .unwrap();
    assert!(ahead);
    let cut_off_at = next(&outcome.lock().unwrap()[&n(3)]);
    sim.apply_fault(Fault::Heal).unwrap();
    let target = next(&outcome.lock().unwrap()[&n(0)]) + 32;
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            ids().iter().all(|m| all.get(m).is_some_and(|s| next(s) >= target))
        })
        .unwrap();
    let all = outcome.lock().unwrap().clone();
    assert!(done, "{:?}", all.iter().map(|(m, s)| (m, next(s))).collect::<Vec<_>>());
    check_logs(&all).unwrap();
    let s3 = &all[&n(3)];
    let restored = s3.restored.first().expect("node 3 restored a checkpoint").epoch;
    assert!(restored >= 3, "restored epoch {restored}");
    // It skipped what the checkpoint holds: nothing between where it was cut off and the
    // checkpoint's first sn, then every sn.
    let first_sn = s3.epochs.iter().find(|e| e.epoch == restored).unwrap().first_sn;
    let sns: Vec<u64> = s3.log.iter().map(|e| e.sn).collect();
    assert!(sns.iter().all(|sn| *sn < cut_off_at || *sn >= first_sn), "{sns:?}");
    let after: Vec<u64> = sns.iter().copied().filter(|sn| *sn >= first_sn).collect();
    assert_eq!(after, (first_sn..next(s3)).collect::<Vec<_>>());
    // Its application state is the others' (the count of entries) at the same sn.
    assert_eq!(s3.applied, next(s3));
    assert_eq!(s3.stable.iter().find(|c| c.epoch == restored).map(|c| c.first_sn), Some(first_sn));
}

#[test]
fn forged_state_transfers_are_refused_and_an_honest_one_is_restored() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mir_runtime::adversary::{Adversary, Mutate};
    use protocols::ordering::iss::transfer::StateResponse;

    let n = NodeId::from_index;
    // Node 1 answers state requests with a forged checkpoint or state, in one way per run.
    type Forgery = (&'static str, fn(&mut StateResponse));
    let forgeries: [Forgery; 5] = [
        ("another state", |r| r.snapshot.push(0)),
        ("another client progress", |r| {
            let client = protocols::availability::ClientId("mallory".into());
            r.client_progress.add(&client, 0);
        }),
        ("a bad signature", |r| r.checkpoint.signatures[0][0] ^= 1),
        ("a weak quorum", |r| {
            r.checkpoint.signers.truncate(2);
            r.checkpoint.signatures.truncate(2);
        }),
        ("another first sn", |r| r.checkpoint.first_sn += 16),
    ];
    for (seed, (what, forge)) in forgeries.into_iter().enumerate() {
        let outcome: Outcome = Arc::default();
        let mut sim =
            Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed as u64) });
        for me in ids() {
            sim.add_node(node_with(&me, IssConfig::default(), &outcome)).unwrap();
        }
        let forged = Arc::new(AtomicUsize::new(0));
        let count = forged.clone();
        let adversary = Adversary::new(Mutate::typed(1.0, move |r: &mut StateResponse, _| {
            forge(r);
            count.fetch_add(1, Ordering::Relaxed);
        }));
        sim.make_byzantine(&n(1), adversary).unwrap();
        sim.apply_fault(Fault::Partition(vec![vec![n(0), n(1), n(2)], vec![n(3)]])).unwrap();
        let stable = |o: &Outcome| o.lock().unwrap().get(&n(0)).map_or(0, |s| s.stable.len());
        assert!(sim.run_until(Duration::from_secs(300), |_| stable(&outcome) >= 3).unwrap());
        sim.apply_fault(Fault::Heal).unwrap();
        // The forged answer comes first: the honest members' links to node 3 are slower.
        for honest in [n(0), n(2)] {
            let slow = Duration::from_millis(200);
            let config = LinkConfig { latency: Some((slow, slow)), ..LinkConfig::default() };
            sim.apply_fault(Fault::Link { from: honest, to: n(3), config }).unwrap();
        }
        let next = |s: &Seen| s.log.last().map_or(0, |e| e.sn + 1);
        let target = next(&outcome.lock().unwrap()[&n(0)]) + 32;
        let done = sim
            .run_until(Duration::from_secs(300), |_| {
                let all = outcome.lock().unwrap();
                [n(0), n(2), n(3)].iter().all(|m| all.get(m).is_some_and(|s| next(s) >= target))
            })
            .unwrap();
        let mut all = outcome.lock().unwrap().clone();
        all.remove(&n(1)); // Byzantine: not checked
        assert!(done, "{what}: {:?}", all.iter().map(|(m, s)| (m, next(s))).collect::<Vec<_>>());
        assert!(forged.load(Ordering::Relaxed) > 0, "{what}: node 1 never answered");
        assert!(!all[&n(3)].restored.is_empty(), "{what}: node 3 did not restore");
        check_logs(&all).unwrap_or_else(|e| panic!("{what}: {e}"));
        // What node 3 restored is what the honest nodes certified: the same certificates, the
        // same client progress (none: the test application orders no transactions).
        for c in &all[&n(3)].stable {
            let honest = all[&n(0)].stable.iter().find(|h| h.epoch == c.epoch);
            assert_eq!(Some(c), honest, "{what}: node 3 holds another checkpoint");
        }
        for r in &all[&n(3)].restored {
            assert_eq!(r.client_progress, Default::default(), "{what}: a forged progress");
        }
    }
}

/// A member that floods a lagging node with forged answers of an ever-higher epoch (one with
/// every message it sends anyone) cannot keep it from restoring an honest one. (In the simulator
/// a check takes no time, so this shows liveness under the flood; what bounds the flood's cost
/// when checks are slow is the rule of one answer per member per request round.)
#[test]
fn a_member_flooding_forged_state_does_not_keep_a_node_from_restoring() {
    use mir_runtime::adversary::{Adversary, AdversaryCtx, Outgoing};
    use mir_runtime::stdevents::Message;
    use protocols::ordering::checkpoint::StableCheckpoint;
    use protocols::ordering::iss::transfer::StateResponse;

    let n = NodeId::from_index;
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(21) });
    for me in ids() {
        sim.add_node(node_with(&me, IssConfig::default(), &outcome)).unwrap();
    }
    let mut epoch = 1u64 << 40;
    let flood = move |_: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
        let all: Vec<Outgoing> = out.clone();
        for o in all {
            epoch += 1;
            let forged = StateResponse {
                checkpoint: StableCheckpoint {
                    epoch,
                    first_sn: epoch * 16,
                    snapshot_hash: vec![7; 32],
                    signers: (0..3).map(n).collect(),
                    signatures: vec![vec![1; 32]; 3],
                },
                snapshot: vec![],
                client_progress: Default::default(),
            };
            out.push(Outgoing { to: n(3), message: Message::new("iss", forged), ..o });
        }
    };
    sim.make_byzantine(&n(1), Adversary::new(flood)).unwrap();
    sim.apply_fault(Fault::Partition(vec![vec![n(0), n(1), n(2)], vec![n(3)]])).unwrap();
    let stable = |o: &Outcome| o.lock().unwrap().get(&n(0)).map_or(0, |s| s.stable.len());
    assert!(sim.run_until(Duration::from_secs(300), |_| stable(&outcome) >= 3).unwrap());
    sim.apply_fault(Fault::Heal).unwrap();
    let restored = sim
        .run_until(Duration::from_secs(60), |_| {
            let all = outcome.lock().unwrap();
            all.get(&n(3)).is_some_and(|s| !s.restored.is_empty() && s.log.len() >= 16)
        })
        .unwrap();
    assert!(restored, "node 3 never restored");
    let all = outcome.lock().unwrap().clone();
    let mine = all.into_iter().filter(|(m, _)| *m != n(1)).collect();
    check_logs(&mine).unwrap();
}

/// A member that asks for the state whenever it sends anything (always from epoch 0) gets it
/// with an exponential backoff: a handful of times in 20 periods, not 20.
#[test]
fn a_member_asking_for_the_state_over_and_over_is_answered_with_a_backoff() {
    use mir_runtime::adversary::{Adversary, AdversaryCtx, Outgoing};
    use mir_runtime::eventlog::{Monitor, Observed, Violation};
    use mir_runtime::stdevents::{Message, SendMessage};
    use protocols::ordering::iss::transfer::{StateRequest, StateResponse};
    use std::sync::Mutex;

    /// Counts node 0's STATE-RESPONSEs to node 1.
    struct Count(Arc<Mutex<u64>>);
    impl Monitor for Count {
        fn observe(&mut self, o: &Observed) -> Result<(), Violation> {
            if let Ok(Some(s)) = o.event.payload.decode::<SendMessage>() {
                let to_1 = s.destinations.contains(&NodeId::from_index(1));
                if o.node == NodeId::from_index(0)
                    && to_1
                    && s.message.payload.is::<StateResponse>()
                {
                    *self.0.lock().unwrap() += 1;
                }
            }
            Ok(())
        }
    }
    let n = NodeId::from_index;
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(22) });
    for me in ids() {
        // Periods of 100 ms, to keep the run short.
        let config =
            IssConfig { catch_up_period: Duration::from_millis(100), ..Default::default() };
        sim.add_node(node_with(&me, config, &outcome)).unwrap();
    }
    let ask = move |_: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
        if let Some(o) = out.first().cloned() {
            let message = Message::new("iss", StateRequest { epoch: 0 });
            out.push(Outgoing { to: n(0), message, ..o });
        }
    };
    sim.make_byzantine(&n(1), Adversary::new(ask)).unwrap();
    let answers = Arc::new(Mutex::new(0));
    sim.add_monitor(Count(answers.clone()));
    // Node 0 has a stable checkpoint within a period or two; then 20 periods.
    sim.run_for(Duration::from_millis(2200)).unwrap();
    let answers = *answers.lock().unwrap();
    assert!((1..=6).contains(&answers), "{answers} answers");
}
