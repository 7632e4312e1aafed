//! The SMR system in the simulator (issue 17): the reference key-value store replicated by ISS
//! over the availability layer, through [`AppModule`]. Every node's store ends the same, every
//! transaction gets one receipt per node that applied it, with the same log position and result
//! everywhere, including under fault plans with crashes and restarts from the WAL (the store comes
//! back from a checkpoint's snapshot).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::sim::{sweep, FaultPlan, FaultProfile, SimConfig, Simulation};
use mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_runtime::wal::disk::SimDisk;
use mir_runtime::{Batch, Event, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::availability::mempool::{NewTransactions, TransactionsRejected};
use protocols::availability::Tx;
use protocols::ordering::iss::{self, IssConfig, NodeSettings};
use protocols::ordering::pbft::PbftConfig;
use protocols::smr::app::{AppModule, Applied, Restored};
use protocols::smr::kv::KvStore;
use protocols::smr::Application;

/// A store the test can read from outside the simulation.
#[derive(Clone, Default)]
struct SharedKv(Arc<Mutex<KvStore>>);

impl Application for SharedKv {
    fn apply(&mut self, tx: &Tx) -> Vec<u8> {
        self.0.lock().unwrap().apply(tx)
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.lock().unwrap().snapshot()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().restore(snapshot)
    }
}

/// (client, tx_no) → (sn, index, result).
type ReceiptMap = BTreeMap<(String, u64), (u64, u32, Vec<u8>)>;

/// What one node's receipts module saw.
#[derive(Default)]
struct Seen {
    /// (client, tx_no) → (sn, index, result), this incarnation.
    receipts: ReceiptMap,
    /// Receipts of earlier incarnations.
    earlier: Vec<ReceiptMap>,
    /// Transactions restored without receipts (state transfers, restarts).
    restored: u64,
    /// The store of this incarnation.
    store: SharedKv,
}

type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The receipts module: records [`Applied`] and [`Restored`].
struct Receipts {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for Receipts {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.get_mut(&self.me).expect("registered");
        for ev in events {
            if let Some(a) = ev.get::<Applied>() {
                for r in &a.receipts {
                    let key = (r.client.0.clone(), r.tx_no);
                    let old = seen.receipts.insert(key, (a.sn, r.index, r.result.clone()));
                    assert!(old.is_none(), "{}: two receipts for {:?}", self.me, r);
                }
            } else if let Some(r) = ev.get::<Restored>() {
                seen.restored += 1;
                let _ = r;
            } else if ev.get::<TransactionsRejected>().is_some() {
                // The workload stays in every window: nothing to do.
            }
        }
        Ok(())
    }
}

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

fn node(me: &NodeId, outcome: &Outcome, disk: &Arc<Mutex<SimDisk>>) -> NodeBuilder {
    disk.lock().unwrap().crash();
    let store = SharedKv::default();
    {
        let mut all = outcome.lock().unwrap();
        let seen = all.entry(me.clone()).or_default();
        let receipts = std::mem::take(&mut seen.receipts);
        if !receipts.is_empty() {
            seen.earlier.push(receipts);
        }
        seen.store = store.clone();
    }
    let membership: Vec<(NodeId, Weight)> = ids().into_iter().map(|n| (n, 1)).collect();
    let settings = NodeSettings {
        pbft: PbftConfig {
            sn_timeout: Duration::from_secs(1),
            segment_timeout: Some(Duration::from_secs(4)),
            view_change_resend: Duration::from_millis(200),
            done_resend: Duration::from_millis(200),
            catch_up_delay: Duration::from_millis(200),
            ..PbftConfig::default()
        },
        iss: IssConfig { segment_length: 2, ..IssConfig::default() },
        ..NodeSettings::default()
    };
    let app = AppModule::new(store, me.clone()).receipts_to(ModuleId::new("clients"));
    let b = Node::builder(me.clone())
        .passive("app", app)
        .passive("clients", Receipts { me: me.clone(), outcome: outcome.clone() })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .active("timer", Timer::new());
    let wal = mir_runtime::wal::Wal::new(disk.clone(), ModuleId::new(iss::names::ISS));
    iss::add_to_with_wal(b, me.clone(), membership, &settings, wal).unwrap()
}

/// Two clients' commands over five keys: puts, gets and deletes.
fn workload() -> Vec<Tx> {
    (0..2)
        .flat_map(|c| {
            (0..30u64).map(move |i| {
                let key = format!("k{}", (i * 7 + c) % 5);
                let cmd = match i % 3 {
                    0 => format!("put {key} v{c}.{i}"),
                    1 => format!("get {key}"),
                    _ => format!("del {key}"),
                };
                Tx::new(format!("client-{c}").as_str(), i, cmd)
            })
        })
        .collect()
}

/// Runs the store on four nodes under `plan` (if any) until every node applied the workload
/// (in receipts or restored state), then checks.
fn run(seed: u64, plan: Option<FaultPlan>) -> Result<(), String> {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for (i, me) in ids().into_iter().enumerate() {
        let disk = Arc::new(Mutex::new(SimDisk::new(seed * 16 + i as u64)));
        let o = outcome.clone();
        sim.add_restartable_node(move || node(&me, &o, &disk)).map_err(|e| e.to_string())?;
    }
    let txs = workload();
    for n in ids() {
        let ev = Event::new("clients", "mempool", NewTransactions { txs: txs.clone() });
        sim.inject(&n, vec![ev]).map_err(|e| e.to_string())?;
    }
    let describe = |p: &Option<FaultPlan>| p.as_ref().map(|p| p.to_string()).unwrap_or_default();
    if let Some(p) = &plan {
        p.schedule(&mut sim);
        sim.run_for(p.healed_at()).map_err(|e| format!("{e}\n{p}"))?;
    }
    // Done when every node holds the whole workload's effect: the same store as a node that
    // applied every transaction with a receipt.
    let total = txs.len();
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            let all = outcome.lock().unwrap();
            let complete: Vec<_> = all.values().filter(|s| s.receipts.len() == total).collect();
            let Some(reference) = complete.first() else { return false };
            let want = reference.store.snapshot();
            all.values().all(|s| s.store.snapshot() == want)
        })
        .map_err(|e| format!("{e}\n{}", describe(&plan)))?;
    let all = outcome.lock().unwrap();
    RESTORED.fetch_add(all.values().map(|s| s.restored).sum::<u64>() as usize, Relaxed);
    if !done {
        let counts: Vec<usize> = all.values().map(|s| s.receipts.len()).collect();
        return Err(format!("not done: receipts {counts:?} of {total}\n{}", describe(&plan)));
    }
    // The results are those of the transactions applied one by one in log order.
    let complete = all.values().find(|s| s.receipts.len() == total).expect("done");
    let mut in_order: Vec<_> = complete.receipts.iter().collect();
    in_order.sort_by_key(|(_, (sn, index, _))| (*sn, *index));
    let by_key: BTreeMap<(String, u64), &Tx> =
        txs.iter().map(|t| ((t.client.0.clone(), t.tx_no), t)).collect();
    let mut replay = KvStore::default();
    for (k, (_, _, result)) in in_order {
        if replay.apply(by_key[k]) != *result {
            return Err(format!("{k:?}: the receipt's result is not the log order's"));
        }
    }
    if replay.snapshot() != complete.store.snapshot() {
        return Err("the store is not the log order's".into());
    }
    // One position and one result per transaction, at every node and incarnation.
    type Position<'a> = (&'a NodeId, &'a (u64, u32, Vec<u8>));
    let mut first: BTreeMap<(String, u64), Position> = BTreeMap::new();
    for (n, s) in all.iter() {
        for r in s.earlier.iter().chain([&s.receipts]) {
            for (k, v) in r {
                match first.get(k) {
                    Some((m, w)) if *w != v => {
                        return Err(format!(
                            "{k:?}: node {n} has {v:?}, node {m} {w:?}\n{}",
                            describe(&plan)
                        ));
                    }
                    Some(_) => {}
                    None => {
                        first.insert(k.clone(), (n, v));
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_key_value_store_is_replicated() {
    run(1, None).unwrap();
}

/// Fault plans with a crash and restart from the WAL (the store comes back from a checkpoint's
/// snapshot): 30 seeds by default, `SMR_SEEDS` for more.
#[test]
fn the_key_value_store_survives_fault_plans_with_restarts() {
    let seeds = std::env::var("SMR_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    sweep(0..seeds, "cargo test -p protocols --test smr", |seed| {
        let profile = FaultProfile {
            faulty_phase: Duration::from_secs(3),
            crashes: 1,
            ..FaultProfile::default()
        };
        run(seed, Some(FaultPlan::draw(seed, &ids(), &profile)))
    });
    assert!(RESTORED.load(Relaxed) > 0, "no store came back from a checkpoint");
}

static RESTORED: AtomicUsize = AtomicUsize::new(0);
