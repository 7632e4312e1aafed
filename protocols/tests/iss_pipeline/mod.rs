//! Helpers shared by the tests of ISS over the availability layer (`iss_availability.rs`,
//! `iss_byzantine.rs`): the whole pipeline in the simulator, and the checks every run makes.
#![allow(dead_code, unused_imports)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_runtime::{Batch, Event, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::availability::batchfetcher::{NewOrderedBatch, RestoreState, SnapshotRequest};
use protocols::availability::mempool::NewTransactions;
use protocols::availability::ClientProgress;
use protocols::availability::Tx;
use protocols::ordering::checkpoint::{AppSnapshot, StableCheckpoint};
use protocols::ordering::iss::epoch::EpochLayout;
pub use protocols::ordering::iss::{self, EpochStarted, IssConfig, Mode, NodeSettings};
use protocols::ordering::pbft::PbftConfig;

#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The batches delivered (since the last restart; with a gap where a state transfer skipped
    /// some).
    pub batches: Vec<NewOrderedBatch>,
    pub epochs: Vec<EpochStarted>,
    pub stable: Vec<StableCheckpoint>,
    /// The application's state: transactions applied (restored from a checkpoint, then
    /// counted on).
    pub applied: u64,
    /// State transfers: (epoch, client progress restored).
    pub restored: Vec<(u64, ClientProgress)>,
    /// Batches of earlier incarnations.
    pub earlier: Vec<Vec<NewOrderedBatch>>,
}

pub type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The application: keeps the ordered batches; its snapshot is how many transactions it applied.
struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(b) = ev.get::<NewOrderedBatch>() {
                seen.batches.push(b.clone());
                seen.applied += b.txs.len() as u64;
            } else if let Some(r) = ev.get::<RestoreState>() {
                let bytes: [u8; 8] = r.app.as_slice().try_into().expect("8 bytes");
                seen.applied = u64::from_le_bytes(bytes);
                seen.restored.push((r.epoch, r.client_progress.clone()));
            } else if let Some(e) = ev.get::<EpochStarted>() {
                seen.epochs.push(e.clone());
            } else if let Some(c) = ev.get::<StableCheckpoint>() {
                seen.stable.push(c.clone());
            } else if let Some(r) = ev.get::<SnapshotRequest>() {
                let data = seen.applied.to_le_bytes().to_vec();
                out.send(&ModuleId::new("iss"), AppSnapshot { epoch: r.epoch, data });
            }
        }
        Ok(())
    }
}

pub fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

pub fn node(me: &NodeId, outcome: &Outcome, mode: Mode) -> NodeBuilder {
    node_on(me, outcome, mode, None, Default::default())
}

/// [`node`], with these availability settings.
pub fn node_with_availability(
    me: &NodeId,
    outcome: &Outcome,
    availability: protocols::availability::Config,
) -> NodeBuilder {
    node_on(me, outcome, Mode::Bucketed, None, availability)
}

/// A node with a write-ahead log on `disk`, which crashes (as a machine stopping: unsynced
/// writes lost, kept in part or torn) each time the node is built again.
pub fn node_with_wal(
    me: &NodeId,
    outcome: &Outcome,
    mode: Mode,
    disk: &Arc<Mutex<mir_runtime::wal::disk::SimDisk>>,
) -> NodeBuilder {
    disk.lock().unwrap().crash();
    node_on(me, outcome, mode, Some(disk.clone()), Default::default())
}

fn node_on(
    me: &NodeId,
    outcome: &Outcome,
    mode: Mode,
    disk: Option<Arc<Mutex<mir_runtime::wal::disk::SimDisk>>>,
    availability: protocols::availability::Config,
) -> NodeBuilder {
    if let Some(s) = outcome.lock().unwrap().get_mut(me) {
        // A restart: the application starts from scratch.
        let batches = std::mem::take(&mut s.batches);
        s.earlier.push(batches);
        s.applied = 0;
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
        iss: IssConfig { mode, ..IssConfig::default() },
        availability,
        ..NodeSettings::default()
    };
    let b = Node::builder(me.clone())
        .passive("app", App { me: me.clone(), outcome: outcome.clone() })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .active("timer", Timer::new());
    match disk {
        Some(d) => {
            let wal = mir_runtime::wal::Wal::new(d, ModuleId::new(iss::names::ISS));
            iss::add_to_with_wal(b, me.clone(), membership, &settings, wal).unwrap()
        }
        None => iss::add_to(b, me.clone(), membership, &settings).unwrap(),
    }
}

/// 4 nodes (`crashed` down from the start); `clients` clients each submit `per_client`
/// transactions to every node; runs until every live node delivered them all.
pub fn run(
    seed: u64,
    mode: Mode,
    crashed: &[usize],
    clients: usize,
    per_client: u64,
) -> BTreeMap<NodeId, Seen> {
    run_with(seed, mode, crashed, clients, per_client, None)
}

