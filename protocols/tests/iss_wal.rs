//! ISS with the write-ahead log (issue 16, `docs/recovery.md`): nodes that crash and restart
//! from their WAL on a simulated disk (unsynced writes lost, kept in part or torn) keep every
//! promise they made, keep one log with the others, and go on.
//!
//! Every run has the [`NoEquivocation`] monitor: no node, across all its restarts, sends two
//! different PRE-PREPAREs, PREPAREs or COMMITs for one instance, sn and view. A restarted
//! leader's source proposes other values than before (the test source numbers incarnations), so
//! a node that forgot what it proposed would be caught.
//!
//! * `a_crash_at_every_wal_write_{before,after}_its_sync`: for each WAL write of node 0 in a
//!   short run, crash it right after that write (before the write's sync; or after it, before
//!   what the write released leaves), restart it, and check the run.
//! * `random_crashes_and_restarts`: fault plans of the adversary layer with three crash
//!   episodes (of different nodes, possibly overlapping: more than f down at once) and lossy
//!   links, partitions and clock drift; `ISS_WAL_SEEDS` for more.
//! * `the_whole_pipeline_under_random_crashes`: the same with the availability layer and
//!   clients' transactions (the batch database logs batches before vouching for them): every
//!   node applies every transaction exactly once, and every sn holds the same batch everywhere,
//!   over all restarts; `ISS_WAL_PIPELINE_SEEDS` for more.

mod iss_pipeline;
mod iss_support;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iss_support::*;
use mir_runtime::sim::{sweep, Fault, FaultPlan, FaultProfile, SimConfig, Simulation};
use protocols::ordering::iss::IssConfig;

fn config() -> IssConfig {
    IssConfig { segment_length: 2, ..IssConfig::default() }
}

/// Four nodes with WALs (disks seeded from `seed`) and the equivocation monitor.
fn cluster(seed: u64, outcome: &Outcome) -> (Simulation, Vec<WalDisk>, Arc<Mutex<u64>>) {
    cluster_with(seed, outcome, None)
}

/// [`cluster`] where node `amnesiac` (if any) loses its disk at every restart and rejoins.
fn cluster_with(
    seed: u64,
    outcome: &Outcome,
    amnesiac: Option<usize>,
) -> (Simulation, Vec<WalDisk>, Arc<Mutex<u64>>) {
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    let mut disks = Vec::new();
    for (i, me) in ids().into_iter().enumerate() {
        let disk = if amnesiac == Some(i) {
            WalDisk::amnesiac(seed * 16 + i as u64)
        } else {
            WalDisk::new(seed * 16 + i as u64)
        };
        disks.push(disk.clone());
        let o = outcome.clone();
        sim.add_restartable_node(move || node_with_wal(&me, config(), &o, &disk)).unwrap();
    }
    let monitor = NoEquivocation::default();
    let checked = monitor.checked.clone();
    sim.add_monitor(monitor);
    (sim, disks, checked)
}

fn next(s: &Seen) -> u64 {
    s.log.last().map_or(0, |e| e.sn + 1)
}

/// Runs until every node's log reaches `target` sns (5 minutes of simulated time at most), then
/// checks the logs.
fn finish(sim: &mut Simulation, outcome: &Outcome, target: u64) -> Result<(), String> {
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            ids().iter().all(|n| all.get(n).is_some_and(|s| next(s) >= target))
        })
        .map_err(|e| e.to_string())?;
    let all = outcome.lock().unwrap();
    if !done {
        let at: Vec<u64> = ids().iter().map(|n| all.get(n).map_or(0, next)).collect();
        return Err(format!("not live: next sns {at:?}, target {target}"));
    }
    check_logs(&all)
}

/// The short run: every node delivers two epochs (16 sns) and a stable checkpoint.
const SHORT: u64 = 16;

/// WAL writes of node 0 in the short run without a crash.
fn writes_of_node0() -> usize {
    let outcome: Outcome = Arc::default();
    let (mut sim, disks, _) = cluster(1, &outcome);
    finish(&mut sim, &outcome, SHORT).unwrap();
    disks[0].appends.load(Relaxed)
}

/// A run in which node 0 crashes right after its `k`-th WAL write (`before_sync`: the write is
/// not synced) and restarts 300 ms later.
fn crash_at(k: usize, before_sync: bool) -> Result<(), String> {
    crash_at_with(k, before_sync, false)
}

