//! Reconfiguration in the simulator (issue 17): the key-value store decides the membership with
//! `add-node` and `remove-node` transactions, under load and fault plans (crashes with restarts
//! from the WAL, partitions, loss, duplication, drift). The membership grows 4 → 5 → 7 and
//! shrinks back to 4 (nodes 5, 6 and an original member, 0, leave). New nodes join by state
//! transfer; removed nodes leave once the checkpoint of their last epoch is stable.
//!
//! Every seed: every node (and every incarnation) gives each transaction one log position and one
//! result, the results are those of the log order, the final members hold the same store, every
//! joiner applied batches as a member, every removed node left.
//!
//! 6 seeds in the default suite; `SMR_RECONFIG_SEEDS=100 cargo test --release -p protocols
//! --test smr_reconfig` for more; `SMR_RECONFIG_EPOCHS` runs the long test (nodes joining and
//! leaving over at least that many epochs, with a fault plan per round).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::{Member, Membership};
use mir_runtime::sim::{sweep, FaultPlan, FaultProfile, SimConfig, Simulation};
use mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_runtime::wal::disk::SimDisk;
use mir_runtime::{Batch, Event, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::availability::mempool::NewTransactions;
use protocols::availability::Tx;
use protocols::ordering::iss::reconfig::Left;
use protocols::ordering::iss::{self, IssConfig, NodeSettings};
use protocols::ordering::pbft::PbftConfig;
use protocols::smr::app::{AppModule, Applied, Restored};
use protocols::smr::kv::KvStore;
use protocols::smr::Application;

const COMMAND: &str = "cargo test -p protocols --test smr_reconfig";

/// A store the test can read from outside the simulation.
#[derive(Clone)]
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
    fn membership(&self) -> Option<Vec<Member>> {
        self.0.lock().unwrap().membership()
    }
}

/// (client, tx_no) → (sn, index, result).
type ReceiptMap = BTreeMap<(String, u64), (u64, u32, Vec<u8>)>;

/// What one node saw, over its incarnations.
#[derive(Default)]
struct Seen {
    receipts: ReceiptMap,
    earlier: Vec<ReceiptMap>,
    /// Batches applied (any incarnation).
    batches: u64,
    /// State transfers and restarts.
    restored: u64,
    left: bool,
    store: Option<SharedKv>,
}

type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

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
                seen.batches += 1;
                for r in &a.receipts {
                    let key = (r.client.0.clone(), r.tx_no);
                    let old = seen.receipts.insert(key, (a.sn, r.index, r.result.clone()));
                    assert!(old.is_none(), "{}: two receipts for {:?}", self.me, r);
                }
            } else if ev.get::<Restored>().is_some() {
                seen.restored += 1;
            } else if ev.get::<Left>().is_some() {
                seen.left = true;
            }
        }
        Ok(())
    }
}

fn member(i: usize) -> Member {
    let id = NodeId::from_index(i);
    NodeKeys::test(1, &id).member(id, ([127, 0, 0, 1], 7000 + i as u16).into(), 1)
}

fn membership(ids: &[usize]) -> Membership {
    Membership { nodes: ids.iter().map(|i| member(*i)).collect() }
}

fn weights(m: &Membership) -> Vec<(NodeId, Weight)> {
    m.weights()
}

const NODES: usize = 7;
const INITIAL: [usize; 4] = [0, 1, 2, 3];

/// Node `i`: a member of the initial four, or a node that joins later, trusting the membership
/// that adds it (`trusted`).
fn node(i: usize, trusted: &[usize], outcome: &Outcome, disk: &Arc<Mutex<SimDisk>>) -> NodeBuilder {
    let me = NodeId::from_index(i);
    disk.lock().unwrap().crash();
    let store = SharedKv(Arc::new(Mutex::new(KvStore::with_membership(membership(&INITIAL)))));
    {
        let mut all = outcome.lock().unwrap();
        let seen = all.entry(me.clone()).or_default();
        let receipts = std::mem::take(&mut seen.receipts);
        if !receipts.is_empty() {
            seen.earlier.push(receipts);
        }
        seen.store = Some(store.clone());
    }
    let settings = NodeSettings {
        pbft: PbftConfig {
            sn_timeout: Duration::from_secs(1),
            segment_timeout: Some(Duration::from_secs(4)),
            view_change_resend: Duration::from_millis(200),
            done_resend: Duration::from_millis(200),
            catch_up_delay: Duration::from_millis(200),
            ..PbftConfig::default()
        },
        iss: IssConfig {
            segment_length: 2,
            buckets: Some(32),
            catch_up_period: Duration::from_millis(500),
            ..IssConfig::default()
        },
        ..NodeSettings::default()
    };
    let app = AppModule::new(store, me.clone()).receipts_to(ModuleId::new("clients"));
    let b = Node::builder(me.clone())
        .passive("app", app)
        .passive("clients", Receipts { me: me.clone(), outcome: outcome.clone() })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .active("timer", Timer::new());
    let wal = mir_runtime::wal::Wal::new(disk.clone(), ModuleId::new(iss::names::ISS));
    iss::add_to_with_wal(b, me, weights(&membership(trusted)), &settings, wal).unwrap()
}

