//! The production executor: a node's event loop as a future on tokio.
//!
//! # How it runs
//!
//! 1. The loop is one future ([`Node::run`]). Passive and active modules run **inline** on the
//!    thread polling it: a hop between two modules is a queue push, not a thread wake-up (which
//!    costs ≈ 25 µs on a 2-core machine, ≈ 400× a same-thread hop).
//! 2. Modules registered with [`NodeBuilder::passive_on_worker`] run on a thread of their own.
//!    The loop hands such a module a whole batch and goes on with the others; the output comes back
//!    as one message. Heavy work (crypto, hashing) thus uses another core without stalling
//!    protocol logic, at one hand-off per batch.
//! 3. Each loop iteration: take worker results; take injected events (unless paused); fire due
//!    alarms (unless paused); give every ready module one batch, round-robin. When nothing is
//!    ready it sleeps until a worker result, an injection, the next alarm, or a stop request.
//! 4. After 32 busy iterations in a row the loop yields to tokio, so other tasks on the same
//!    runtime are not starved.
//!
//! # Back-pressure
//!
//! Input from outside the node — [`NodeHandle::inject`], [`EventSink`]s of active modules, and
//! alarms — stops being admitted while more than `pause_threshold` events are buffered, and resumes
//! at `resume_threshold` or below. Injection channels hold at most `inject_capacity` batches of at
//! most `max_batch_size` events (larger injections are split), so injectors wait instead of memory
//! growing. Passive output is never throttled (a passive module cannot wait); it is bounded by
//! what the protocol emits per input event.
//!
//! # Shutdown
//!
//! [`NodeHandle::stop`] makes `run` return `Ok(Exit::Stopped)` at its next iteration (after the
//! batch in progress). Calling `stop` before `run` makes `run` return at once. Worker threads end
//! after their current batch. Events still queued are dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::NodeConfig;
use crate::core::{
    run_passive, AlarmQueue, Dispatch, EventSink, InjectError, NodeBuilder, NodeCore, Slot,
};
use crate::error::{BuildError, Exit, NodeError};
use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::module::{Cursor, Outbox, PassiveModule};
use crate::stats::{NodeStats, SharedStats};
use crate::time::Time;

/// Controls a running [`Node`]: inject events, read statistics, stop it. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    sink: EventSink,
    stop: Arc<watch::Sender<bool>>,
    stats: Arc<SharedStats>,
}

impl NodeHandle {
    /// The node's ID.
    pub fn node_id(&self) -> &NodeId {
        &self.sink.node
    }

    /// The node's top-level modules, in registration order.
    pub fn modules(&self) -> &[ModuleId] {
        &self.sink.ids
    }

    /// A sink for injecting events (the same one active modules get).
    pub fn sink(&self) -> EventSink {
        self.sink.clone()
    }

    /// See [`EventSink::inject`].
    pub async fn inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.sink.inject(events).await
    }

    /// See [`EventSink::try_inject`].
    pub fn try_inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.sink.try_inject(events)
    }

    /// See [`EventSink::blocking_inject`].
    pub fn blocking_inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.sink.blocking_inject(events)
    }

    /// Asks the node to stop; [`Node::run`] then returns `Ok(Exit::Stopped)`.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A snapshot of the node's statistics.
    pub fn stats(&self) -> NodeStats {
        self.stats.snapshot()
    }
}

/// A node for the production executor. Build it with [`Node::builder`], take a
/// [`handle`](Node::handle), then `.await` [`run`](Node::run) (typically in a spawned task).
///
/// ```
/// use mir_runtime::{Event, Node, stdmodules::NullModule, stdevents::TestString, Exit};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let node = Node::builder("n0").passive("sink", NullModule).build().unwrap();
/// let handle = node.handle();
/// let task = tokio::spawn(node.run());
/// handle.inject(vec![Event::new("sink", "sink", TestString("hi".into()))]).await.unwrap();
/// handle.stop();
/// assert_eq!(task.await.unwrap(), Ok(Exit::Stopped));
/// # }
/// ```
pub struct Node {
    core: NodeCore,
    inject_rx: mpsc::Receiver<Vec<Event>>,
    stop_rx: watch::Receiver<bool>,
    handle: NodeHandle,
}

impl Node {
    /// Starts describing a node.
    pub fn builder(node: impl Into<NodeId>) -> NodeBuilder {
        NodeBuilder::new(node)
    }