/// [`crash_at`]; `amnesia`: node 0 restarts on an empty disk (and rejoins).
fn crash_at_with(k: usize, before_sync: bool, amnesia: bool) -> Result<(), String> {
    let outcome: Outcome = Arc::default();
    let (mut sim, disks, checked) = cluster_with(1, &outcome, amnesia.then_some(0));
    let n0 = ids()[0].clone();
    if before_sync {
        disks[0].freeze_at.store(k, Relaxed);
    }
    // Step until the write happened, then crash at once: what its step released is dropped
    // with the node's queues.
    while disks[0].appends.load(Relaxed) < k {
        if !sim.step().map_err(|e| e.to_string())? {
            return Err(format!("the run ended before write {k}"));
        }
    }
    sim.apply_fault(Fault::Crash(n0.clone())).map_err(|e| e.to_string())?;
    let at = sim.now().saturating_since(mir_runtime::Time::ZERO) + Duration::from_millis(300);
    sim.schedule_fault(at, Fault::Restart(n0));
    finish(&mut sim, &outcome, 2 * SHORT)?;
    if *checked.lock().unwrap() == 0 {
        return Err("the monitor saw no message".into());
    }
    if amnesia && outcome.lock().unwrap()[&ids()[0]].restored.is_empty() {
        return Err("node 0 lost its disk and did not rejoin by state transfer".into());
    }
    Ok(())
}

/// Crashes before the write's sync.
#[test]
fn a_crash_at_every_wal_write_before_its_sync() {
    crash_sweep(true);
}

/// Crashes after the write's sync, before what it released leaves.
#[test]
fn a_crash_at_every_wal_write_after_its_sync() {
    crash_sweep(false);
}

fn crash_sweep(before_sync: bool) {
    let writes = writes_of_node0();
    assert!(writes > 20, "node 0 wrote only {writes} times in the reference run");
    let step = std::env::var("ISS_WAL_SWEEP_STEP").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let positions: Vec<usize> = (1..=writes).step_by(step).collect();
    for &k in &positions {
        if let Err(e) = crash_at(k, before_sync) {
            panic!("crash after write {k} (before its sync: {before_sync}): {e}");
        }
    }
    println!(
        "{} crash positions of {writes} writes (before the sync: {before_sync})",
        positions.len()
    );
}

/// Amnesia at every write: node 0 crashes after each of its WAL writes (before the sync) and
/// restarts on an empty disk, with `rejoin`: it acts in no epoch it may have acted in, so the
/// monitor sees no contradiction (without `rejoin` it fails at write 3, the second position), and it catches
/// up by state transfer. Every other position by default (`ISS_WAL_SWEEP_STEP`).
#[test]
fn amnesia_at_every_wal_write() {
    let writes = writes_of_node0();
    let step = std::env::var("ISS_WAL_SWEEP_STEP").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    for k in (1..=writes).step_by(step) {
        if let Err(e) = crash_at_with(k, true, true) {
            panic!("amnesia after write {k}: {e}");
        }
    }
}

static RESTARTS: AtomicUsize = AtomicUsize::new(0);

fn random_plan(seed: u64) -> Result<(), String> {
    let outcome: Outcome = Arc::default();
    let (mut sim, disks, _) = cluster(seed, &outcome);
    let profile = FaultProfile {
        faulty_phase: Duration::from_secs(3),
        crashes: 3,
        ..FaultProfile::default()
    };
    let plan = FaultPlan::draw(seed, &ids(), &profile);
    plan.schedule(&mut sim);
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    let target = outcome.lock().unwrap().values().map(next).max().unwrap_or(0) + 16;
    finish(&mut sim, &outcome, target).map_err(|e| format!("{e}\n{plan}"))?;
    let restarts: usize = disks.iter().map(|d| d.restarts.load(Relaxed) - 1).sum();
    RESTARTS.fetch_add(restarts, Relaxed);
    Ok(())
}

/// A random plan (three crash episodes) in which one of the crashed nodes loses its disk and
/// rejoins: one log, no contradiction, and it rejoined by state transfer.
fn amnesia_plan(seed: u64) -> Result<(), String> {
    let profile = FaultProfile {
        faulty_phase: Duration::from_secs(3),
        crashes: 3,
        ..FaultProfile::default()
    };
    let plan = FaultPlan::draw(seed, &ids(), &profile);
    let crashed = plan.crashed_nodes();
    let lost = crashed[seed as usize % crashed.len()].clone();
    let index = ids().iter().position(|n| *n == lost);
    let outcome: Outcome = Arc::default();
    let (mut sim, _, _) = cluster_with(seed, &outcome, index);
    plan.schedule(&mut sim);
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    let target = outcome.lock().unwrap().values().map(next).max().unwrap_or(0) + 16;
    finish(&mut sim, &outcome, target)
        .map_err(|e| format!("{e} ({lost} lost its disk)\n{plan}"))?;
    if outcome.lock().unwrap()[&lost].restored.is_empty() {
        return Err(format!("{lost} lost its disk and did not rejoin by state transfer\n{plan}"));
    }
    Ok(())
}

