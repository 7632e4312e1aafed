//! ISS over the availability layer, the whole pipeline in the simulator: transactions submitted
//! to every node's mempool → certificates proposed by each segment's leader (from the epoch's
//! availability instance) and verified by the followers → PBFT → ISS's log → the batch fetcher →
//! the application, with checkpoints (application state and client progress) at epoch ends.
//! Every node delivers the same batches, every transaction exactly once.

mod iss_pipeline;
use iss_pipeline::*;

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
fn a_crashed_node_does_not_lose_transactions() {
    // Node 3's segments end ⊥; the transactions every node holds are ordered by the others.
    check_buckets(&run(4, Mode::Bucketed, &[3], 2, 30));
}

#[test]
fn the_redundant_mode_orders_every_transaction_once_too() {
    // Every leader proposes anything; the batch fetcher removes what is ordered twice.
    run(5, Mode::Redundant, &[], 4, 50);
}
