//! Helpers shared by the PBFT tests (`pbft*.rs`): a simulated cluster running one PBFT instance
//! (module `pbft`) per node, with a test source of proposals, a test validator and an
//! application that records what the instance tells it.
#![allow(dead_code, unused_imports)]

pub use std::collections::BTreeMap;
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use mir_dsl::prelude::*;
pub use mir_dsl::Weight;
pub use mir_runtime::sim::{sweep, Fault, FaultPlan, FaultProfile, SimConfig, Simulation};
use mir_runtime::stdevents::crypto::Origin;
use mir_runtime::stdevents::TimerDelay;
pub use mir_runtime::stdmodules::{TestCrypto, Timer};
pub use mir_runtime::{Batch, Event, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
pub use protocols::monitors::SbMonitor;
pub use protocols::ordering::pbft::{Pbft, PbftConfig, PbftModules};
pub use protocols::ordering::{
    BatchCut, CutBatch, EquivocationEvidence, ProposalUnused, ProposalValidated, SbDeliver,
    Segment, Sn, Source, Suspect, ValidateProposal, Validator,
};

/// What one node's application saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Deliveries by sn, in the order they came.
    pub delivered: BTreeMap<Sn, Vec<Option<Vec<u8>>>>,
    pub suspects: Vec<Suspect>,
    pub evidence: Vec<EquivocationEvidence>,
    pub unused: Vec<ProposalUnused>,
}

pub type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// Records what PBFT tells the application.
pub struct App {
    pub me: NodeId,
    pub outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(d) = ev.get::<SbDeliver>() {
                seen.delivered.entry(d.sn).or_default().push(d.value.clone());
            } else if let Some(s) = ev.get::<Suspect>() {
                seen.suspects.push(s.clone());
            } else if let Some(e) = ev.get::<EquivocationEvidence>() {
                seen.evidence.push(e.clone());
            } else if let Some(u) = ev.get::<ProposalUnused>() {
                seen.unused.push(u.clone());
            }
        }
        Ok(())
    }
}

/// The value the test source proposes for `sn`.
pub fn value_for(sn: Sn) -> Vec<u8> {
    format!("value {sn}").into_bytes()
}

/// The value a twin's test source proposes for `sn`.
pub fn twin_value_for(sn: Sn) -> Vec<u8> {
    format!("twin value {sn}").into_bytes()
}

/// Answers `CutBatch` with [`value_for`], after `delay` if set (a slow source, through the
/// timer).
pub struct TestSource {
    pub delay: Option<Duration>,
    pub twin: bool,
}

impl PassiveModule for TestSource {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(c) = ev.get::<CutBatch>() {
                let value = if self.twin { twin_value_for(c.sn) } else { value_for(c.sn) };
                let reply = BatchCut { value, origin: c.origin.clone() };
                match self.delay {
                    None => out.send(&c.origin.module, reply),
                    Some(delay) => {
                        let events = vec![Event::new("source", c.origin.module.clone(), reply)];
                        let t = TimerDelay { id: None, delay, retention_index: 0, events };
                        out.send(&ModuleId::new("timer"), t)
                    }
                }
            }
        }
        Ok(())
    }
}

/// Rejects values that start with "bad".
pub struct TestValidator;

impl PassiveModule for TestValidator {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(v) = ev.get::<ValidateProposal>() {
                let error = v.value.starts_with(b"bad").then(|| "a bad value".to_string());
                let origin: Origin = v.origin.clone();
                out.send(&origin.module, ProposalValidated { error, origin: origin.clone() });
            }
        }
        Ok(())
    }
}

/// A cluster to simulate.
#[derive(Clone)]
pub struct Setup {
    pub seed: u64,
    /// One weight per node; n is its length.
    pub weights: Vec<Weight>,
    pub sns: Vec<Sn>,
    /// The leader's index.
    pub leader: usize,
    pub config: PbftConfig,
    /// Fixed proposals, per node index (each node's own).
    pub fixed: BTreeMap<usize, BTreeMap<Sn, Vec<u8>>>,
    /// Nodes are restartable (for fault plans with crashes).
    pub restartable: bool,
    /// The source answers after this long.
    pub source_delay: Option<Duration>,
    /// Record every node's events under this directory.
    pub record: Option<std::path::PathBuf>,
}

