//! ISS under random fault plans (`mir_runtime::sim::FaultPlan`: lossy, duplicating and
//! reordering links, partitions that heal, timer drift; no crashes: a restarted node needs the
//! state transfer of a later step): no two nodes' logs differ, and after healing every node
//! delivers the epochs that follow.
//!
//! Until state transfer exists, a node cut off for several epochs catches up through the
//! instances the others retain, so the test retains every epoch. 100 seeds in the default suite;
//! more with `ISS_FAULT_SEEDS=2000 cargo test --release -p protocols --test iss_faults`.

mod iss_support;
use std::sync::Arc;
use std::time::Duration;

use iss_support::*;
use mir_runtime::sim::{sweep, FaultPlan, FaultProfile, SimConfig, Simulation};
use protocols::ordering::iss::IssConfig;

fn run(seed: u64) -> Result<(), String> {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    let config = IssConfig { retained_epochs: u64::MAX, ..IssConfig::default() };
    for me in ids() {
        sim.add_node(node_with(&me, config.clone(), &outcome)).map_err(|e| e.to_string())?;
    }
    let profile = FaultProfile {
        crashes: 0,
        faulty_phase: Duration::from_secs(3),
        ..FaultProfile::default()
    };
    let plan = FaultPlan::draw(seed, &ids(), &profile);
    plan.schedule(&mut sim);
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    // After healing: every node gets two more epochs (16 entries each) beyond the longest log.
    let target = outcome.lock().unwrap().values().map(|s| s.log.len()).max().unwrap_or(0) + 32;
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            ids().iter().all(|n| all.get(n).is_some_and(|s| s.log.len() >= target))
        })
        .map_err(|e| format!("{e}\n{plan}"))?;
    let all = outcome.lock().unwrap();
    if !done {
        let lens: Vec<usize> =
            ids().iter().map(|n| all.get(n).map_or(0, |s| s.log.len())).collect();
        return Err(format!(
            "not live after healing: log lengths {lens:?}, target {target}\n{plan}"
        ));
    }
    let first = &all[&ids()[0]].log;
    for n in ids() {
        let log = &all[&n].log;
        let k = log.len().min(first.len());
        if log[..k] != first[..k] {
            return Err(format!("node {n}'s log differs from node 0's\n{plan}"));
        }
    }
    Ok(())
}

#[test]
fn iss_keeps_one_log_under_random_fault_plans() {
    let seeds = std::env::var("ISS_FAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    sweep(0..seeds, "cargo test -p protocols --test iss_faults", run);
}
