//! The deterministic simulation executor: many nodes, one thread, one seed.
//!
//! A [`Simulation`] runs whole clusters of nodes built from the same [`NodeBuilder`]s as
//! production nodes, with the same module code. Everything that can vary between runs is decided
//! by one seeded generator ([`SimRng`]):
//!
//! 1. **Which module runs next.** At each step the simulator collects every (node, module) that
//!    has queued events and picks one at random; that module gets one batch. This explores
//!    interleavings that a real executor produces only by chance.
//! 2. **Time.** The clock is simulated ([`Time`] starts at zero). It does not move while modules
//!    have work (unless [`SimConfig::step_cost`] charges time per batch); when all queues are empty
//!    it jumps to the next timeline item: an alarm of an active module (so the
//!    [timer](crate::stdmodules::Timer) works unchanged) or a network delivery.
//! 3. **The network.** Every node gets a simulated transport module, [`SimConfig::transport_id`]
//!    (`net` by default). A [`SendMessage`] to it is encoded once and delivered to each destination
//!    as a [`MessageReceived`] after a latency drawn uniformly from [`SimConfig::latency`] — the
//!    payload arrives in encoded form, exactly as over a real network. A message for a node or a
//!    module that does not exist is dropped and counted, never a crash. Faults — loss,
//!    duplication, latency per link, partitions, crashes and restarts — are scripted with
//!    [`Fault`]; Byzantine nodes come from the [adversary layer](crate::adversary)
//!    ([`Simulation::make_byzantine`]).
//! 4. **Ties.** Timeline items at equal times run in the order they were scheduled.
//!
//! The simulator keeps a SHA-256 **digest** of everything that happened: every batch handed to
//! every module (time, node, module, each event's canonical encoding), every alarm and every
//! delivery. Same seed, same digest, bit for bit; see [`Simulation::digest`].
//!
//! Modules must not read clocks, use unseeded randomness, iterate hash maps into their output, or
//! talk to threads: the simulator cannot see those, and the digest check is there to catch them.
//! Active modules get no [`EventSink`](crate::EventSink) here ([`Context::sink`](crate::Context::sink)
//! is `None`).

mod faults;
mod plan;
mod rng;
pub mod twins;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::fmt;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

pub use faults::{Fault, LinkConfig};
pub use plan::{sweep, FaultPlan, FaultProfile, PartitionShape};
pub use rng::SimRng;

use faults::Network;

use crate::adversary::{Adversary, AdversaryStats};
use crate::core::{Dispatch, NodeBuilder, NodeCore};
use crate::error::{Activity, BuildError, NodeError};
use crate::event::{Event, Payload};
use crate::eventlog::{Monitor, Observed, Violation};
use crate::id::{ModuleId, NodeId};
use crate::module::{AlarmId, ModuleError};
use crate::stats::NodeStats;
use crate::stdevents::{Init, Message, MessageReceived, SendMessage};
use crate::time::Time;

/// Settings of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The seed: the same seed (and the same nodes) gives the same run.
    pub seed: u64,
    /// Network latency, uniform in `[min, max]`. Default 1–10 ms.
    pub latency: (Duration, Duration),
    /// Simulated time charged per batch handed to a module. Default zero: time moves only when
    /// every queue is empty.
    pub step_cost: Duration,
    /// The ID of the simulated transport module added to every node. Default `net`.
    pub transport_id: String,
    /// Whether to keep the digest of the run ([`Simulation::digest`]). Default `true`; turning
    /// it off roughly doubles the speed of event-heavy runs (every event is encoded and hashed
    /// otherwise), for long sweeps whose determinism is checked on a sample.
    pub digest: bool,
    /// Whether to keep every batch handed to a module ([`Simulation::trace`]), for finding where
    /// two runs diverge ([`check_determinism`]). Default `false` (it keeps every event).
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            latency: (Duration::from_millis(1), Duration::from_millis(10)),
            step_cost: Duration::ZERO,
            transport_id: "net".to_owned(),
            digest: true,
            trace: false,
        }
    }
}

impl SimConfig {
    /// The default settings with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        SimConfig { seed, ..SimConfig::default() }
    }
}

