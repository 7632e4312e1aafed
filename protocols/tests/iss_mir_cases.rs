//! Mir's acceptance tests, `TestIntegration/ISS/000…014` (`pkg/trantor/testing/smr_test.go`), in
//! this framework's terms: the whole stack (ISS over PBFT and the availability layer, the batch
//! fetcher, checkpoints) with Mir's parameters. Mir runs each case on a "fake" (in-process),
//! gRPC or simulated transport; here the fake and simulated cases run in the deterministic
//! simulator (each with a few seeds), and the gRPC cases (004–006) run over gRPC in
//! `examples/tests/iss.rs`. Case 010 ("loading WAL") tested a WAL Mir had removed: it is the
//! plain 10-transaction run here; restarts from our WAL are tested in `iss_wal.rs`.
//!
//! Every case checks Mir's `checkEventTraces`: every node delivers node 0's batches, and exactly
//! the submitted transactions, once each (every node injects the same ones, so duplicates are
//! removed). 013/014: weights `2^i·10^19` (node 3 holds most) or `2^(4−i)·10^19`, nodes 2 and 3
//! crashed (they send nothing but still receive): holding the supermajority, nothing is
//! delivered; holding a minority, every node, the crashed ones too, delivers every transaction.

mod iss_pipeline;
use std::time::Duration;

use iss_pipeline::*;

const SEEDS: u64 = 3;

fn case(weights: Vec<u128>, txs: u64, slow: &[usize], secs: u64) -> Case {
    Case {
        weights,
        txs,
        slow: slow.to_vec(),
        silent: vec![],
        duration: Duration::from_secs(secs),
        mode: Mode::Bucketed,
    }
}

fn equal(n: usize) -> Vec<u128> {
    vec![1; n]
}

/// The case in both modes: bucketed (this framework's default) and redundant (what Mir ran).
fn check(name: &str, c: &Case) {
    for mode in [Mode::Bucketed, Mode::Redundant] {
        for seed in 0..SEEDS {
            let seen = run_case(&Case { mode, ..c.clone() }, seed);
            let at = format!("{name}, {mode:?}, seed {seed}");
            check_traces(&seen, c.txs).unwrap_or_else(|e| panic!("{at}: {e}"));
            // The runs went on: every node delivered batches (empty ones when there is nothing).
            for (n, s) in &seen {
                assert!(!s.batches.is_empty(), "{at}: node {n} delivered nothing");
            }
        }
    }
}

#[test]
fn case_000_and_007_do_nothing_with_one_node() {
    check("000", &case(equal(1), 0, &[], 4));
    check("007", &case(equal(1), 0, &[], 4));
}

#[test]
fn case_001_and_008_do_nothing_with_four_nodes_one_slow() {
    check("001", &case(equal(4), 0, &[0], 20));
    check("008", &case(equal(4), 0, &[0], 20));
}

#[test]
fn case_002_009_010_ten_transactions_one_node() {
    for name in ["002", "009", "010"] {
        check(name, &case(equal(1), 10, &[], 4));
    }
}

/// 30 s where Mir gives 20: in redundant mode every leader proposes the same transactions, so
/// the 100 take three epochs, and with the slow node's segments (view changes after 4 s) the
/// third ends after 20 s.
#[test]
fn case_003_and_012_a_hundred_transactions_four_nodes_one_slow() {
    check("003", &case(equal(4), 100, &[0], 30));
    check("012", &case(equal(4), 100, &[0], 30));
}

#[test]
fn case_011_a_hundred_transactions_one_node() {
    check("011", &case(equal(1), 100, &[], 20));
}

/// Weights 2^i·10^19 for i = 0..4, or reversed.
fn powers(reverse: bool) -> Vec<u128> {
    (0..4u32).map(|i| (1u128 << if reverse { 4 - i } else { i }) * 10u128.pow(19)).collect()
}

#[test]
fn case_013_crashed_nodes_with_the_supermajority_of_weight_stop_everything() {
    for mode in [Mode::Bucketed, Mode::Redundant] {
        let c = Case { silent: vec![2, 3], mode, ..case(powers(false), 100, &[], 30) };
        for seed in 0..SEEDS {
            let seen = run_case(&c, seed);
            for (n, s) in &seen {
                assert_eq!(s.applied, 0, "{mode:?}, seed {seed}: node {n} delivered transactions");
                assert!(s.batches.iter().all(|b| b.txs.is_empty()), "{mode:?}, seed {seed}: {n}");
            }
        }
    }
}

/// Longer than Mir's 60 s: with Mir's timeouts (sn 4 s, segment 8 s, doubling per view) an epoch
/// with two silent leaders takes about 20 s (each silent segment needs two view changes when the
/// next primary is silent too). Redundant mode proposes the same transactions at every leader,
/// so the 100 take three epochs (90 s); with buckets, the requests of the silent leaders'
/// buckets wait until their buckets move to nodes 0 or 1 (120 s).
#[test]
fn case_014_crashed_nodes_with_a_minority_of_weight_change_nothing() {
    for (mode, secs) in [(Mode::Redundant, 90), (Mode::Bucketed, 120)] {
        let c = Case { silent: vec![2, 3], mode, ..case(powers(true), 100, &[], secs) };
        for seed in 0..SEEDS {
            let seen = run_case(&c, seed);
            // All four deliver every transaction once: the silent ones receive.
            check_traces(&seen, 100).unwrap_or_else(|e| panic!("014, {mode:?}, seed {seed}: {e}"));
        }
    }
}