/// [`run`], with node `byzantine.0` made Byzantine by the adversary `byzantine.1` (not checked).
pub fn run_with(
    seed: u64,
    mode: Mode,
    crashed: &[usize],
    clients: usize,
    per_client: u64,
    byzantine: Option<(usize, mir_runtime::adversary::Adversary)>,
) -> BTreeMap<NodeId, Seen> {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in ids() {
        sim.add_node(node(&me, &outcome, mode)).unwrap();
    }
    for c in crashed {
        sim.apply_fault(Fault::Crash(ids()[*c].clone())).unwrap();
    }
    // With buckets, no transaction is proposed by two leaders in one epoch (checked online).
    let monitor = OneProposerPerEpoch::default();
    let proposals = monitor.batches.clone();
    if mode == Mode::Bucketed {
        sim.add_monitor(monitor);
    }
    let bad = byzantine.as_ref().map(|(b, _)| *b);
    if let Some((b, adversary)) = byzantine {
        sim.make_byzantine(&ids()[b], adversary).unwrap();
    }
    let live: Vec<NodeId> = ids()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !crashed.contains(i) && Some(*i) != bad)
        .map(|(_, n)| n)
        .collect();
    let txs: Vec<Tx> = (0..clients)
        .flat_map(|c| {
            (0..per_client)
                .map(move |i| Tx::new(format!("client-{c}").as_str(), i, format!("tx {i}")))
        })
        .collect();
    // Every node that is up gets the transactions (a Byzantine one too: it leads segments).
    let up: Vec<NodeId> = ids()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !crashed.contains(i))
        .map(|(_, n)| n)
        .collect();
    for n in &up {
        sim.inject(n, vec![Event::new("app", "mempool", NewTransactions { txs: txs.clone() })])
            .unwrap();
    }
    let total = txs.len();
    let delivered = |o: &Outcome, n: &NodeId| -> usize {
        o.lock().unwrap().get(n).map_or(0, |s| s.batches.iter().map(|b| b.txs.len()).sum())
    };
    let done = sim
        .run_until(Duration::from_secs(300), |_| {
            live.iter().all(|n| delivered(&outcome, n) >= total)
        })
        .unwrap();
    // Then on to the next epoch ends (empty batches fill the epoch): stable checkpoints.
    let stable = sim
        .run_until(Duration::from_secs(60), |_| {
            let all = outcome.lock().unwrap();
            live.iter().all(|n| all.get(n).is_some_and(|s| s.stable.len() >= 2))
        })
        .unwrap();
    assert!(stable, "seed {seed}: no stable checkpoints");
    assert!(mode == Mode::Redundant || *proposals.lock().unwrap() > 0, "the monitor saw no batch");
    let all = outcome.lock().unwrap().clone();
    assert!(
        done,
        "seed {seed}: delivered {:?} of {total}",
        live.iter().map(|n| delivered(&outcome, n)).collect::<Vec<_>>()
    );
    // The same batches everywhere (up to the shortest), every transaction once.
    let first = &all[&live[0]];
    for n in &live {
        let s = &all[n];
        let k = s.batches.len().min(first.batches.len());
        assert_eq!(s.batches[..k], first.batches[..k], "seed {seed}: node {n} differs");
        let ids: Vec<(String, u64)> = s
            .batches
            .iter()
            .flat_map(|b| b.txs.iter().map(|t| (t.client.0.clone(), t.tx_no)))
            .collect();
        let unique: BTreeSet<_> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), unique.len(), "seed {seed}: node {n} delivered a transaction twice");
        assert_eq!(unique.len(), total);
    }
    all.into_iter().filter(|(n, _)| live.contains(n)).collect()
}