/// Why a simulation stopped with an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A node failed (a module error or panic, an event for a missing module).
    #[error("at {time} (step {step}): {error}")]
    Node {
        /// Simulated time.
        time: Time,
        /// Steps taken before the failure.
        step: u64,
        /// The node's error.
        error: Box<NodeError>,
    },
    /// No node has this ID.
    #[error("no node {0} in the simulation")]
    UnknownNode(NodeId),
    /// Two nodes were given one ID.
    #[error("node {0} is added twice")]
    DuplicateNode(NodeId),
    /// An injected event names a module the node does not have.
    #[error("cannot inject {type_name} into node {node}: it has no module {dest}")]
    UnknownDestination {
        /// The node.
        node: NodeId,
        /// The destination given.
        dest: ModuleId,
        /// The event type.
        type_name: String,
    },
    /// An injected event's source is neither `@node` nor a module of the node (see
    /// [`InjectError::UnknownSource`](crate::InjectError::UnknownSource)).
    #[error("cannot inject {type_name} into node {node}: source {src} is neither @node nor a module of the node")]
    UnknownSource {
        /// The node.
        node: NodeId,
        /// The source given.
        src: ModuleId,
        /// The event type.
        type_name: String,
    },
    /// A node could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// [`Fault::Restart`] of a node added with [`Simulation::add_node`] (use
    /// [`Simulation::add_restartable_node`]).
    #[error("node {0} cannot restart: add it with Simulation::add_restartable_node")]
    NotRestartable(NodeId),
    /// A node was added after the first step (all nodes start together).
    #[error(
        "node {0} is added after the simulation started; add every node before the first step"
    )]
    AlreadyStarted(NodeId),
    /// [`Fault::Restart`] of a node that is running.
    #[error("node {0} is running; crash it before restarting it")]
    NotCrashed(NodeId),
    /// A fault that cannot be applied as given.
    #[error("bad fault: {0}")]
    BadFault(String),
    /// Nothing is left to do (no queued event, nothing scheduled), yet modules wait for
    /// answers that can no longer come ([`PassiveModule::waiting_for`](crate::PassiveModule::waiting_for)).
    #[error("stalled at {time}: nothing is scheduled, yet {}", waiting.iter().map(|(n, m, w)| format!("node {n} module {m}: {w}")).collect::<Vec<_>>().join("; "))]
    Stalled {
        /// Simulated time.
        time: Time,
        /// (node, module, what it waits for), for every running node.
        waiting: Vec<(NodeId, ModuleId, String)>,
    },
    /// An online monitor ([`Simulation::add_monitor`]) found its invariant violated; the run
    /// stopped before the module handled the violating batch.
    #[error("at {time} (step {step}): {violation}")]
    Violation {
        /// Simulated time.
        time: Time,
        /// Steps taken before.
        step: u64,
        /// What is wrong, and the events that show it.
        violation: Box<Violation>,
    },
}

/// A SHA-256 digest of a run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Figures about a run so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Steps taken (batches dispatched, alarms fired, messages delivered).
    pub steps: u64,
    /// Events handed to modules.
    pub events: u64,
    /// Messages delivered by the simulated network.
    pub messages_delivered: u64,
    /// Messages a node sent to itself, delivered at once on the local loopback (never lost,
    /// delayed, duplicated or cut by faults).
    pub messages_local: u64,
    /// Messages dropped because their destination node or module does not exist.
    pub messages_dropped: u64,
    /// Messages lost to faults: dropped links, partitions, crashed receivers.
    pub messages_lost: u64,
    /// Messages delivered twice by a duplicating link.
    pub messages_duplicated: u64,
    /// Simulated time now.
    pub time: Time,
}

enum Item {
    Alarm {
        node: usize,
        /// The incarnation of the node that set the alarm (a restart makes old alarms stale).
        epoch: u64,
        module: usize,
        alarm: u64,
    },
    Fault(Fault),
    Deliver {
        node: usize,
        event: Event,
    },
}

struct Scheduled {
    at: Time,
    seq: u64,
    item: Item,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and the earliest item must come out first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

struct SimNode {
    core: NodeCore,
    port: usize,
    crashed: bool,
    epoch: u64,
    rebuild: Option<Box<dyn Fn() -> NodeBuilder>>,
    /// Set for a Byzantine node: rewrites what it sends.
    adversary: Option<Adversary>,
    /// Its clock ([`Fault::ClockRate`]): (simulated time, its time then, its rate since).
    clock: (Time, Time, f64),
}

impl SimNode {
    /// The node's own time at simulated time `t` (exact unless [`Fault::ClockRate`] drifted it).
    fn local(&self, t: Time) -> Time {
        let (g, l, rate) = self.clock;
        if rate == 1.0 {
            return l + (t.since_start().saturating_sub(g.since_start()));
        }
        l + t.since_start().saturating_sub(g.since_start()).mul_f64(rate)
    }