/// The load: `count` commands of two clients, from `from` on.
fn load(round: u64, count: u64) -> Vec<Tx> {
    (0..2)
        .flat_map(|c| {
            (0..count).map(move |i| {
                let n = round * 1000 + i;
                let key = format!("k{}", (n * 7 + c) % 5);
                let cmd = match n % 3 {
                    0 => format!("put {key} v{c}.{n}"),
                    1 => format!("get {key}"),
                    _ => format!("del {key}"),
                };
                Tx::new(format!("client-{c}").as_str(), n, cmd)
            })
        })
        .collect()
}

struct Run {
    sim: Simulation,
    outcome: Outcome,
    /// Every transaction submitted, by (client, number).
    txs: BTreeMap<(String, u64), Tx>,
    admin_no: u64,
    members: BTreeSet<usize>,
    plan: String,
}

impl Run {
    fn new(seed: u64, joiners_trust: &[(usize, Vec<usize>)]) -> Result<Run, String> {
        let outcome: Outcome = Arc::default();
        let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
        for i in 0..NODES {
            let disk = Arc::new(Mutex::new(SimDisk::new(seed * 16 + i as u64)));
            let o = outcome.clone();
            let trusted = joiners_trust
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, t)| t.clone())
                .unwrap_or(INITIAL.to_vec());
            sim.add_restartable_node(move || node(i, &trusted, &o, &disk))
                .map_err(|e| e.to_string())?;
        }
        Ok(Run {
            sim,
            outcome,
            txs: BTreeMap::new(),
            admin_no: 0,
            members: INITIAL.into_iter().collect(),
            plan: String::new(),
        })
    }

    /// Submits `txs` at every node (each leader proposes the requests of its buckets).
    fn submit(&mut self, txs: Vec<Tx>) -> Result<(), String> {
        for tx in &txs {
            self.txs.insert((tx.client.0.clone(), tx.tx_no), tx.clone());
        }
        for i in 0..NODES {
            let ev = Event::new("clients", "mempool", NewTransactions { txs: txs.clone() });
            self.sim.inject(&NodeId::from_index(i), vec![ev]).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn admin(&mut self, command: String) -> Result<(), String> {
        let tx = Tx::new("admin", self.admin_no, command);
        self.admin_no += 1;
        self.submit(vec![tx])
    }

    fn add(&mut self, i: usize) -> Result<(), String> {
        self.members.insert(i);
        self.admin(format!("add-node\n{}", member(i).to_toml()))
    }

    fn remove(&mut self, i: usize) -> Result<(), String> {
        self.members.remove(&i);
        self.admin(format!("remove-node {i}"))
    }

    /// Runs until `done` holds for the outcome (at most `limit`).
    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&BTreeMap<NodeId, Seen>) -> bool,
    ) -> Result<(), String> {
        let o = self.outcome.clone();
        let ok = self
            .sim
            .run_until(limit, |_| done(&o.lock().unwrap()))
            .map_err(|e| format!("{e}\n{}", self.plan))?;
        if !ok {
            let all = self.outcome.lock().unwrap();
            let state: Vec<String> = all
                .iter()
                .map(|(n, s)| {
                    format!(
                        "{n}: batches {} receipts {} restored {} left {}",
                        s.batches,
                        s.receipts.len(),
                        s.restored,
                        s.left
                    )
                })
                .collect();
            return Err(format!("not {what} in time\n{}\n{}", state.join("\n"), self.plan));
        }
        Ok(())
    }

    /// Waits until node `i` (not a member before) took part as a member: it applied batches,
    /// which a node outside the membership never does.
    fn joined(&mut self, i: usize) -> Result<(), String> {
        let id = NodeId::from_index(i);
        self.wait(&format!("node {i} joined"), Duration::from_secs(120), |all| {
            all.get(&id).is_some_and(|s| s.batches > 0 && s.restored > 0)
        })
    }

    fn left(&mut self, i: usize) -> Result<(), String> {
        let id = NodeId::from_index(i);
        self.wait(&format!("node {i} left"), Duration::from_secs(120), |all| {
            all.get(&id).is_some_and(|s| s.left)
        })
    }

    /// Waits until the current members hold every transaction, then checks everything.
    fn finish(&mut self) -> Result<(), String> {
        let members: Vec<NodeId> = self.members.iter().map(|i| NodeId::from_index(*i)).collect();
        let total = self.txs.len();
        let m = members.clone();
        self.wait("complete", Duration::from_secs(300), |all| {
            let complete: Vec<&Seen> =
                m.iter().filter_map(|n| all.get(n)).filter(|s| s.receipts.len() == total).collect();
            let Some(reference) = complete.first() else { return false };
            let want = reference.store.as_ref().unwrap().snapshot();
            m.iter().all(|n| all[n].store.as_ref().unwrap().snapshot() == want)
        })?;
        let all = self.outcome.lock().unwrap();
        let complete =
            members.iter().map(|n| &all[n]).find(|s| s.receipts.len() == total).expect("complete");
        // The results are those of the log order, from the initial store.
        let mut in_order: Vec<_> = complete.receipts.iter().collect();
        in_order.sort_by_key(|(_, (sn, index, _))| (*sn, *index));
        let mut replay = KvStore::with_membership(membership(&INITIAL));
        for (k, (_, _, result)) in in_order {
            if replay.apply(&self.txs[k]) != *result {
                return Err(format!("{k:?}: the receipt's result is not the log order's"));
            }
            if k.0 == "admin" && result != b"+ok" {
                return Err(format!("{k:?}: {}", String::from_utf8_lossy(result)));
            }
        }
        if replay.snapshot() != complete.store.as_ref().unwrap().snapshot() {
            return Err("the store is not the log order's".into());
        }
        let ids: BTreeSet<NodeId> =
            replay.membership().unwrap().into_iter().map(|m| m.id).collect();
        if ids != members.iter().cloned().collect() {
            return Err(format!("the store's membership is {ids:?}"));
        }
        // One position and one result per transaction, at every node and incarnation.
        let mut first: BTreeMap<&(String, u64), (&NodeId, &(u64, u32, Vec<u8>))> = BTreeMap::new();
        for (n, s) in all.iter() {
            for r in s.earlier.iter().chain([&s.receipts]) {
                for (k, v) in r {
                    match first.get(k) {
                        Some((m, w)) if *w != v => {
                            return Err(format!(
                                "{k:?}: node {n} has {v:?}, node {m} {w:?}\n{}",
                                self.plan
                            ));
                        }
                        Some(_) => {}
                        None => {
                            first.insert(k, (n, v));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Grow 4 → 5 → 7, shrink back to 4 (5, 6 and 0 leave), with load all along and `plan`.
fn grow_and_shrink(seed: u64, plan: Option<FaultPlan>) -> Result<(), String> {
    let mut run = Run::new(
        seed,
        &[(4, INITIAL.to_vec()), (5, vec![0, 1, 2, 3, 4]), (6, vec![0, 1, 2, 3, 4])],
    )?;
    if let Some(p) = &plan {
        p.schedule(&mut run.sim);
        run.plan = p.to_string();
    }
    run.submit(load(0, 20))?;
    run.add(4)?;
    run.joined(4)?;
    run.submit(load(1, 20))?;
    run.add(5)?;
    run.add(6)?;
    run.joined(5)?;
    run.joined(6)?;
    run.submit(load(2, 20))?;
    run.remove(6)?;
    run.remove(5)?;
    run.remove(0)?;
    run.submit(load(3, 20))?;
    run.left(6)?;
    run.left(5)?;
    run.left(0)?;
    run.submit(load(4, 20))?;
    run.finish()
}

#[test]
fn the_membership_grows_and_shrinks() {
    grow_and_shrink(1, None).unwrap();
}

/// Under fault plans: 6 seeds by default, `SMR_RECONFIG_SEEDS` for more.
#[test]
fn the_membership_grows_and_shrinks_under_fault_plans() {
    let seeds = std::env::var("SMR_RECONFIG_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let ids: Vec<NodeId> = (0..NODES).map(NodeId::from_index).collect();
    sweep(0..seeds, COMMAND, |seed| {
        let profile = FaultProfile {
            faulty_phase: Duration::from_secs(8),
            crashes: 1,
            ..FaultProfile::default()
        };
        grow_and_shrink(seed, Some(FaultPlan::draw(seed, &ids, &profile)))
    });
}