/// Every delivered transaction falls in the buckets of the segment that ordered it.
pub fn check_buckets(seen: &BTreeMap<NodeId, Seen>) {
    let s = seen.values().next().unwrap();
    let buckets = 16 * 4; // IssConfig's default: 16 per member
    let layouts: Vec<EpochLayout> = s
        .epochs
        .iter()
        .map(|e| EpochLayout::new(e.epoch, e.first_sn, e.leaders.clone(), 4, buckets).unwrap())
        .collect();
    let mut checked = 0;
    for b in &s.batches {
        let layout = layouts.iter().find(|l| l.contains(b.sn)).unwrap();
        let i = ((b.sn - layout.first_sn) % layout.leaders.len() as u64) as usize;
        let mine = layout.segment_buckets(i);
        for t in &b.txs {
            let bucket = protocols::availability::bucket_of(&t.client.0, t.tx_no, buckets);
            assert!(
                mine.contains(&bucket),
                "sn {}: {t:?} of bucket {bucket}, not in {mine:?}",
                b.sn
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// One of Mir's integration cases (`TestIntegration/ISS/000…014`), in the simulator.
#[derive(Debug, Clone)]
pub struct Case {
    /// Nodes and weights.
    pub weights: Vec<Weight>,
    /// Transactions every node injects into its own mempool (client `0`, numbers 0..k, the same
    /// at every node, as Mir's fake transactions: duplicate removal is exercised).
    pub txs: u64,
    /// Nodes whose proposals wait the sn timeout (Mir's slow replica): view changes in their
    /// segments.
    pub slow: Vec<usize>,
    /// Nodes that send nothing but still receive (Mir's crashed replica: a mangler dropping
    /// everything it sends).
    pub silent: Vec<usize>,
    /// Simulated time.
    pub duration: Duration,
    /// Bucketed (the paper) or redundant (Trantor, which Mir's tests ran).
    pub mode: Mode,
}

/// Runs `case` with `seed` with Mir's parameters (segments of 4, sn timeout 4 s, segment timeout
/// 8 s, batches of at most 10 transactions, one retained epoch, simple leader policy) and
/// returns what every node's application saw.
pub fn run_case(case: &Case, seed: u64) -> BTreeMap<NodeId, Seen> {
    let outcome: Outcome = Arc::default();
    let ids: Vec<NodeId> = (0..case.weights.len()).map(NodeId::from_index).collect();
    let members: Vec<(NodeId, Weight)> = ids.iter().cloned().zip(case.weights.clone()).collect();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for (i, me) in ids.iter().enumerate() {
        let sn_timeout = Duration::from_secs(4);
        let pbft = PbftConfig {
            sn_timeout,
            segment_timeout: Some(Duration::from_secs(8)),
            propose_delay: if case.slow.contains(&i) { sn_timeout } else { Duration::ZERO },
            ..PbftConfig::default()
        };
        let mut availability = protocols::availability::Config::default();
        availability.mempool.max_txs_in_batch = 10;
        let iss = IssConfig { mode: case.mode, ..IssConfig::default() };
        let settings = NodeSettings { pbft, availability, iss, ..NodeSettings::default() };
        let b = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .active("timer", Timer::new());
        sim.add_node(iss::add_to(b, me.clone(), members.clone(), &settings).unwrap()).unwrap();
        outcome.lock().unwrap().entry(me.clone()).or_default();
    }
    if case.mode == Mode::Bucketed {
        sim.add_monitor(OneProposerPerEpoch::default());
    }
    for i in &case.silent {
        let silence = mir_runtime::adversary::Adversary::new(mir_runtime::adversary::Silence);
        sim.make_byzantine(&ids[*i], silence).unwrap();
    }
    if case.txs > 0 {
        let txs: Vec<Tx> =
            (0..case.txs).map(|i| Tx::new("0", i, format!("Transaction {i}"))).collect();
        for me in &ids {
            let ev = Event::new("app", "mempool", NewTransactions { txs: txs.clone() });
            sim.inject(me, vec![ev]).unwrap();
        }
    }
    sim.run_for(case.duration).unwrap();
    let all = outcome.lock().unwrap().clone();
    all
}

/// Mir's `checkEventTraces`: every node's batches are node 0's (up to the shorter sequence: a
/// timed run stops with batches in flight) and every node delivered exactly `txs` transactions,
/// none twice. Returns the batches delivered by each node.
pub fn check_traces(seen: &BTreeMap<NodeId, Seen>, txs: u64) -> Result<(), String> {
    let first = seen.values().next().ok_or("no nodes")?;
    for (n, s) in seen {
        let k = s.batches.len().min(first.batches.len());
        if s.batches[..k] != first.batches[..k] {
            return Err(format!("node {n}'s batches differ from node 0's"));
        }
        let ids: Vec<u64> = s.batches.iter().flat_map(|b| b.txs.iter().map(|t| t.tx_no)).collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        if ids.len() != unique.len() {
            return Err(format!("node {n} delivered a transaction twice"));
        }
        if ids.len() as u64 != txs || s.applied != txs {
            return Err(format!("node {n} delivered {} transactions, not {txs}", ids.len()));
        }
    }
    Ok(())
}

/// With buckets: no transaction is cut into a batch (proposed) by two nodes' mempools for one
/// epoch (the batches every mempool hands the epoch's availability instance, online).
#[derive(Default)]
pub struct OneProposerPerEpoch {
    /// (epoch, client, number) → the node that proposed it, and the event.
    proposed: BTreeMap<(u64, String, u64), mir_runtime::eventlog::Observed>,
    /// Batches seen (to show the monitor saw something).
    pub batches: Arc<Mutex<u64>>,
}

impl mir_runtime::eventlog::Monitor for OneProposerPerEpoch {
    fn observe(
        &mut self,
        o: &mir_runtime::eventlog::Observed,
    ) -> Result<(), mir_runtime::eventlog::Violation> {
        let Ok(Some(b)) = o.event.payload.decode::<protocols::availability::mempool::NewBatch>()
        else {
            return Ok(());
        };
        let Some(epoch) = o.event.dest.sub().and_then(|e| e.parse::<u64>().ok()) else {
            return Ok(());
        };
        *self.batches.lock().unwrap() += 1;
        for t in &b.txs {
            let key = (epoch, t.client.0.clone(), t.tx_no);
            match self.proposed.get(&key) {
                Some(first) if first.node != o.node => {
                    return Err(mir_runtime::eventlog::Violation::new(
                        format!(
                            "{t:?} proposed by nodes {} and {} in epoch {epoch}",
                            first.node, o.node
                        ),
                        vec![first.clone(), o.clone()],
                    ))
                }
                Some(_) => {}
                None => {
                    self.proposed.insert(key, o.clone());
                }
            }
        }
        Ok(())
    }
}