    /// The simulated time at which the node's own clock shows `t`.
    fn global(&self, t: Time) -> Time {
        let (g, l, rate) = self.clock;
        let ahead = t.since_start().saturating_sub(l.since_start());
        if rate == 1.0 {
            g + ahead
        } else {
            g + ahead.div_f64(rate)
        }
    }
}

/// A deterministic simulation of a cluster. See the [module docs](self).
///
/// ```
/// use mir_runtime::sim::{Simulation, SimConfig};
/// use mir_runtime::{Node, stdmodules::NullModule};
/// let mut sim = Simulation::new(SimConfig::with_seed(7));
/// sim.add_node(Node::builder("0").passive("app", NullModule)).unwrap();
/// sim.add_node(Node::builder("1").passive("app", NullModule)).unwrap();
/// let summary = sim.run_until_idle(std::time::Duration::from_secs(1)).unwrap();
/// assert_eq!(summary.events, 4); // one Init per module: app and net on two nodes
/// println!("digest {}", sim.digest());
/// ```
pub struct Simulation {
    /// Which dropped messages were logged (per node and destination module).
    log: crate::ratelog::LogLimiter,
    cfg: SimConfig,
    rng: SimRng,
    now: Time,
    nodes: Vec<SimNode>,
    by_id: BTreeMap<NodeId, usize>,
    /// Twins ([`Simulation::add_twin`]): a node ID → the slots of its other instances.
    twins: BTreeMap<NodeId, Vec<usize>>,
    timeline: BinaryHeap<Scheduled>,
    /// (node, epoch, alarm) of alarms set and neither fired nor cancelled.
    pending_alarms: HashSet<(usize, u64, u64)>,
    network: Network,
    seq: u64,
    hasher: Sha256,
    hashbuf: HashBuf,
    started: bool,
    ready: Vec<(usize, usize)>,
    summary: RunSummary,
    trace: Vec<TraceStep>,
    monitors: Vec<Box<dyn Monitor>>,
}

impl Simulation {
    /// An empty simulation.
    pub fn new(cfg: SimConfig) -> Self {
        let network = Network { latency: cfg.latency, ..Network::default() };
        Simulation {
            log: crate::ratelog::LogLimiter::default(),
            rng: SimRng::new(cfg.seed),
            cfg,
            now: Time::ZERO,
            nodes: Vec::new(),
            by_id: BTreeMap::new(),
            twins: BTreeMap::new(),
            timeline: BinaryHeap::new(),
            pending_alarms: HashSet::new(),
            network,
            seq: 0,
            hasher: Sha256::new(),
            hashbuf: HashBuf::default(),
            started: false,
            ready: Vec::new(),
            trace: Vec::new(),
            monitors: Vec::new(),
            summary: RunSummary {
                steps: 0,
                events: 0,
                messages_delivered: 0,
                messages_local: 0,
                messages_dropped: 0,
                messages_lost: 0,
                messages_duplicated: 0,
                time: Time::ZERO,
            },
        }
    }

    /// Adds a node (before the first step). The simulator adds the transport module
    /// ([`SimConfig::transport_id`]) to it; a module of that name in `builder` is an error.
    pub fn add_node(&mut self, builder: NodeBuilder) -> Result<NodeId, SimError> {
        self.add(builder, None)
    }

    /// Adds a node that can be crashed and restarted ([`Fault::Restart`]): `build` is called now
    /// and again at every restart, and must describe the node from scratch (a restarted node
    /// keeps nothing).
    pub fn add_restartable_node(
        &mut self,
        build: impl Fn() -> NodeBuilder + 'static,
    ) -> Result<NodeId, SimError> {
        let builder = build();
        self.add(builder, Some(Box::new(build)))
    }

    /// Adds a **twin**: a second instance of node `builder.node` (same ID; give it the same keys),
    /// as in the Twins method. Faults and injections name it `alias`; what it sends comes from
    /// the shared ID; a message to the ID reaches every instance that the sender is not cut from
    /// (so partitions decide which twin hears whom). Twins are how a test makes one identity
    /// equivocate with honest code. `alias` must be new; the ID must already have a node.
    pub fn add_twin(&mut self, builder: NodeBuilder, alias: NodeId) -> Result<NodeId, SimError> {
        let id = builder.node.clone();
        if !self.by_id.contains_key(&id) {
            return Err(SimError::UnknownNode(id));
        }
        if self.by_id.contains_key(&alias) {
            return Err(SimError::DuplicateNode(alias));
        }
        let slot = self.nodes.len();
        self.add_slot(builder, None, alias.clone())?;
        self.twins.entry(id).or_default().push(slot);
        Ok(alias)
    }

    fn add(
        &mut self,
        builder: NodeBuilder,
        rebuild: Option<Box<dyn Fn() -> NodeBuilder>>,
    ) -> Result<NodeId, SimError> {
        let id = builder.node.clone();
        if self.by_id.contains_key(&id) {
            return Err(SimError::DuplicateNode(id));
        }
        self.add_slot(builder, rebuild, id)
    }

    fn add_slot(
        &mut self,
        builder: NodeBuilder,
        rebuild: Option<Box<dyn Fn() -> NodeBuilder>>,
        id: NodeId,
    ) -> Result<NodeId, SimError> {
        if self.started {
            return Err(SimError::AlreadyStarted(id));
        }
        let core = builder.port(&self.cfg.transport_id.clone()).build_core()?;
        let port = core.ids.len() - 1;
        self.by_id.insert(id.clone(), self.nodes.len());
        self.nodes.push(SimNode {
            core,
            port,
            crashed: false,
            epoch: 0,
            rebuild,
            adversary: None,
            clock: (Time::ZERO, Time::ZERO, 1.0),
        });
        Ok(id)
    }

    /// Makes `node` Byzantine: from now on, what its modules send passes through `adversary`
    /// (see [`adversary`](crate::adversary)); its messages to itself stay honest. The adversary's
    /// randomness is drawn from the simulation's seed and the node, apart from the scheduler's,
    /// so marking a node Byzantine does not change how the rest of the run is drawn. Returns the
    /// previous adversary, if any.
    pub fn make_byzantine(
        &mut self,
        node: &NodeId,
        mut adversary: Adversary,
    ) -> Result<Option<Adversary>, SimError> {
        let n = *self.by_id.get(node).ok_or_else(|| SimError::UnknownNode(node.clone()))?;
        let salt = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        adversary.seed(self.cfg.seed ^ 0xB1A5_ED00_0000_0000 ^ salt);
        Ok(self.nodes[n].adversary.replace(adversary))
    }

