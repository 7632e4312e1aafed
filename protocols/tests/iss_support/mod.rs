//! Helpers shared by the ISS tests (`iss*.rs`): a simulated node running ISS over PBFT with a
//! test source of proposals, and an application that records the log.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_runtime::stdmodules::{Hasher, TestCrypto, Timer};
use mir_runtime::wal::disk::{Disk, SimDisk};
use mir_runtime::wal::Wal;
use mir_runtime::{Batch, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::availability::batchfetcher::{
    ClientProgressSnapshot, RestoreState, SnapshotRequest,
};
use protocols::availability::ClientProgress;
use protocols::ordering::checkpoint::{
    self, AppSnapshot, CheckpointConfig, CheckpointModules, StableCheckpoint,
};
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::{EpochStarted, Iss, IssConfig, IssModules, OrderedEntry};
use protocols::ordering::pbft::{self, PbftConfig, PbftModules};
use protocols::ordering::{BatchCut, CutBatch, Source, Validator};
use std::sync::atomic::{AtomicBool, AtomicUsize};

/// A node's disk in the simulator, kept across its restarts: a [`SimDisk`] that crashes when the
/// node is built again, counts the WAL's appends, and can **freeze** at the `k`-th append (that
/// append and every later one stay unsynced: syncs, truncations and removals do nothing), so
/// that a crash right after it is a crash between the write and its sync.
#[derive(Clone)]
pub struct WalDisk {
    pub disk: Arc<Mutex<SimDisk>>,
    pub appends: Arc<AtomicUsize>,
    pub freeze_at: Arc<AtomicUsize>,
    pub frozen: Arc<AtomicBool>,
    pub restarts: Arc<AtomicUsize>,
    /// Amnesia: every restart replaces the disk by an empty one, and the node is started with
    /// `IssConfig::rejoin` (the operator says the disk was lost).
    pub amnesia: Arc<AtomicBool>,
}

impl WalDisk {
    pub fn new(seed: u64) -> Self {
        WalDisk {
            disk: Arc::new(Mutex::new(SimDisk::new(seed))),
            appends: Arc::default(),
            freeze_at: Arc::new(AtomicUsize::new(usize::MAX)),
            frozen: Arc::default(),
            restarts: Arc::default(),
            amnesia: Arc::default(),
        }
    }

    /// A disk that is lost at every restart of its node.
    pub fn amnesiac(seed: u64) -> Self {
        let disk = WalDisk::new(seed);
        disk.amnesia.store(true, std::sync::atomic::Ordering::Relaxed);
        disk
    }

    /// Whether the node starts on a lost disk (a restart of an amnesiac disk).
    fn lost(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.amnesia.load(Relaxed) && self.restarts.load(Relaxed) > 1
    }

    /// The machine stopped: what was not synced may be lost or torn; unfreeze.
    fn restart(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let restarts = self.restarts.fetch_add(1, Relaxed) + 1;
        let mut disk = self.disk.lock().unwrap();
        disk.crash();
        if self.amnesia.load(Relaxed) && restarts > 1 {
            *disk = SimDisk::new(restarts as u64);
        }
        self.frozen.store(false, Relaxed);
        self.freeze_at.store(usize::MAX, Relaxed);
    }
}

impl Disk for WalDisk {
    fn append(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.appends.fetch_add(1, Relaxed) + 1;
        if n == self.freeze_at.load(Relaxed) {
            self.frozen.store(true, Relaxed);
        }
        self.disk.append(name, bytes)
    }
    fn sync(&mut self, name: &str) -> std::io::Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.disk.sync(name)
    }
    fn read(&mut self, name: &str) -> std::io::Result<Vec<u8>> {
        self.disk.read(name)
    }
    // Frozen, the machine has stopped at the frozen write: later removals never happen.
    fn truncate(&mut self, name: &str, len: usize) -> std::io::Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.disk.truncate(name, len)
    }
    fn remove(&mut self, name: &str) -> std::io::Result<()> {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.disk.remove(name)
    }
    fn list(&mut self) -> std::io::Result<Vec<String>> {
        self.disk.list()
    }
}

/// (node, instance, kind, sn, view): one message's key.
type SentKey = (NodeId, ModuleId, u8, u64, u64);

/// No node ever sends two different PRE-PREPAREs, PREPAREs or COMMITs for one instance, sn and
/// view, across all its restarts (the messages each node hands its transport, online).
#[derive(Default)]
pub struct NoEquivocation {
    /// (node, instance, kind, sn, view) → what it sent.
    sent: BTreeMap<SentKey, (Vec<u8>, mir_runtime::eventlog::Observed)>,
    /// Messages checked.
    pub checked: Arc<Mutex<u64>>,
}

