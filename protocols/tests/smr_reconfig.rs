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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
use protocols::availability::mempool::{NewTransactions, TransactionsRejected};
use protocols::availability::Tx;
use protocols::ordering::iss::reconfig::Left;
use protocols::ordering::iss::{self, IssConfig, NodeSettings};
use protocols::ordering::pbft::PbftConfig;
use protocols::smr::app::{AppModule, Applied, Restored};
use protocols::smr::kv::KvStore;
use protocols::smr::{signed, Application};

const COMMAND: &str = "cargo test -p protocols --test smr_reconfig";

/// A store the test can read from outside the simulation; it counts epoch boundaries (the
/// application snapshots at each).
#[derive(Clone)]
struct SharedKv(Arc<Mutex<KvStore>>, Arc<AtomicU64>);

impl SharedKv {
    fn state(&self) -> Vec<u8> {
        self.0.lock().unwrap().snapshot()
    }
}

impl Application for SharedKv {
    fn apply(&mut self, tx: &Tx) -> Vec<u8> {
        self.0.lock().unwrap().apply(tx)
    }
    fn snapshot(&self) -> Vec<u8> {
        self.1.fetch_add(1, Relaxed);
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
    /// Rejections by the mempool (client, number, reason).
    rejected: Vec<(String, u64, String)>,
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
            } else if let Some(r) = ev.get::<Restored>() {
                seen.restored += 1;
                if let Some(store) = &seen.store {
                    store.1.store(r.epoch, Relaxed);
                }
            } else if ev.get::<Left>().is_some() {
                seen.left = true;
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                for x in &r.rejected {
                    seen.rejected.push((x.client.0.clone(), x.tx_no, x.reason.clone()));
                }
            }
        }
        Ok(())
    }
}

/// The admin: a signing client (its commands cannot be forged).
fn admin_key() -> k256::ecdsa::SigningKey {
    NodeKeys::test(1, &NodeId::new("admin")).signing
}