    /// Checks `monitor` **online**: every batch handed to a module, of every node, in simulated
    /// order, before the module handles it; the first violation stops the run with
    /// [`SimError::Violation`] naming the events. The same monitors check recorded logs
    /// ([`eventlog::check`](crate::eventlog::check)). Call [`Simulation::finish_monitors`] at the
    /// end for invariants about the whole run.
    pub fn add_monitor(&mut self, monitor: impl Monitor + 'static) {
        self.monitors.push(Box::new(monitor));
    }

    /// Runs every monitor's [`Monitor::finish`].
    pub fn finish_monitors(&mut self) -> Result<(), SimError> {
        for m in &mut self.monitors {
            m.finish().map_err(|v| SimError::Violation {
                time: self.now,
                step: self.summary.steps,
                violation: Box::new(v),
            })?;
        }
        Ok(())
    }

    /// What the adversary of `node` did so far (`None` if the node is honest or unknown).
    pub fn adversary_stats(&self, node: &NodeId) -> Option<AdversaryStats> {
        let n = *self.by_id.get(node)?;
        self.nodes[n].adversary.as_ref().map(Adversary::stats)
    }

    /// The simulated time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The nodes, in the order they were added.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.core.node.clone()).collect()
    }

    /// Statistics of a node.
    pub fn stats(&self, node: &NodeId) -> Option<NodeStats> {
        let n = self.by_id.get(node)?;
        self.nodes[*n].core.publish_stats(false);
        Some(self.nodes[*n].core.stats.snapshot())
    }

    /// Figures about the run so far.
    pub fn summary(&self) -> RunSummary {
        RunSummary { time: self.now, ..self.summary.clone() }
    }

    /// The digest of everything that happened so far: every batch handed to a module (time,
    /// node, module, the events' canonical encodings), every alarm, every delivery and injection.
    /// (With [`SimConfig::digest`] off, the digest of nothing.)
    pub fn digest(&self) -> Digest {
        Digest(self.hasher.clone().finalize().into())
    }

    fn start(&mut self) -> Result<(), SimError> {
        if !self.started {
            self.started = true;
            for n in 0..self.nodes.len() {
                self.nodes[n].core.enqueue_init().map_err(|e| self.node_error(e))?;
            }
        }
        Ok(())
    }

    fn node_error(&self, error: NodeError) -> SimError {
        SimError::Node { time: self.now, step: self.summary.steps, error: Box::new(error) }
    }

    /// Puts events into a node's queues now (as if injected from outside).
    pub fn inject(&mut self, node: &NodeId, events: Vec<Event>) -> Result<(), SimError> {
        self.start()?;
        let n = *self.by_id.get(node).ok_or_else(|| SimError::UnknownNode(node.clone()))?;
        let core = &mut self.nodes[n].core;
        if let Some(ev) = events.iter().find(|ev| core.index_of(ev.dest.top()).is_none()) {
            return Err(SimError::UnknownDestination {
                node: node.clone(),
                dest: ev.dest.clone(),
                type_name: ev.name().to_owned(),
            });
        }
        if let Some(ev) =
            events.iter().find(|ev| !ev.src.is_node() && core.index_of(ev.src.top()).is_none())
        {
            return Err(SimError::UnknownSource {
                node: node.clone(),
                src: ev.src.clone(),
                type_name: ev.name().to_owned(),
            });
        }
        if self.cfg.digest {
            self.hasher.update(b"I");
            self.hasher.update((n as u64).to_le_bytes());
        }
        for ev in events {
            if self.cfg.digest {
                self.hashbuf.add(&ev);
                self.hashbuf.flush(&mut self.hasher);
            }
            core.route(ev).map_err(|e| SimError::Node {
                time: self.now,
                step: self.summary.steps,
                error: Box::new(e),
            })?;
        }
        Ok(())
    }

    fn schedule(&mut self, at: Time, item: Item) {
        self.seq += 1;
        self.timeline.push(Scheduled { at, seq: self.seq, item });
    }

    fn collect_alarms(&mut self, n: usize) {
        let req = &mut self.nodes[n].core.alarms;
        let set: Vec<_> = req.set.drain(..).collect();
        let cancel: Vec<_> = req.cancel.drain(..).collect();
        let epoch = self.nodes[n].epoch;
        for (id, at, module) in set {
            self.pending_alarms.insert((n, epoch, id.0));
            // Alarms are set in the node's own time.
            let at = self.nodes[n].global(at).max(self.now);
            self.schedule(at, Item::Alarm { node: n, epoch, module, alarm: id.0 });
        }
        for id in cancel {
            self.pending_alarms.remove(&(n, epoch, id.0));
        }
    }

    /// Takes one step: one batch to one module chosen by the seed, or, when no module has work,
    /// the next timeline item (moving the clock). Returns `false` when there is nothing left to
    /// do.
    pub fn step(&mut self) -> Result<bool, SimError> {
        self.step_until(None)
    }

