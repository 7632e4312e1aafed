//! ISS over the availability layer, the whole pipeline in the simulator: transactions submitted
//! to every node's mempool → certificates proposed by each segment's leader (from the epoch's
//! availability instance) and verified by the followers → PBFT → ISS's log → the batch fetcher →
//! the application, with checkpoints (application state and client progress) at epoch ends.
//! Every node delivers the same batches, every transaction exactly once.

mod iss_pipeline;
use iss_pipeline::*;

use std::sync::Arc;
use std::time::Duration;

use mir_runtime::Event;
use protocols::availability::mempool::NewTransactions;
use protocols::availability::Tx;

#[test]
fn iss_orders_transactions_through_the_availability_layer() {
    for seed in 0..3 {
        let seen = run(seed, Mode::Bucketed, &[], 4, 50);
        check_buckets(&seen);
        // Epochs went by with stable checkpoints, the same at every node.
        let first = &seen.values().next().unwrap().stable;
        assert!(!first.is_empty(), "seed {seed}: no stable checkpoint");
        for s in seen.values() {
            let k = s.stable.len().min(first.len());
            assert_eq!(s.stable[..k], first[..k]);
        }
    }
}

#[test]
fn the_batch_database_is_garbage_collected_with_the_epochs() {
    // A batch DB holding a few batches, and many times that in transactions over the run: the
    // batches of garbage-collected epochs must go, or the DB fills, signers refuse to store,
    // and ordering stops (it did: nothing garbage-collected the batch DB under ISS).
    use mir_runtime::sim::{SimConfig, Simulation};
    use protocols::availability::{mempool::MempoolParams, msc::MscParams, Config};

    let availability = Config {
        mempool: MempoolParams { max_payload_in_batch: 2048, ..MempoolParams::default() },
        msc: MscParams { max_payload_in_batch: 2048, ..MscParams::default() },
        batchdb_capacity_bytes: Some(16 << 10),
        ..Config::default()
    };
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(21) });
    for me in ids() {
        sim.add_node(node_with_availability(&me, &outcome, availability.clone())).unwrap();
    }
    let (waves, per_wave) = (16u64, 200u64);
    for w in 0..waves {
        let txs: Vec<Tx> = (w * per_wave..(w + 1) * per_wave)
            .map(|i| Tx::new(format!("client-{}", i % 4).as_str(), i / 4, format!("tx {i:06}")))
            .collect();
        for n in ids() {
            let ev = Event::new("app", "mempool", NewTransactions { txs: txs.clone() });
            sim.inject(&n, vec![ev]).unwrap();
        }
        sim.run_for(Duration::from_secs(2)).unwrap();
    }
    let total = (waves * per_wave) as usize;
    let delivered = |o: &Outcome| -> Vec<usize> {
        let all = o.lock().unwrap();
        ids()
            .iter()
            .map(|n| all.get(n).map_or(0, |s| s.batches.iter().map(|b| b.txs.len()).sum()))
            .collect()
    };
    let done = sim
        .run_until(Duration::from_secs(120), |_| delivered(&outcome).iter().all(|d| *d == total))
        .unwrap();
    assert!(done, "delivered {:?} of {total}", delivered(&outcome));
    let bytes: usize = {
        let all = outcome.lock().unwrap();
        all.values().next().map_or(0, |s| s.batches.iter().flat_map(|b| &b.txs).map(Tx::size).sum())
    };
    assert!(
        bytes > 3 * (16 << 10),
        "the run ordered only {bytes} bytes: it does not test the bound"
    );
}

#[test]
fn a_crashed_node_does_not_lose_transactions() {
    // Node 3's segments end ⊥; the transactions every node holds are ordered by the others.
    check_buckets(&run(4, Mode::Bucketed, &[3], 2, 30));
}

#[test]
fn the_redundant_mode_orders_every_transaction_once_too() {
    // Every leader proposes anything; the batch fetcher removes what is ordered twice.
    run(5, Mode::Redundant, &[], 4, 50);
}

#[test]
fn a_restarted_node_catches_up_by_state_transfer_and_orders_with_the_rest() {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use mir_runtime::sim::{Fault, SimConfig, Simulation};
    use mir_runtime::Event;
    use protocols::availability::mempool::NewTransactions;
    use protocols::availability::Tx;

    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(11) });
    for me in ids() {
        let o = outcome.clone();
        sim.add_restartable_node(move || node(&me, &o, Mode::Bucketed)).unwrap();
    }
    let submit = |sim: &mut Simulation, n: &NodeId, from: u64, to: u64| {
        let txs: Vec<Tx> = (from..to).map(|i| Tx::new("client", i, format!("tx {i}"))).collect();
        let ev = Event::new("app", "mempool", NewTransactions { txs });
        sim.inject(n, vec![ev]).unwrap();
    };
    let n = NodeId::from_index;
    let (total, restarted) = (60u64, n(2));
    // Transactions 0..30 before the crash, 30..60 while node 2 is down and after it is back.
    for m in ids() {
        submit(&mut sim, &m, 0, 30);
    }
    sim.run_for(Duration::from_secs(2)).unwrap();
    sim.apply_fault(Fault::Crash(restarted.clone())).unwrap();
    for m in ids().iter().filter(|m| **m != restarted) {
        submit(&mut sim, m, 30, 60);
    }
    // Down long enough for the others to leave its epoch behind (they retain one epoch).
    let stable = |o: &Outcome, m: &NodeId| o.lock().unwrap().get(m).map_or(0, |s| s.stable.len());
    let before = stable(&outcome, &n(0));
    sim.run_until(Duration::from_secs(120), |_| stable(&outcome, &n(0)) >= before + 3).unwrap();
    sim.apply_fault(Fault::Restart(restarted.clone())).unwrap();
    for m in ids() {
        submit(&mut sim, &m, 30, 60); // the client resubmits to every node (duplicates refused)
    }
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            ids().iter().all(|m| all.get(m).is_some_and(|s| s.applied >= total))
                && all[&restarted].stable.len() >= 2
        })
        .unwrap();
    let all = outcome.lock().unwrap().clone();
    assert!(done, "{:?}", all.iter().map(|(m, s)| (m, s.applied)).collect::<Vec<_>>());
    let s = &all[&restarted];
    assert!(!s.restored.is_empty(), "node 2 came back without a state transfer");
    // Every node applied every transaction once; the restarted one, those after the checkpoint
    // it restored, none of them in the restored client progress.
    for (m, seen) in &all {
        assert_eq!(seen.applied, total, "node {m}");
        let ids: Vec<u64> =
            seen.batches.iter().flat_map(|b| b.txs.iter().map(|t| t.tx_no)).collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "node {m} delivered a transaction twice");
    }
    let (_, progress) = s.restored.last().unwrap();
    let client = protocols::availability::ClientId("client".into());
    for b in &s.batches {
        for t in &b.txs {
            assert!(!progress.contains(&client, t.tx_no), "tx {} delivered again", t.tx_no);
        }
    }
    // The restarted node's batches after the restore are the others'.
    let others = &all[&n(0)].batches;
    for b in &s.batches {
        assert_eq!(others.iter().find(|o| o.sn == b.sn), Some(b), "sn {}", b.sn);
    }
}