fn admin_id() -> String {
    signed::client_id(&admin_key())
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
fn node(
    i: usize,
    trusted: &Mutex<Vec<usize>>,
    outcome: &Outcome,
    disk: &Arc<Mutex<SimDisk>>,
) -> NodeBuilder {
    let trusted = trusted.lock().unwrap().clone();
    let me = NodeId::from_index(i);
    disk.lock().unwrap().crash();
    let kv = KvStore::with_membership(membership(&INITIAL), [admin_id().as_str().into()]);
    let store = SharedKv(Arc::new(Mutex::new(kv)), Arc::default());
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
    let app = AppModule::new(store, me.clone())
        .check_clients(signed::check)
        .receipts_to(ModuleId::new("clients"));
    let b = Node::builder(me.clone())
        .passive("app", app)
        .passive("clients", Receipts { me: me.clone(), outcome: outcome.clone() })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .active("timer", Timer::new());
    let wal = mir_runtime::wal::Wal::new(disk.clone(), ModuleId::new(iss::names::ISS));
    iss::add_to_with_wal(b, me, weights(&membership(&trusted)), &settings, wal).unwrap()
}

/// The load: `count` commands of two clients, from `from` on.
fn load(round: u64, count: u64) -> Vec<Tx> {
    (0..2)
        .flat_map(|c| {
            (0..count).map(move |i| {
                let n = round * count + i;
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
    /// The membership each node trusts when it is (re)built.
    trust: Vec<Arc<Mutex<Vec<usize>>>>,
    outcome: Outcome,
    /// Every transaction submitted, by (client, number).
    txs: BTreeMap<(String, u64), Tx>,
    admin_no: u64,
    members: BTreeSet<usize>,
    plan: String,
}

impl Run {
    fn new(seed: u64, nodes: usize, joiners_trust: &[(usize, Vec<usize>)]) -> Result<Run, String> {
        let outcome: Outcome = Arc::default();
        let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
        let mut trust = Vec::new();
        for i in 0..nodes {
            let disk = Arc::new(Mutex::new(SimDisk::new(seed * 64 + i as u64)));
            let o = outcome.clone();
            let trusted = joiners_trust
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, t)| t.clone())
                .unwrap_or(INITIAL.to_vec());
            let trusted = Arc::new(Mutex::new(trusted));
            trust.push(trusted.clone());
            sim.add_restartable_node(move || node(i, &trusted, &o, &disk))
                .map_err(|e| e.to_string())?;
        }
        Ok(Run {
            sim,
            trust,
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
        for i in 0..self.trust.len() {
            let ev = Event::new("clients", "mempool", NewTransactions { txs: txs.clone() });
            self.sim.inject(&NodeId::from_index(i), vec![ev]).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn admin(&mut self, command: String) -> Result<(), String> {
        let tx = Tx::new(admin_id().as_str(), self.admin_no, command);
        let tx = signed::sign(&admin_key(), tx);
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
                    let members: Vec<String> = s
                        .store
                        .as_ref()
                        .and_then(|k| k.0.lock().unwrap().membership())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|m| m.id.to_string())
                        .collect();
                    format!(
                        "{n}: batches {} receipts {} restored {} left {} epoch {} members {}",
                        s.batches,
                        s.receipts.len(),
                        s.restored,
                        s.left,
                        s.store.as_ref().map_or(0, |k| k.1.load(Relaxed)),
                        members.join(",")
                    )
                })
                .collect();
            let admin: Vec<String> = all
                .values()
                .flat_map(|s| s.earlier.iter().chain([&s.receipts]))
                .flat_map(|r| r.iter())
                .filter(|(k, _)| k.0 == admin_id())
                .map(|(k, v)| format!("{} {}", k.1, String::from_utf8_lossy(&v.2)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let crashed: Vec<String> = all
                .keys()
                .filter(|n| self.sim.is_crashed(n) == Some(true))
                .map(|n| n.to_string())
                .collect();
            return Err(format!(
                "not {what} in time (crashed: {crashed:?})\n{}\nadmin: {}\nrejected: {:?}\n{}",
                state.join("\n"),
                admin.join("; "),
                all.iter()
                    .flat_map(|(n, s)| s.rejected.iter().map(move |r| (n, r)))
                    .take(20)
                    .collect::<Vec<_>>(),
                self.plan
            ));
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
    /// The highest epoch a node reached.
    fn epoch(&self) -> u64 {
        let all = self.outcome.lock().unwrap();
        all.values().filter_map(|s| s.store.as_ref()).map(|s| s.1.load(Relaxed)).max().unwrap_or(0)
    }

    fn finish(&mut self) -> Result<(), String> {
        let members: Vec<NodeId> = self.members.iter().map(|i| NodeId::from_index(*i)).collect();
        let keys: BTreeSet<(String, u64)> = self.txs.keys().cloned().collect();
        let m = members.clone();
        // Done when some node (any incarnation) has a receipt for every transaction and every
        // member holds the same store: nodes that joined late hold receipts only for the end.
        self.wait("complete", Duration::from_secs(300), |all| {
            let mut seen = BTreeSet::new();
            for s in all.values() {
                for r in s.earlier.iter().chain([&s.receipts]) {
                    seen.extend(r.keys().filter(|k| keys.contains(*k)));
                }
            }
            if seen.len() < keys.len() {
                return false;
            }
            let want = all[&m[0]].store.as_ref().unwrap().state();
            m.iter().all(|n| all[n].store.as_ref().unwrap().state() == want)
        })?;
        let all = self.outcome.lock().unwrap();
        // The log: every receipt of every node, by position (checked below to agree).
        type Log<'a> = BTreeMap<(u64, u32), (&'a (String, u64), &'a Vec<u8>)>;
        let mut log: Log = BTreeMap::new();
        for s in all.values() {
            for r in s.earlier.iter().chain([&s.receipts]) {
                for (k, (sn, index, result)) in r {
                    log.insert((*sn, *index), (k, result));
                }
            }
        }
        // The results are those of the log order, from the initial store.
        let mut replay =
            KvStore::with_membership(membership(&INITIAL), [admin_id().as_str().into()]);
        for (k, result) in log.values() {
            if replay.apply(&self.txs[*k]) != **result {
                return Err(format!("{k:?}: the receipt's result is not the log order's"));
            }
            if k.0 == admin_id() && result.as_slice() != b"+ok" {
                return Err(format!("{k:?}: {}", String::from_utf8_lossy(result)));
            }
        }
        if log.len() != keys.len() {
            return Err(format!("{} log positions for {} transactions", log.len(), keys.len()));
        }
        if replay.snapshot() != all[&members[0]].store.as_ref().unwrap().state() {
            return Err("the store is not the log order's".into());
        }
        let ids: BTreeSet<NodeId> =
            replay.membership().unwrap().into_iter().map(|m| m.id).collect();
        if ids != members.iter().cloned().collect() {
            return Err(format!("the store's membership is {ids:?}"));
        }
        // One position and one result per transaction, at every node and incarnation.
        type First<'a> = BTreeMap<&'a (String, u64), (&'a NodeId, &'a (u64, u32, Vec<u8>))>;
        let mut first: First = BTreeMap::new();
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
    let joiners = [(4, INITIAL.to_vec()), (5, vec![0, 1, 2, 3, 4]), (6, vec![0, 1, 2, 3, 4])];
    let mut run = Run::new(seed, NODES, &joiners)?;
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

/// The long run: `SMR_RECONFIG_EPOCHS` epochs at least (e.g. 100), in rounds. Each round draws
/// a fault plan over the members, adds a new node (trusting the membership of the moment; it
/// is restarted with that trust first) while fewer than 7 are members and removes a random one
/// while more than 5 are, under load, and waits for the joins and leaves. Then the same checks
/// as the other tests.
#[test]
fn a_long_run_of_reconfigurations() {
    let Some(epochs) = std::env::var("SMR_RECONFIG_EPOCHS").ok().and_then(|s| s.parse().ok())
    else {
        eprintln!("skipped: set SMR_RECONFIG_EPOCHS (e.g. 100) to run it");
        return;
    };
    let seed: u64 = std::env::var("MIR_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    if let Err(e) = long_run(seed, epochs) {
        panic!(
            "seed {seed}: {e}\nreproduce: MIR_SEED={seed} SMR_RECONFIG_EPOCHS={epochs} \
             cargo test --release -p protocols --test smr_reconfig long_run"
        );
    }
}

fn long_run(seed: u64, epochs: u64) -> Result<(), String> {
    if let Ok(filter) = std::env::var("MIR_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .try_init();
    }
    use mir_runtime::sim::Fault;
    // Each node joins at most once; a round takes a few epochs.
    let nodes = INITIAL.len() + epochs as usize / 2 + 8;
    let mut run = Run::new(seed, nodes, &[])?;
    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut draw = |n: usize| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((rng >> 33) as usize) % n
    };
    let mut next_new = INITIAL.len();
    let mut round = 0u64;
    while run.epoch() < epochs {
        if next_new >= nodes {
            return Err(format!("ran out of nodes at epoch {}", run.epoch()));
        }
        round += 1;
        let members: Vec<NodeId> = run.members.iter().map(|i| NodeId::from_index(*i)).collect();
        let profile = FaultProfile {
            faulty_phase: Duration::from_secs(4),
            crashes: 1,
            ..FaultProfile::default()
        };
        let plan = FaultPlan::draw(seed * 1000 + round, &members, &profile);
        let now = run.sim.now().since_start();
        for (t, f) in &plan.faults {
            run.sim.schedule_fault(now + *t, f.clone());
        }
        run.plan = format!("round {round}, from {now:?}:\n{plan}");
        run.submit(load(round, 10))?;
        let mut joined = None;
        if run.members.len() < 7 {
            let j = next_new;
            next_new += 1;
            *run.trust[j].lock().unwrap() = run.members.iter().copied().collect();
            let id = NodeId::from_index(j);
            let at = now + Duration::from_millis(1);
            run.sim.schedule_fault(at, Fault::Crash(id.clone()));
            run.sim.schedule_fault(at + Duration::from_millis(1), Fault::Restart(id));
            run.sim.run_for(Duration::from_millis(3)).map_err(|e| e.to_string())?;
            run.add(j)?;
            joined = Some(j);
        }
        let mut removed = None;
        if run.members.len() > 5 {
            let candidates: Vec<usize> =
                run.members.iter().copied().filter(|m| Some(*m) != joined).collect();
            let r = candidates[draw(candidates.len())];
            run.remove(r)?;
            removed = Some(r);
        }
        if let Some(j) = joined {
            run.joined(j)?;
        }
        if let Some(r) = removed {
            run.left(r)?;
        }
        // The next round's faults start when this round's are healed (so that a crash and its
        // restart never overlap another plan's).
        let healed = now + plan.healed_at();
        let left = healed.saturating_sub(run.sim.now().since_start());
        run.sim.run_for(left).map_err(|e| e.to_string())?;
        eprintln!(
            "round {round}: epoch {}, members {:?} (joined {joined:?}, left {removed:?})",
            run.epoch(),
            run.members
        );
    }
    run.submit(load(round + 1, 10))?;
    run.finish()
}