    fn step_until(&mut self, deadline: Option<Time>) -> Result<bool, SimError> {
        self.start()?;
        self.ready.clear();
        for (n, node) in self.nodes.iter().enumerate().filter(|(_, node)| !node.crashed) {
            for i in 0..node.core.ids.len() {
                if node.core.ready(i) {
                    self.ready.push((n, i));
                }
            }
        }
        if !self.ready.is_empty() {
            let (n, i) = self.ready[self.rng.below(self.ready.len() as u64) as usize];
            self.dispatch(n, i)?;
            self.summary.steps += 1;
            if !self.cfg.step_cost.is_zero() {
                self.now = self.now + self.cfg.step_cost;
            }
            // Items that fell due while time was charged for work.
            self.fire_due()?;
            return Ok(true);
        }
        let Some(next) = self.timeline.peek() else {
            return Ok(false);
        };
        if deadline.is_some_and(|d| next.at > d) {
            return Ok(false);
        }
        self.now = self.now.max(next.at);
        let item = self.timeline.pop().expect("peeked");
        self.fire(item.item)?;
        self.summary.steps += 1;
        Ok(true)
    }

    fn fire_due(&mut self) -> Result<(), SimError> {
        while self.timeline.peek().is_some_and(|s| s.at <= self.now) {
            let item = self.timeline.pop().expect("peeked");
            self.fire(item.item)?;
        }
        Ok(())
    }