    /// A handle to control the node.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.core.cfg
    }

    pub(crate) fn from_core(mut core: NodeCore) -> Node {
        let (tx, inject_rx) = mpsc::channel(core.cfg.inject_capacity);
        let (stop, stop_rx) = watch::channel(false);
        let sink = EventSink {
            node: core.node.clone(),
            tx,
            ids: core.ids.clone().into(),
            max_batch: core.cfg.max_batch_size,
        };
        core.sink = Some(sink.clone());
        let handle = NodeHandle { sink, stop: Arc::new(stop), stats: core.stats.clone() };
        Node { core, inject_rx, stop_rx, handle }
    }

    /// Runs the event loop until the node is stopped (`Ok(Exit::Stopped)`) or fails.
    pub async fn run(self) -> Result<Exit, NodeError> {
        let Node { mut core, mut inject_rx, mut stop_rx, handle } = self;
        drop(handle);
        let start = Instant::now();
        let n = core.ids.len();

        // Move worker modules to their threads.
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WorkerDone>();
        let mut workers: Vec<Option<std::sync::mpsc::SyncSender<Vec<Event>>>> =
            (0..n).map(|_| None).collect();
        for (i, worker) in workers.iter_mut().enumerate() {
            if let Slot::Passive(_, true) = core.slots[i] {
                let Slot::Passive(m, _) =
                    std::mem::replace(&mut core.slots[i], Slot::Remote(false))
                else {
                    unreachable!()
                };
                *worker = Some(spawn_worker(
                    core.node.clone(),
                    core.ids[i].clone(),
                    i,
                    m,
                    done_tx.clone(),
                ));
            }
        }
        drop(done_tx);

        let mut alarms = AlarmQueue::default();
        let mut paused = false;
        let mut busy_rounds = 0u32;
        let stats_period = core.cfg.stats_period;
        let mut next_stats = stats_period.map(|p| start + p);
        let now_time = || Time::from_duration(start.elapsed());

        core.enqueue_init()?;
        loop {
            if *stop_rx.borrow_and_update() {
                return Ok(Exit::Stopped);
            }
            // Alarm requests made by active modules since the last iteration.
            alarms.collect(&mut core.alarms);

            while let Ok(done) = done_rx.try_recv() {
                let out = done.result?;
                core.complete_remote(done.module, out, done.busy_ns)?;
            }

            // Hysteresis on buffered events.
            if paused && core.buffered() <= core.cfg.resume_threshold {
                paused = false;
            }
            if !paused && core.buffered() > core.cfg.pause_threshold {
                paused = true;
                core.stats.pauses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }

            if !paused {
                while let Ok(batch) = inject_rx.try_recv() {
                    core.route_all(batch)?;
                    if core.buffered() > core.cfg.pause_threshold {
                        paused = true;
                        core.stats.pauses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                }
                let now = now_time();
                while core.buffered() <= core.cfg.pause_threshold {
                    let Some((i, id)) = alarms.pop_due(now) else {
                        break;
                    };
                    core.fire_alarm(i, id, now)?;
                    alarms.collect(&mut core.alarms);
                }
            }

            // One batch for every ready module.
            let now = now_time();
            let mut did = false;
            for i in 0..n {
                if !core.ready(i) {
                    continue;
                }
                did = true;
                match core.dispatch(i, now)? {
                    Dispatch::Handled => {}
                    Dispatch::Offload(batch) => {
                        let tx = workers
                            .get(i)
                            .and_then(Option::as_ref)
                            .expect("remote module has a worker");
                        if tx.send(batch).is_err() {
                            return Err(NodeError::WorkerLost {
                                node: core.node.clone(),
                                module: core.ids[i].clone(),
                            });
                        }
                    }
                    Dispatch::Port(batch) => {
                        // Ports exist only in the simulator; a production node never has one.
                        core.recycle(batch);
                    }
                }
                alarms.collect(&mut core.alarms);
            }
            core.publish_stats(paused);

            if let Some(at) = next_stats {
                if Instant::now() >= at {
                    core.stats.snapshot().log();
                    next_stats = Some(at + stats_period.expect("set"));
                }
            }

            if did {
                busy_rounds += 1;
                if busy_rounds >= 32 {
                    busy_rounds = 0;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            busy_rounds = 0;

            // Nothing ready: wait for something to happen.
            let next_alarm =
                if paused { None } else { alarms.next_time().map(|at| start + at.since_start()) };
            let wake = match (next_alarm, next_stats) {
                (Some(a), Some(s)) => Some(a.min(s)),
                (a, s) => a.or(s),
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop_rx.changed() => {}
                done = done_rx.recv() => {
                    if let Some(done) = done {
                        let out = done.result?;
                        core.complete_remote(done.module, out, done.busy_ns)?;
                    }
                }
                Some(batch) = inject_rx.recv(), if !paused => {
                    core.route_all(batch)?;
                }
                _ = sleep => {}
            }
        }
    }
}

struct WorkerDone {
    module: usize,
    result: Result<Vec<Event>, NodeError>,
    busy_ns: u64,
}

fn spawn_worker(
    node: NodeId,
    id: ModuleId,
    index: usize,
    mut module: Box<dyn PassiveModule>,
    done: mpsc::UnboundedSender<WorkerDone>,
) -> std::sync::mpsc::SyncSender<Vec<Event>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(1);
    std::thread::Builder::new()
        .name(format!("mir-{node}-{id}"))
        .spawn(move || {
            let mut cursor = Cursor::default();
            let mut out = Outbox::new(id.clone());
            while let Ok(mut batch) = rx.recv() {
                let t0 = std::time::Instant::now();
                let res = run_passive(&node, &id, &mut *module, &mut batch, &mut cursor, &mut out);
                let busy_ns = t0.elapsed().as_nanos() as u64;
                let failed = res.is_err();
                let result = res.map(|()| out.take());
                if done.send(WorkerDone { module: index, result, busy_ns }).is_err() || failed {
                    break;
                }
            }
        })
        .expect("spawning a worker thread");
    tx
}

impl NodeBuilder {
    /// Builds a node for the production executor. Fails with a clear error for an invalid
    /// configuration, a duplicate or malformed module ID, or no modules.
    pub fn build(self) -> Result<Node, BuildError> {
        Ok(Node::from_core(self.build_core()?))
    }
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("node", &self.sink.node)
            .field("modules", &self.sink.ids)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.core.node)
            .field("modules", &self.core.ids)
            .finish_non_exhaustive()
    }
}
