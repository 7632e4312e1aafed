//! PBFT under network faults and with weighted memberships, in the simulator.
//!
//! * Random fault plans (`mir_runtime::sim::FaultPlan`): lossy and duplicating links, reordering
//!   (random latency), partitions that heal, timer drift, and one node crashing and restarting
//!   (without a write-ahead log: it forgets, issue 16). Safety all along; after healing, every
//!   node delivers every sn. 1,000 seeds in the default suite; more with
//!   `PBFT_FAULT_SEEDS=10000 cargo test --release -p protocols --test pbft_faults`.
//! * Mir's integration tests 013 and 014: weights 2^i·10^19; the nodes holding most of the weight
//!   silent stops progress, holding a minority does not.

mod pbft_support;
use mir_runtime::adversary::{Adversary, Silence};
use pbft_support::*;

fn run_plan(seed: u64) -> Result<(), String> {
    let setup = Setup { restartable: true, ..Setup::new(seed, 4) };
    let ids = setup.ids();
    let (mut sim, out) = setup.build();
    let plan = FaultPlan::draw(seed, &ids, &FaultProfile::default());
    plan.schedule(&mut sim);
    // A restarted node forgets it delivered and delivers again: agreement is what holds across
    // restarts (integrity needs the WAL, issue 16).
    sim.add_monitor(SbMonitor::default().across_restarts());
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    let done = sim
        .run_until(Duration::from_secs(600), |_| all_delivered(&out, &ids, &setup.sns))
        .map_err(|e| format!("{e}\n{plan}"))?;
    sim.finish_monitors().map_err(|e| format!("{e}\n{plan}"))?;
    if !done {
        return Err(format!(
            "not live after healing at {}: {:?}\n{plan}",
            sim.now(),
            out.lock().unwrap()
        ));
    }
    // Nodes that never crashed deliver each sn once.
    let steady: Vec<NodeId> =
        ids.iter().filter(|n| !plan.crashed_nodes().contains(n)).cloned().collect();
    check_safety(&out, &steady).map(|_| ()).map_err(|e| format!("{e}\n{plan}"))
}

#[test]
fn pbft_survives_random_fault_plans() {
    sweep(
        0..seeds("PBFT_FAULT_SEEDS", 1000),
        "cargo test -p protocols --test pbft_faults pbft_survives_random_fault_plans",
        run_plan,
    );
}

/// Weights 2^i·10^19 (`reverse`: 2^(4−i)·10^19); nodes 2 and 3 send nothing (they still
/// receive). Returns what each node delivered after 30 s.
fn weighted(reverse: bool) -> (Vec<NodeId>, Outcome) {
    let e19: Weight = 10_000_000_000_000_000_000;
    let weights =
        (0..4u32).map(|i| if reverse { (1 << (4 - i)) * e19 } else { (1 << i) * e19 }).collect();
    let setup = Setup { weights, ..Setup::new(13, 4) };
    let ids = setup.ids();
    let (mut sim, out) = setup.build();
    sim.add_monitor(SbMonitor::default());
    for n in &ids[2..] {
        sim.make_byzantine(n, Adversary::new(Silence)).unwrap();
    }
    sim.run_for(Duration::from_secs(30)).unwrap();
    sim.finish_monitors().unwrap();
    (ids, out)
}

#[test]
fn silent_nodes_holding_most_of_the_weight_stop_progress() {
    // Mir's test 013: node 3 alone weighs 8·10^19 of 15·10^19.
    let (_, out) = weighted(false);
    let all = out.lock().unwrap();
    assert!(all.values().all(|s| s.delivered.is_empty()), "{all:?}");
}

#[test]
fn silent_nodes_holding_a_minority_of_the_weight_do_not() {
    // Mir's test 014: nodes 2 and 3 weigh 6·10^19 of 30·10^19; every node delivers every sn
    // (the silent ones too: they receive), each once, with the leader's values.
    let (ids, out) = weighted(true);
    let setup = Setup::new(13, 4);
    assert!(all_delivered(&out, &ids, &setup.sns), "{:?}", out.lock().unwrap());
    let decided = check_safety(&out, &ids).unwrap();
    assert!(decided.iter().all(|(sn, v)| *v == Some(value_for(*sn))));
}