    fn fire(&mut self, item: Item) -> Result<(), SimError> {
        match item {
            Item::Alarm { node, epoch, module, alarm } => {
                if !self.pending_alarms.remove(&(node, epoch, alarm)) {
                    return Ok(()); // cancelled, or set before a crash
                }
                self.hasher.update(b"A");
                self.hasher.update(self.now.since_start().as_nanos().to_le_bytes());
                self.hasher.update((node as u64).to_le_bytes());
                self.hasher.update((module as u64).to_le_bytes());
                self.hasher.update(alarm.to_le_bytes());
                let now = self.nodes[node].local(self.now);
                let res = self.nodes[node].core.fire_alarm(module, AlarmId(alarm), now);
                res.map_err(|e| self.node_error(e))?;
                self.collect_alarms(node);
            }
            Item::Fault(f) => self.apply_fault(f)?,
            Item::Deliver { node, event } => {
                if self.nodes[node].crashed {
                    self.summary.messages_lost += 1;
                    return Ok(());
                }
                let core = &mut self.nodes[node].core;
                if core.index_of(event.dest.top()).is_none() {
                    self.summary.messages_dropped += 1;
                    if let Some(count) = self.log.occurred(core.node.as_str(), event.dest.top()) {
                        let dest = crate::ratelog::escaped(event.dest.as_str());
                        tracing::warn!(node = %core.node, %dest, count, "simulated network: message for a module this node does not have; dropped");
                    }
                    return Ok(());
                }
                self.hasher.update(b"M");
                self.hasher.update(self.now.since_start().as_nanos().to_le_bytes());
                self.hasher.update((node as u64).to_le_bytes());
                self.hashbuf.add(&event);
                self.hashbuf.flush(&mut self.hasher);
                self.summary.messages_delivered += 1;
                let res = core.route(event);
                res.map_err(|e| self.node_error(e))?;
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, n: usize, i: usize) -> Result<(), SimError> {
        let now = self.now;
        {
            let core = &self.nodes[n].core;
            let len = core.queue(i).len().min(core.cfg.max_batch_size);
            self.summary.events += len as u64;
            if self.cfg.trace {
                self.trace.push(TraceStep {
                    step: self.summary.steps,
                    time: now,
                    node: core.node.clone(),
                    module: core.ids[i].clone(),
                    events: core.queue(i).iter().take(len).cloned().collect(),
                });
            }
            if self.cfg.digest {
                self.hasher.update(b"B");
                self.hasher.update(now.since_start().as_nanos().to_le_bytes());
                self.hasher.update((n as u64).to_le_bytes());
                self.hasher.update((i as u64).to_le_bytes());
                self.hasher.update((len as u64).to_le_bytes());
                for ev in core.queue(i).iter().take(len) {
                    self.hashbuf.add(ev);
                }
                self.hashbuf.flush(&mut self.hasher);
            }
        }
        if !self.monitors.is_empty() {
            self.observe(n, i)?;
        }
        let local = self.nodes[n].local(now);
        let res = self.nodes[n].core.dispatch(i, local);
        match res.map_err(|e| self.node_error(e))? {
            Dispatch::Handled => {}
            // No worker threads in the simulator: worker modules run inline.
            Dispatch::Offload(_) => unreachable!("the simulator never moves modules to workers"),
            Dispatch::Port(batch) => {
                debug_assert_eq!(i, self.nodes[n].port);
                self.transport(n, batch)?;
            }
        }
        self.collect_alarms(n);
        Ok(())
    }

    /// Shows the next batch of module `i` of node `n` to the monitors.
    fn observe(&mut self, n: usize, i: usize) -> Result<(), SimError> {
        let core = &self.nodes[n].core;
        let len = core.queue(i).len().min(core.cfg.max_batch_size);
        let first = core.dispatched();
        for (k, ev) in core.queue(i).iter().take(len).enumerate() {
            let o = Observed {
                node: core.node.clone(),
                module: core.ids[i].clone(),
                time_ns: self.now.since_start().as_nanos() as u64,
                index: first + k as u64,
                event: ev.clone(),
            };
            for m in &mut self.monitors {
                m.observe(&o).map_err(|v| SimError::Violation {
                    time: self.now,
                    step: self.summary.steps,
                    violation: Box::new(v),
                })?;
            }
        }
        Ok(())
    }

    /// The simulated transport of node `n` handles a batch.
    fn transport(&mut self, n: usize, mut batch: Vec<Event>) -> Result<(), SimError> {
        let from = self.nodes[n].core.node.clone();
        let me = self.nodes[n].core.ids[self.nodes[n].port].clone();
        for ev in batch.drain(..) {
            if ev.is::<Init>() {
                continue;
            }
            let send = match ev.into_payload::<SendMessage>() {
                Ok(s) => s,
                Err(e) => {
                    let error = ModuleError::new(format!(
                        "the simulated transport only handles {} (got {e})",
                        "mir.SendMessage"
                    ));
                    return Err(self.node_error(NodeError::ModuleFailed {
                        node: from,
                        module: me,
                        activity: Activity::Batch { batch_len: 1 },
                        error,
                    }));
                }
            };
            let encoded = Message {
                dest_module: send.message.dest_module.clone(),
                payload: Payload::encoded(
                    send.message.payload.name(),
                    send.message.payload.encode_value(),
                ),
            };
            if self.nodes[n].adversary.is_some() {
                // A Byzantine node: its messages to itself stay honest; the rest go as rewritten.
                if send.destinations.contains(&from) {
                    self.loopback(n, &me, &encoded)?;
                }
                let ids: Vec<NodeId> = self.by_id.keys().cloned().collect();
                let adv = self.nodes[n].adversary.as_mut().expect("checked");
                for o in adv.rewrite(&from, &ids, &send) {
                    let message = Message {
                        dest_module: o.message.dest_module.clone(),
                        payload: Payload::encoded(
                            o.message.payload.name(),
                            o.message.payload.encode_value(),
                        ),
                    };
                    self.send_over_network(n, &me, &o.to, &message, o.delay);
                }
                continue;
            }
            for dest in &send.destinations {
                if *dest == from {
                    self.loopback(n, &me, &encoded)?;
                    if !self.twins.is_empty() {
                        // The other instances of this ID hear it over the network.
                        self.send_over_network(n, &me, dest, &encoded, Duration::ZERO);
                    }
                    continue;
                }
                self.send_over_network(n, &me, dest, &encoded, Duration::ZERO);
            }
        }
        self.nodes[n].core.recycle(batch);
        Ok(())
    }

    /// Sends `message` from node `n` (whose transport is `port`) to node `dest` over the simulated
    /// network: partitions, loss, duplication and latency apply, after `extra` delay.
    fn send_over_network(
        &mut self,
        n: usize,
        port: &ModuleId,
        dest: &NodeId,
        message: &Message,
        extra: Duration,
    ) {
        let from = self.nodes[n].core.node.clone();
        let Some(&d) = self.by_id.get(dest) else {
            self.summary.messages_dropped += 1;
            tracing::warn!(node = %from, dest = %dest, "simulated network: message to an unknown node; dropped");
            return;
        };
        if self.twins.is_empty() {
            return self.send_to_slot(n, port, d, message, extra);
        }
        // With twins: every instance of the ID other than the sender itself.
        let mut slots = vec![d];
        slots.extend(self.twins.get(dest).into_iter().flatten().copied());
        for d in slots.into_iter().filter(|d| *d != n) {
            self.send_to_slot(n, port, d, message, extra);
        }
    }

    /// [`Simulation::send_over_network`] to one instance.
    fn send_to_slot(
        &mut self,
        n: usize,
        port: &ModuleId,
        d: usize,
        message: &Message,
        extra: Duration,
    ) {
        let from = self.nodes[n].core.node.clone();
        if self.network.cut(n, d) {
            self.summary.messages_lost += 1;
            return;
        }
        let (latency, drop, duplicate) = self.network.link(n, d);
        // `chance(0)` draws nothing, so fault-free runs use the generator as before.
        if self.rng.chance(drop) {
            self.summary.messages_lost += 1;
            return;
        }
        let copies = if self.rng.chance(duplicate) { 2 } else { 1 };
        self.summary.messages_duplicated += copies - 1;
        for _ in 0..copies {
            let (lo, hi) = latency;
            let latency =
                Duration::from_nanos(self.rng.between(lo.as_nanos() as u64, hi.as_nanos() as u64));
            let received = MessageReceived { from: from.clone(), message: message.clone() };
            let event = Event::new(port.clone(), message.dest_module.clone(), received);
            self.schedule(self.now + extra + latency, Item::Deliver { node: d, event });
        }
    }

    /// Node `n`'s message to itself: straight into its destination's queue, now (the local
    /// loopback every executor provides), or dropped and counted if the node has no such module.
    fn loopback(&mut self, n: usize, port: &ModuleId, message: &Message) -> Result<(), SimError> {
        let core = &mut self.nodes[n].core;
        if core.index_of(message.dest_module.top()).is_none() {
            self.summary.messages_dropped += 1;
            if let Some(count) = self.log.occurred(core.node.as_str(), message.dest_module.top()) {
                let dest = crate::ratelog::escaped(message.dest_module.as_str());
                tracing::warn!(node = %core.node, %dest, count, "simulated loopback: message for a module this node does not have; dropped");
            }
            return Ok(());
        }
        let received = MessageReceived { from: core.node.clone(), message: message.clone() };
        let event = Event::new(port.clone(), message.dest_module.clone(), received);
        self.summary.messages_local += 1;
        let res = core.route(event);
        res.map_err(|e| self.node_error(e))
    }

    /// Every batch handed to a module so far, in order (empty unless [`SimConfig::trace`]).
    pub fn trace(&self) -> &[TraceStep] {
        &self.trace
    }

    /// Applies a fault now. See [`Fault`].
    pub fn apply_fault(&mut self, fault: Fault) -> Result<(), SimError> {
        if self.cfg.digest {
            self.hasher.update(b"F");
            self.hasher.update(self.now.since_start().as_nanos().to_le_bytes());
            self.hasher.update(format!("{fault:?}").as_bytes());
        }
        let index = |sim: &Self, id: &NodeId| {
            sim.by_id.get(id).copied().ok_or_else(|| SimError::UnknownNode(id.clone()))
        };
        match fault {
            Fault::Partition(groups) => {
                let mut map = BTreeMap::new();
                for (g, members) in groups.iter().enumerate() {
                    for m in members {
                        map.insert(index(self, m)?, g);
                    }
                }
                self.network.groups = Some(map);
            }
            Fault::Heal => {
                self.network.groups = None;
                self.network.links.clear();
                self.network.default = LinkConfig::default();
            }
            Fault::EndPartition => self.network.groups = None,
            Fault::ResetLink { from, to } => {
                let key = (index(self, &from)?, index(self, &to)?);
                self.network.links.remove(&key);
            }
            Fault::Link { from, to, config } => {
                let key = (index(self, &from)?, index(self, &to)?);
                self.network.links.insert(key, config);
            }
            Fault::AllLinks(config) => self.network.default = config,
            Fault::Crash(id) => {
                let n = index(self, &id)?;
                let node = &mut self.nodes[n];
                node.crashed = true;
                node.core.clear_queues();
                let epoch = node.epoch;
                self.pending_alarms.retain(|(m, e, _)| !(*m == n && *e == epoch));
            }
            Fault::ClockRate { node, rate } => {
                let n = index(self, &node)?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(SimError::BadFault(format!(
                        "clock rate {rate} of node {node}: must be a positive number"
                    )));
                }
                let node = &mut self.nodes[n];
                node.clock = (self.now, node.local(self.now), rate);
            }
            Fault::Restart(id) => {
                let n = index(self, &id)?;
                if !self.nodes[n].crashed {
                    return Err(SimError::NotCrashed(id));
                }
                let Some(rebuild) = &self.nodes[n].rebuild else {
                    return Err(SimError::NotRestartable(id));
                };
                let builder = rebuild();
                if builder.node != id {
                    return Err(SimError::Build(BuildError::RebuiltAsOtherNode {
                        expected: id,
                        got: builder.node,
                    }));
                }
                let core = builder.port(&self.cfg.transport_id.clone()).build_core()?;
                let node = &mut self.nodes[n];
                node.core = core;
                node.crashed = false;
                node.epoch += 1;
                if self.started {
                    let res = self.nodes[n].core.enqueue_init();
                    res.map_err(|e| self.node_error(e))?;
                }
            }
        }
        Ok(())
    }

    /// Schedules a fault at simulated time `at` (since the start of the simulation). Faults at the
    /// same time apply in the order they were scheduled.
    pub fn schedule_fault(&mut self, at: Duration, fault: Fault) {
        self.schedule(Time::from_duration(at), Item::Fault(fault));
    }

    /// Whether a node is crashed.
    pub fn is_crashed(&self, node: &NodeId) -> Option<bool> {
        self.by_id.get(node).map(|n| self.nodes[*n].crashed)
    }

    /// Runs for `d` of simulated time (or until nothing is left to do). Items due exactly at the
    /// end run.
    pub fn run_for(&mut self, d: Duration) -> Result<RunSummary, SimError> {
        let deadline = self.now + d;
        while self.step_until(Some(deadline))? {}
        self.now = self.now.max(deadline);
        Ok(self.summary())
    }

    /// Runs until nothing is left to do, or until `limit` of simulated time has passed (a repeating
    /// timer never lets a simulation go idle). Nothing left to do while a running node's modules
    /// still wait for answers is [`SimError::Stalled`], naming them.
    pub fn run_until_idle(&mut self, limit: Duration) -> Result<RunSummary, SimError> {
        let deadline = self.now + limit;
        while self.step_until(Some(deadline))? {}
        if self.timeline.is_empty() {
            self.check_not_stalled()?;
        }
        Ok(self.summary())
    }

    /// What the running nodes' modules wait for (see [`SimError::Stalled`]).
    pub fn waiting(&self) -> Vec<(NodeId, ModuleId, String)> {
        let mut out = Vec::new();
        for node in self.nodes.iter().filter(|n| !n.crashed) {
            let id = node.core.node.clone();
            out.extend(node.core.waiting().into_iter().map(|(m, w)| (id.clone(), m, w)));
        }
        out
    }

    fn check_not_stalled(&self) -> Result<(), SimError> {
        let waiting = self.waiting();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(SimError::Stalled { time: self.now, waiting })
        }
    }

