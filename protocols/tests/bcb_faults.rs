//! BCB over perfect links under fault plans drawn from the seed: a faulty phase (a follower
//! crashes and restarts, partitions of every shape, one-way cuts, loss, duplication, drifting
//! timers), then healing, then a liveness phase. Agreement holds on every seed (checked online),
//! and every node that never crashed delivers after healing; a failure prints the one command
//! that reproduces it. `FAULT_SEEDS=10000 cargo test --release -p protocols --test bcb_faults`
//! for a longer sweep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::sim::{sweep, FaultPlan, FaultProfile, SimConfig, Simulation};
use mir_runtime::stdmodules::{PerfectLink, TestCrypto, Timer};
use mir_runtime::{Batch, ModuleResult, Node, Outbox, PassiveModule};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest, Deliver};
use protocols::monitors::AgreementMonitor;

type Delivered = Arc<Mutex<BTreeMap<NodeId, Vec<u8>>>>;

struct App {
    me: NodeId,
    leader: bool,
    delivered: Delivered,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() && self.leader {
                out.send(
                    &ModuleId::new("bcb"),
                    BroadcastRequest { data: b"despite faults".to_vec() },
                );
            } else if let Ok(Some(d)) = ev.payload.decode::<Deliver>() {
                self.delivered.lock().unwrap().insert(self.me.clone(), d.data);
            }
        }
        Ok(())
    }
}

fn seeds() -> u64 {
    std::env::var("FAULT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

/// One run of `seed`: Ok, or what went wrong with the plan printed.
fn run(seed: u64) -> Result<(), String> {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let delivered: Delivered = Arc::default();
    let modules = BcbModules {
        net: ModuleId::new("link"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in &ids {
        let (me, ids, modules, delivered) =
            (me.clone(), ids.clone(), modules.clone(), delivered.clone());
        // A restarted node starts a new link session, so its peers reset their duplicate filter.
        let session = Arc::new(AtomicU64::new(0));
        sim.add_restartable_node(move || {
            let bcb = Bcb::new(
                modules.clone(),
                b"faults".to_vec(),
                Voters::equal(ids.clone()),
                ids[0].clone(),
                me.clone(),
            );
            Node::builder(me.clone())
                .passive(
                    "app",
                    App { me: me.clone(), leader: me == ids[0], delivered: delivered.clone() },
                )
                .passive("crypto", TestCrypto::new(me.clone(), 1))
                .passive("bcb", DslModule::new(bcb))
                .passive("link", PerfectLink::new(me.clone(), session.fetch_add(1, Relaxed)))
                .active("timer", Timer::new())
        })
        .map_err(|e| e.to_string())?;
    }
    // The leader is protected: a restarted leader forgets what it proposed, which BCB (without a
    // WAL) cannot survive.
    let profile = FaultProfile { protect: vec![ids[0].clone()], ..FaultProfile::default() };
    let plan = FaultPlan::draw(seed, &ids, &profile);
    plan.schedule(&mut sim);
    // A restarted follower forgets it delivered (no WAL yet) and may deliver again: agreement,
    // not integrity, is what holds across restarts.
    sim.add_monitor(AgreementMonitor::across_restarts());
    sim.run_for(plan.healed_at()).map_err(|e| format!("{e}\n{plan}"))?;
    // Liveness: after healing, every node that never crashed delivers.
    let must: Vec<NodeId> =
        ids.iter().filter(|n| !plan.crashed_nodes().contains(n)).cloned().collect();
    let done = sim
        .run_until(Duration::from_secs(60), |_| {
            must.iter().all(|n| delivered.lock().unwrap().contains_key(n))
        })
        .map_err(|e| format!("{e}\n{plan}"))?;
    if !done {
        return Err(format!(
            "after healing, only {:?} delivered\n{plan}",
            delivered.lock().unwrap().keys().collect::<Vec<_>>()
        ));
    }
    Ok(())
}

#[test]
fn bcb_over_perfect_links_survives_random_fault_plans() {
    sweep(0..seeds(), "cargo test -p protocols --test bcb_faults", run);
}