/// Amnesia under random plans: 100 seeds by default, `ISS_AMNESIA_SEEDS` for more.
#[test]
fn amnesia_under_random_plans() {
    let seeds = std::env::var("ISS_AMNESIA_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    sweep(0..seeds, "cargo test -p protocols --test iss_wal amnesia_under", amnesia_plan);
}

/// The seeds (1,000 by default, `ISS_WAL_SEEDS`), in two halves that run in parallel.
fn random_seeds(half: u64) -> std::ops::Range<u64> {
    let seeds = std::env::var("ISS_WAL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    if half == 0 {
        0..seeds / 2
    } else {
        seeds / 2..seeds
    }
}

#[test]
fn random_crashes_and_restarts() {
    sweep(random_seeds(0), "cargo test -p protocols --test iss_wal random", random_plan);
    assert!(RESTARTS.load(Relaxed) > 0);
}

#[test]
fn random_crashes_and_restarts_second_half() {
    sweep(random_seeds(1), "cargo test -p protocols --test iss_wal random", random_plan);
    assert!(RESTARTS.load(Relaxed) > 0);
}

fn pipeline_plan(seed: u64) -> Result<(), String> {
    use iss_pipeline as p;
    use mir_runtime::wal::disk::SimDisk;
    use protocols::availability::{mempool::NewTransactions, Tx};
    let outcome: p::Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for (i, me) in p::ids().into_iter().enumerate() {
        let disk = Arc::new(Mutex::new(SimDisk::new(seed * 16 + i as u64)));
        let o = outcome.clone();
        sim.add_restartable_node(move || p::node_with_wal(&me, &o, p::Mode::Bucketed, &disk))
            .map_err(|e| e.to_string())?;
    }
    sim.add_monitor(NoEquivocation::default());
    let txs: Vec<Tx> = (0..2)
        .flat_map(|c| (0..20).map(move |i| Tx::new(format!("client-{c}").as_str(), i, "tx")))
        .collect();
    let total = txs.len() as u64;
    for n in p::ids() {
        let ev = mir_runtime::Event::new("app", "mempool", NewTransactions { txs: txs.clone() });
        sim.inject(&n, vec![ev]).map_err(|e| e.to_string())?;
    }
    let profile = FaultProfile {
        faulty_phase: Duration::from_secs(3),
        crashes: 2,
        ..FaultProfile::default()
    };
    let plan = FaultPlan::draw(seed, &p::ids(), &profile);
    plan.schedule(&mut sim);
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            p::ids().iter().all(|n| all.get(n).is_some_and(|s| s.applied == total))
        })
        .map_err(|e| format!("{e}\n{plan}"))?;
    let all = outcome.lock().unwrap();
    if !done {
        let at: Vec<u64> = p::ids().iter().map(|n| all.get(n).map_or(0, |s| s.applied)).collect();
        return Err(format!("applied {at:?} of {total}\n{plan}"));
    }
    // Every sn holds the same batch at every node, over all its incarnations; no node applied
    // a transaction twice since its last restart.
    let mut by_sn: std::collections::BTreeMap<u64, (NodeId, Vec<Tx>)> = Default::default();
    for (n, s) in all.iter() {
        for b in s.earlier.iter().flatten().chain(&s.batches) {
            match by_sn.get(&b.sn) {
                Some((m, txs)) if *txs != b.txs => {
                    return Err(format!("sn {}: node {n} and node {m} differ\n{plan}", b.sn));
                }
                Some(_) => {}
                None => {
                    by_sn.insert(b.sn, (n.clone(), b.txs.clone()));
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in s.batches.iter().flat_map(|b| &b.txs) {
            if !seen.insert((t.client.0.clone(), t.tx_no)) {
                return Err(format!("node {n} applied {t:?} twice\n{plan}"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_whole_pipeline_under_random_crashes() {
    let seeds =
        std::env::var("ISS_WAL_PIPELINE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    sweep(0..seeds, "cargo test -p protocols --test iss_wal pipeline", pipeline_plan);
}