    /// Runs until `done` returns true (checked after every step), nothing is left to do, or `limit`
    /// of simulated time has passed. Returns whether `done` became true; nothing left to do
    /// before `done` while modules wait for answers is [`SimError::Stalled`].
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Simulation) -> bool,
    ) -> Result<bool, SimError> {
        let deadline = self.now + limit;
        loop {
            if done(self) {
                return Ok(true);
            }
            if !self.step_until(Some(deadline))? {
                let done = done(self);
                if !done && self.timeline.is_empty() {
                    self.check_not_stalled()?;
                }
                return Ok(done);
            }
        }
    }
}

/// Buffers for hashing events without allocating.
#[derive(Default)]
struct HashBuf {
    out: Vec<u8>,
    scratch: Vec<u8>,
}

impl HashBuf {
    /// Appends an event's canonical encoding, length-prefixed.
    fn add(&mut self, ev: &Event) {
        let start = self.out.len();
        self.out.extend_from_slice(&[0; 8]);
        ev.encode_with(&mut self.out, &mut self.scratch);
        let len = (self.out.len() - start - 8) as u64;
        self.out[start..start + 8].copy_from_slice(&len.to_le_bytes());
    }

    /// Feeds everything added to the hasher.
    fn flush(&mut self, h: &mut Sha256) {
        h.update(&self.out);
        self.out.clear();
    }
}