impl Setup {
    pub fn new(seed: u64, n: usize) -> Self {
        Setup {
            seed,
            weights: vec![1; n],
            sns: (0..8).collect(),
            leader: 0,
            config: fast_config(),
            fixed: BTreeMap::new(),
            restartable: false,
            source_delay: None,
            record: None,
        }
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (0..self.weights.len()).map(NodeId::from_index).collect()
    }

    pub fn membership(&self) -> Vec<(NodeId, Weight)> {
        self.ids().into_iter().zip(self.weights.iter().copied()).collect()
    }

    /// Node `i` (`twin`: a second instance of it, with its own source values, recording its
    /// deliveries as `<id>b`).
    pub fn node(&self, i: usize, outcome: &Outcome, twin: bool) -> NodeBuilder {
        let me = self.ids()[i].clone();
        let mut segment =
            Segment::new(self.ids()[self.leader].clone(), self.membership(), self.sns.clone());
        segment.proposals = self.fixed.get(&i).cloned().unwrap_or_default();
        let modules = PbftModules {
            wal: None,
            net: ModuleId::new("net"),
            crypto: ModuleId::new("crypto"),
            timer: ModuleId::new("timer"),
            consumer: ModuleId::new("app"),
            source: Source::Module(ModuleId::new("source")),
            validator: Validator::Module(ModuleId::new("validator")),
        };
        let pbft = Pbft::new(modules, self.config.clone(), me.clone(), segment).unwrap();
        let mut builder = Node::builder(me.clone());
        if let Some(dir) = &self.record {
            let cfg = mir_runtime::eventlog::RecorderConfig::new(dir);
            builder = builder.interceptor(mir_runtime::eventlog::Recorder::new(cfg, &me).unwrap());
        }
        let recorded_as = if twin { NodeId::new(&format!("{me}b")) } else { me.clone() };
        builder
            .passive("app", App { me: recorded_as, outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .passive("source", TestSource { delay: self.source_delay, twin })
            .passive("validator", TestValidator)
            .passive("pbft", DslModule::new(pbft))
            .active("timer", Timer::new())
    }

    /// Builds the simulation (not run yet).
    pub fn build(&self) -> (Simulation, Outcome) {
        let outcome: Outcome = Arc::default();
        let mut sim =
            Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(self.seed) });
        for i in 0..self.weights.len() {
            let (setup, out) = (self.clone(), outcome.clone());
            if self.restartable {
                sim.add_restartable_node(move || setup.node(i, &out, false)).unwrap();
            } else {
                sim.add_node(self.node(i, &outcome, false)).unwrap();
            }
        }
        (sim, outcome)
    }
}

/// Short timeouts, so that view changes happen within seconds of simulated time.
pub fn fast_config() -> PbftConfig {
    PbftConfig {
        sn_timeout: Duration::from_millis(500),
        segment_timeout: Some(Duration::from_secs(2)),
        view_change_resend: Duration::from_millis(200),
        done_resend: Duration::from_millis(200),
        catch_up_delay: Duration::from_millis(200),
        ..PbftConfig::default()
    }
}

/// Whether every node of `nodes` delivered every sn of `sns`.
pub fn all_delivered(outcome: &Outcome, nodes: &[NodeId], sns: &[Sn]) -> bool {
    let all = outcome.lock().unwrap();
    nodes
        .iter()
        .all(|n| all.get(n).is_some_and(|s| sns.iter().all(|sn| s.delivered.contains_key(sn))))
}

/// Agreement among `nodes` and each sn delivered at most once per node; returns, per sn, the
/// value delivered.
pub fn check_safety(
    outcome: &Outcome,
    nodes: &[NodeId],
) -> Result<BTreeMap<Sn, Option<Vec<u8>>>, String> {
    let all = outcome.lock().unwrap();
    let mut decided: BTreeMap<Sn, (NodeId, Option<Vec<u8>>)> = BTreeMap::new();
    for n in nodes {
        let Some(seen) = all.get(n) else { continue };
        for (sn, values) in &seen.delivered {
            if values.len() > 1 {
                return Err(format!("node {n} delivered sn {sn} {} times", values.len()));
            }
            match decided.get(sn) {
                None => {
                    decided.insert(*sn, (n.clone(), values[0].clone()));
                }
                Some((m, v)) if *v != values[0] => {
                    return Err(format!(
                        "nodes {m} and {n} delivered different values for sn {sn}: {v:?} vs {:?}",
                        values[0]
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(decided.into_iter().map(|(sn, (_, v))| (sn, v)).collect())
}

/// The number of seeds for a sweep: `var` from the environment, else `default`.
pub fn seeds(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
