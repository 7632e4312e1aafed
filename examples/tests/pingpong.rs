//! The pingpong example's modules, in the simulator: every ping is answered, deterministically.

use std::sync::mpsc;
use std::time::Duration;

use mir_runtime::sim::{SimConfig, Simulation};

fn run(seed: u64, dsl: bool) -> (Vec<String>, String) {
    let (tx, rx) = mpsc::channel();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    let (n0, n1) = examples::pingpong::two_nodes(Duration::from_millis(100), 10, tx, dsl);
    sim.add_node(n0).unwrap();
    sim.add_node(n1).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    (rx.try_iter().collect(), sim.digest().to_string())
}

#[test]
fn every_ping_is_answered_and_runs_repeat() {
    let (lines, digest) = run(3, false);
    assert_eq!(lines, (1..=10).map(|n| format!("pong {n} from node 1")).collect::<Vec<_>>());
    assert_eq!(run(3, false).1, digest);
    assert_ne!(run(4, false).1, digest, "another seed, other latencies");
}

/// The DSL and hand-written modules make the same events: the same seed gives the same digest.
#[test]
fn the_dsl_version_runs_bit_for_bit_like_the_hand_written_one() {
    for seed in 0..20 {
        assert_eq!(run(seed, true), run(seed, false), "seed {seed}");
    }
}
