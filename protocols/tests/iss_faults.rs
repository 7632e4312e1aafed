//! ISS under random fault plans (`mir_runtime::sim::FaultPlan`: lossy, duplicating and
//! reordering links, partitions that heal, timer drift, and a node that crashes and restarts
//! from scratch): no two nodes' logs differ (a restarted node's earlier logs included), every
//! application's state matches its log, and after healing every node delivers the epochs that
//! follow. Nodes keep the default retention (one epoch), so a node cut off or restarted for
//! several epochs comes back through state transfer.
//!
//! Without a write-ahead log (issue 16) a restarted node forgets what it signed, so it may act
//! like one Byzantine node: the plans crash one node (f = 1). 100 seeds in the default suite;
//! more with `ISS_FAULT_SEEDS=2000 cargo test --release -p protocols --test iss_faults`.

mod iss_support;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use iss_support::*;
use mir_runtime::sim::{sweep, FaultPlan, FaultProfile, SimConfig, Simulation};
use protocols::ordering::iss::IssConfig;

fn run(seed: u64) -> Result<(), String> {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in ids() {
        let o = outcome.clone();
        let build = move || node_with(&me, IssConfig::default(), &o);
        sim.add_restartable_node(build).map_err(|e| e.to_string())?;
    }
    let profile = FaultProfile { faulty_phase: Duration::from_secs(3), ..FaultProfile::default() };
    let plan = FaultPlan::draw(seed, &ids(), &profile);
    plan.schedule(&mut sim);
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    // After healing: every node gets two more epochs (16 entries each) beyond the longest log.
    let next = |s: &Seen| s.log.last().map_or(0, |e| e.sn + 1);
    let target = outcome.lock().unwrap().values().map(next).max().unwrap_or(0) + 32;
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            ids().iter().all(|n| all.get(n).is_some_and(|s| next(s) >= target))
        })
        .map_err(|e| format!("{e}\n{plan}"))?;
    let all = outcome.lock().unwrap();
    if !done {
        let at: Vec<u64> = ids().iter().map(|n| all.get(n).map_or(0, next)).collect();
        return Err(format!("not live after healing: next sns {at:?}, target {target}\n{plan}"));
    }
    check_logs(&all).map_err(|e| format!("{e}\n{plan}"))?;
    let transfers: usize = all.values().map(|s| s.restored.len()).sum();
    TRANSFERS.fetch_add(transfers, Ordering::Relaxed);
    RESTARTS.fetch_add(all.values().map(|s| s.earlier.len()).sum(), Ordering::Relaxed);
    Ok(())
}

static TRANSFERS: AtomicUsize = AtomicUsize::new(0);
static RESTARTS: AtomicUsize = AtomicUsize::new(0);

#[test]
fn iss_keeps_one_log_under_random_fault_plans() {
    let seeds = std::env::var("ISS_FAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    sweep(0..seeds, "cargo test -p protocols --test iss_faults", run);
    let (transfers, restarts) =
        (TRANSFERS.load(Ordering::Relaxed), RESTARTS.load(Ordering::Relaxed));
    println!("{seeds} seeds: {restarts} restarts, {transfers} state transfers");
    // The sweep exercised what it is for.
    assert!(restarts > 0 && transfers > 0, "{restarts} restarts, {transfers} state transfers");
}