impl mir_runtime::eventlog::Monitor for NoEquivocation {
    fn observe(
        &mut self,
        o: &mir_runtime::eventlog::Observed,
    ) -> Result<(), mir_runtime::eventlog::Violation> {
        let Ok(Some(s)) = o.event.payload.decode::<mir_runtime::stdevents::SendMessage>() else {
            return Ok(());
        };
        let p = &s.message.payload;
        let (kind, sn, view, what) = if let Ok(Some(m)) = p.decode::<pbft::Preprepare>() {
            (0, m.sn, m.view, pbft::value_digest(m.sn, m.value.as_deref()))
        } else if let Ok(Some(m)) = p.decode::<pbft::Prepare>() {
            (1, m.sn, m.view, m.digest)
        } else if let Ok(Some(m)) = p.decode::<pbft::Commit>() {
            (2, m.sn, m.view, m.digest)
        } else {
            return Ok(());
        };
        *self.checked.lock().unwrap() += 1;
        let key = (o.node.clone(), s.message.dest_module.clone(), kind, sn, view);
        match self.sent.get(&key) {
            Some((first, ev)) if *first != what => Err(mir_runtime::eventlog::Violation::new(
                format!(
                    "{} sent two different messages of kind {kind} for {} sn {sn} view {view}",
                    o.node, s.message.dest_module
                ),
                vec![ev.clone(), o.clone()],
            )),
            Some(_) => Ok(()),
            None => {
                self.sent.insert(key, (what, o.clone()));
                Ok(())
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The log entries delivered, in order (with a gap where a state transfer skipped some).
    pub log: Vec<OrderedEntry>,
    pub epochs: Vec<EpochStarted>,
    pub stable: Vec<StableCheckpoint>,
    /// The application's state: entries applied (restored from a checkpoint, then counted on).
    pub applied: u64,
    /// The state transfers made.
    pub restored: Vec<RestoreState>,
    /// The logs of earlier incarnations (before each restart).
    pub earlier: Vec<Vec<OrderedEntry>>,
}

impl Seen {
    /// The log by sequence number; panics if the sns are not increasing (delivered out of order
    /// or twice).
    pub fn by_sn(&self) -> BTreeMap<u64, Option<Vec<u8>>> {
        by_sn(&self.log)
    }
}

/// A log by sequence number; panics if the sns are not increasing.
pub fn by_sn(log: &[OrderedEntry]) -> BTreeMap<u64, Option<Vec<u8>>> {
    {
        let mut out = BTreeMap::new();
        for e in log {
            if let Some((&last, _)) = out.last_key_value() {
                assert!(e.sn > last, "sn {} delivered after sn {last}", e.sn);
            }
            out.insert(e.sn, e.value.clone());
        }
        out
    }
}

/// Every two nodes agree on every sn both delivered; and the state each application reached is
/// the number of entries before its next sn (state transfers included). Returns an error saying
/// what differs.
pub fn check_logs(all: &BTreeMap<NodeId, Seen>) -> Result<(), String> {
    type Log = BTreeMap<u64, Option<Vec<u8>>>;
    let logs: Vec<(&NodeId, Log)> = all
        .iter()
        .flat_map(|(n, s)| s.earlier.iter().chain([&s.log]).map(move |l| (n, by_sn(l))))
        .collect();
    for (i, (a, la)) in logs.iter().enumerate() {
        for (b, lb) in &logs[i + 1..] {
            for (sn, v) in la {
                if let Some(w) = lb.get(sn) {
                    if v != w {
                        return Err(format!("nodes {a} and {b} differ at sn {sn}"));
                    }
                }
            }
        }
    }
    for (n, s) in all {
        let next = s.log.last().map_or(0, |e| e.sn + 1);
        if s.applied != next {
            return Err(format!("node {n} applied {} entries, its next sn is {next}", s.applied));
        }
    }
    Ok(())
}

pub type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The application: records the log; its state is the number of entries delivered.
pub struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(e) = ev.get::<OrderedEntry>() {
                seen.log.push(e.clone());
                seen.applied += 1;
            } else if let Some(r) = ev.get::<RestoreState>() {
                let bytes: [u8; 8] = r.app.as_slice().try_into().expect("8 bytes");
                seen.applied = u64::from_le_bytes(bytes);
                seen.restored.push(r.clone());
            } else if let Some(e) = ev.get::<EpochStarted>() {
                seen.epochs.push(e.clone());
            } else if let Some(c) = ev.get::<StableCheckpoint>() {
                seen.stable.push(c.clone());
            } else if let Some(r) = ev.get::<SnapshotRequest>() {
                let data = seen.applied.to_le_bytes().to_vec();
                let iss = ModuleId::new("iss");
                out.send(&iss, AppSnapshot { epoch: r.epoch, data });
                let progress = ClientProgressSnapshot {
                    epoch: r.epoch,
                    client_progress: ClientProgress::default(),
                };
                out.send(&iss, progress);
            }
        }
        Ok(())
    }
}

/// Proposes `"<sn> by <me>"`.
pub struct TestSource {
    me: NodeId,
    /// Which start of the node this is (0, then 1 after a restart…): a restarted leader
    /// proposes other values than before, so a leader that forgot its proposals equivocates.
    incarnation: usize,
}