/// One batch handed to a module, as kept by a tracing simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    /// The simulation step.
    pub step: u64,
    /// Simulated time.
    pub time: Time,
    /// The node.
    pub node: NodeId,
    /// The module.
    pub module: ModuleId,
    /// The batch.
    pub events: Vec<Event>,
}

/// Where two runs first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The position in the traces (batches handed to modules).
    pub position: usize,
    /// The first run's batch there (`None`: the run ended).
    pub first: Option<TraceStep>,
    /// The second run's batch there (`None`: the run ended).
    pub second: Option<TraceStep>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |t: &Option<TraceStep>| match t {
            None => "(the run had ended)".to_owned(),
            Some(t) => format!("at {} node {} module {}: {:?}", t.time, t.node, t.module, t.events),
        };
        write!(
            f,
            "runs diverge at batch #{}:\n  first:  {}\n  second: {}",
            self.position,
            side(&self.first),
            side(&self.second)
        )
    }
}

/// The first place where two traces differ (time, node, module or any event's canonical
/// encoding), or `None` if they are the same.
pub fn first_divergence(a: &[TraceStep], b: &[TraceStep]) -> Option<Divergence> {
    let same = |x: &TraceStep, y: &TraceStep| {
        x.time == y.time && x.node == y.node && x.module == y.module && x.events == y.events
    };
    let n = a.len().max(b.len());
    (0..n)
        .find(|i| !matches!((a.get(*i), b.get(*i)), (Some(x), Some(y)) if same(x, y)))
        .map(|i| Divergence { position: i, first: a.get(i).cloned(), second: b.get(i).cloned() })
}

/// Why a determinism check failed.
#[derive(Debug, thiserror::Error)]
pub enum DeterminismError {
    /// The two runs differ.
    #[error("{0}")]
    Diverged(Box<Divergence>),
    /// A run failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Builds a simulation twice with `cfg` (tracing on), runs each with `run`, and compares
/// everything that happened. `Ok` carries the common digest.
///
/// ```
/// use std::time::Duration;
/// use mir_runtime::sim::{check_determinism, SimConfig, Simulation};
/// use mir_runtime::{Node, stdmodules::NullModule};
/// let digest = check_determinism(
///     SimConfig::with_seed(3),
///     |sim| { sim.add_node(Node::builder("0").passive("app", NullModule))?; Ok(()) },
///     |sim| { sim.run_until_idle(Duration::from_secs(1))?; Ok(()) },
/// ).unwrap();
/// println!("deterministic; digest {digest}");
/// ```
pub fn check_determinism(
    cfg: SimConfig,
    build: impl Fn(&mut Simulation) -> Result<(), SimError>,
    run: impl Fn(&mut Simulation) -> Result<(), SimError>,
) -> Result<Digest, DeterminismError> {
    let once = || -> Result<Simulation, SimError> {
        let mut sim = Simulation::new(SimConfig { trace: true, digest: true, ..cfg.clone() });
        build(&mut sim)?;
        run(&mut sim)?;
        Ok(sim)
    };
    let (a, b) = (once()?, once()?);
    match first_divergence(a.trace(), b.trace()) {
        Some(d) => Err(DeterminismError::Diverged(Box::new(d))),
        None if a.digest() != b.digest() => Err(DeterminismError::Diverged(Box::new(Divergence {
            position: a.trace().len(),
            first: None,
            second: None,
        }))),
        None => Ok(a.digest()),
    }
}