impl PassiveModule for TestSource {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(c) = ev.get::<CutBatch>() {
                let value = match self.incarnation {
                    0 => format!("{} by {}", c.sn, self.me),
                    k => format!("{} by {} #{k}", c.sn, self.me),
                }
                .into_bytes();
                out.send(&c.origin.module, BatchCut { value, origin: c.origin.clone() });
            }
        }
        Ok(())
    }
}

pub fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

pub fn node(me: &NodeId, policy: LeaderPolicy, outcome: &Outcome) -> NodeBuilder {
    node_with(me, IssConfig { leader_policy: policy, ..IssConfig::default() }, outcome)
}

/// A node with these ISS settings.
pub fn node_with(me: &NodeId, iss_config: IssConfig, outcome: &Outcome) -> NodeBuilder {
    node_as(me, iss_config, outcome, me)
}

/// A node that records what it sees under `key` in `outcome` and proposes `"<sn> by <key>"`
/// (a twin: the same `me`, another key).
pub fn node_as(me: &NodeId, iss_config: IssConfig, outcome: &Outcome, key: &NodeId) -> NodeBuilder {
    node_full(me, iss_config, outcome, key, None)
}

/// A node with a write-ahead log on `disk` (crashed, as a machine stopping, when the node is
/// built again: build it from [`Simulation::add_restartable_node`]).
pub fn node_with_wal(
    me: &NodeId,
    iss_config: IssConfig,
    outcome: &Outcome,
    disk: &WalDisk,
) -> NodeBuilder {
    disk.restart();
    let iss_config = IssConfig { rejoin: iss_config.rejoin || disk.lost(), ..iss_config };
    node_full(me, iss_config, outcome, me, Some(disk.clone()))
}

fn node_full(
    me: &NodeId,
    iss_config: IssConfig,
    outcome: &Outcome,
    key: &NodeId,
    wal: Option<WalDisk>,
) -> NodeBuilder {
    let incarnation = outcome.lock().unwrap().get(key).map_or(0, |s| s.earlier.len() + 1);
    if let Some(s) = outcome.lock().unwrap().get_mut(key) {
        // A restart: the application starts from scratch.
        let log = std::mem::take(&mut s.log);
        s.earlier.push(log);
        s.applied = 0;
    }
    let id = ModuleId::new;
    let membership: Vec<(NodeId, Weight)> = ids().into_iter().map(|n| (n, 1)).collect();
    let pbft_config = PbftConfig {
        sn_timeout: Duration::from_millis(500),
        segment_timeout: Some(Duration::from_secs(1)),
        view_change_resend: Duration::from_millis(200),
        done_resend: Duration::from_millis(200),
        catch_up_delay: Duration::from_millis(200),
        ..PbftConfig::default()
    };
    let wal_id = wal.as_ref().map(|_| id("wal"));
    let pbft_modules = PbftModules {
        wal: wal_id.clone(),
        net: id("net"),
        crypto: id("crypto"),
        timer: id("timer"),
        consumer: id("iss"),
        source: Source::Module(id("source")),
        validator: Validator::AcceptAll,
    };
    let chkp_modules = CheckpointModules {
        net: id("net"),
        crypto: id("crypto"),
        hasher: id("hasher"),
        timer: id("timer"),
        agreement: id("chkp-agreement"),
        consumer: id("iss"),
    };
    let chkp_config =
        CheckpointConfig { resend_period: Duration::from_millis(300), ..Default::default() };
    let iss_modules = IssModules {
        orderer: id("ordering"),
        checkpoint: id("checkpoint"),
        agreement: id("chkp-agreement"),
        consumer: id("app"),
        availability: None,
        batchdb: None,
        batchfetcher: None,
        net: id("net"),
        crypto: id("crypto"),
        hasher: id("hasher"),
        timer: id("timer"),
        wal: wal_id.clone(),
    };
    let iss = Iss::new(iss_modules, iss_config, me.clone(), membership).unwrap();
    let builder = match wal {
        Some(disk) => Node::builder(me.clone()).passive("wal", Wal::new(disk, id("iss"))),
        None => Node::builder(me.clone()),
    };
    builder
        .passive("app", App { me: key.clone(), outcome: outcome.clone() })
        .passive("source", TestSource { me: key.clone(), incarnation })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .passive("hasher", Hasher)
        .passive("ordering", pbft::factory(pbft_modules, pbft_config.clone(), me.clone()))
        .passive("checkpoint", checkpoint::factory(chkp_modules, chkp_config, me.clone()))
        .passive(
            "chkp-agreement",
            checkpoint::agreement_factory_logged(
                id("net"),
                id("crypto"),
                id("timer"),
                wal_id,
                pbft_config,
                me.clone(),
            ),
        )
        .passive("iss", DslModule::new(iss))
        .active("timer", Timer::new())
}
