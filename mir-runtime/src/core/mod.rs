//! The node: its modules, their queues, routing and dispatch — everything the two executors share.
//!
//! [`NodeBuilder`] collects modules and configuration; [`NodeBuilder::build`] makes a production
//! [`Node`](crate::Node), and [`Simulation::add_node`](crate::sim::Simulation::add_node) puts the
//! same description into the deterministic simulator. Both drive the same `NodeCore`, so the
//! routing, batching, ordering and failure rules below hold in both:
//!
//! 1. Each top-level module has one FIFO queue. Events are routed on the first segment of their
//!    destination; an event for a module the node does not have stops the node with
//!    [`NodeError::UnknownDestination`].
//! 2. A module receives at most [`NodeConfig::max_batch_size`] events per call, in queue order,
//!    and is never called while another call of it is in progress.
//! 3. The events a module emits in one call are routed in the order it emitted them, so events
//!    from one module to another arrive in emission order.
//! 4. At start every module gets one [`Init`] event, in registration order, before anything else.
//! 5. A module error or panic stops the node with an error naming the node, the module and the
//!    event (type, position in the batch).

pub(crate) mod builder;
pub(crate) mod intercept;
pub(crate) mod router;
pub(crate) mod sink;

pub(crate) use builder::ModuleKind;
pub use builder::NodeBuilder;
pub use intercept::Interceptor;
pub(crate) use router::Router;
pub use sink::{EventSink, InjectError};

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::config::NodeConfig;
use crate::error::{Activity, BuildError, EventRef, NodeError};
use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::module::{
    ActiveModule, AlarmId, AlarmRequests, Batch, Context, Cursor, ModuleError, Outbox,
    PassiveModule,
};
use crate::stats::SharedStats;
use crate::stdevents::Init;
use crate::time::Time;

pub(crate) enum Slot {
    /// The flag says whether the module asked for a worker thread.
    Passive(Box<dyn PassiveModule>, bool),
    Active(Box<dyn ActiveModule>),
    /// A passive module running on a worker thread; `true` while it has a batch.
    Remote(bool),
    Port,
}

/// What [`NodeCore::dispatch`] did.
pub(crate) enum Dispatch {
    /// A module handled a batch.
    Handled,
    /// A batch for a remote module: send it to its worker.
    Offload(Vec<Event>),
    /// A batch for a port: the executor handles it.
    Port(Vec<Event>),
}

pub(crate) struct NodeCore {
    pub(crate) node: NodeId,
    pub(crate) cfg: NodeConfig,
    pub(crate) ids: Vec<ModuleId>,
    pub(crate) slots: Vec<Slot>,
    /// Per module: whether peers' messages reach it.
    accepts: Vec<bool>,
    max_queued: Vec<usize>,
    pub(crate) stats: Arc<SharedStats>,
    scratch: Vec<Event>,
    spare: Vec<Event>,
    /// The outbox modules write to; it holds the [`Router`] (the queues), so emitted events go
    /// straight to their destination queue.
    outbox: Outbox,
    cursor: Cursor,
    pub(crate) alarms: AlarmRequests,
    pub(crate) sink: Option<EventSink>,
    interceptor: Option<Box<dyn crate::core::intercept::Interceptor>>,
    /// Events dispatched so far (the position of the next batch's first event).
    dispatched: u64,
    /// Which refused peer messages were logged (per sender and module).
    log: crate::ratelog::LogLimiter,
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

fn activity(cursor: &Cursor, batch_len: usize) -> Activity {
    if cursor.taken == 0 {
        Activity::Batch { batch_len }
    } else {
        Activity::Event(EventRef {
            type_name: cursor.name().to_owned(),
            index: cursor.taken - 1,
            batch_len,
        })
    }
}

/// Runs one batch through a passive module, turning an error or panic into a [`NodeError`].
/// `batch` is left empty; output is appended to `out`.
pub(crate) fn run_passive(
    node: &NodeId,
    id: &ModuleId,
    module: &mut dyn PassiveModule,
    batch: &mut Vec<Event>,
    cursor: &mut Cursor,
    out: &mut Outbox,
) -> Result<(), NodeError> {
    let len = batch.len();
    out.set_me(id);
    let res =
        catch_unwind(AssertUnwindSafe(|| module.apply_events(Batch::new(batch, cursor), out)));
    batch.clear();
    fail(node, id, res, || activity(cursor, len))
}

fn fail(
    node: &NodeId,
    id: &ModuleId,
    res: std::thread::Result<Result<(), ModuleError>>,
    activity: impl FnOnce() -> Activity,
) -> Result<(), NodeError> {
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(NodeError::ModuleFailed {
            node: node.clone(),
            module: id.clone(),
            activity: activity(),
            error,
        }),
        Err(p) => Err(NodeError::ModulePanicked {
            node: node.clone(),
            module: id.clone(),
            activity: activity(),
            message: panic_message(&*p),
        }),
    }
}

impl NodeCore {
    /// The index of the top-level module `top`.
    pub(crate) fn index_of(&self, top: &str) -> Option<usize> {
        self.ids.iter().position(|id| id.as_str() == top)
    }

    /// Puts an event in its destination's queue.
    pub(crate) fn route(&mut self, ev: Event) -> Result<(), NodeError> {
        self.outbox.router().route(ev);
        self.check_routed()
    }

    /// Turns an event that could not be routed into the node's error.
    fn check_routed(&mut self) -> Result<(), NodeError> {
        match self.outbox.router().unknown.take() {
            None => Ok(()),
            Some(ev) => Err(self.unknown_destination(&ev)),
        }
    }

    /// Events in all queues.
    pub(crate) fn buffered(&self) -> usize {
        self.outbox.router_ref().buffered
    }

    /// Drops every queued event (a crash).
    pub(crate) fn clear_queues(&mut self) {
        let router = self.outbox.router();
        for q in &mut router.queues {
            q.clear();
        }
        router.buffered = 0;
    }

    /// Module `i`'s queue.
    pub(crate) fn queue(&self, i: usize) -> &VecDeque<Event> {
        &self.outbox.router_ref().queues[i]
    }

    pub(crate) fn unknown_destination(&self, ev: &Event) -> NodeError {
        NodeError::UnknownDestination {
            node: self.node.clone(),
            src: ev.src.clone(),
            dest: ev.dest.clone(),
            top: ev.dest.top().to_owned(),
            type_name: ev.name().to_owned(),
            known: self.ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", "),
        }
    }

    /// Routes a list of events, e.g. a remote module's output.
    pub(crate) fn route_all(
        &mut self,
        evs: impl IntoIterator<Item = Event>,
    ) -> Result<(), NodeError> {
        for ev in evs {
            self.route(ev)?;
        }
        Ok(())
    }

    /// Queues one `Init` per module, in registration order.
    pub(crate) fn enqueue_init(&mut self) -> Result<(), NodeError> {
        for i in 0..self.ids.len() {
            let ev = Event::new(ModuleId::node(), self.ids[i].clone(), Init);
            self.route(ev)?;
        }
        Ok(())
    }

    /// Whether module `i` has events and can take a batch now.
    #[inline]
    pub(crate) fn ready(&self, i: usize) -> bool {
        !self.queue(i).is_empty() && !matches!(self.slots[i], Slot::Remote(true))
    }

    /// Hands module `i` its next batch (the caller checked [`NodeCore::ready`]).
    pub(crate) fn dispatch(&mut self, i: usize, now: Time) -> Result<Dispatch, NodeError> {
        let router = self.outbox.router();
        let len = router.queues[i].len();
        let n = len.min(self.cfg.max_batch_size);
        router.buffered -= n;
        let mut batch = std::mem::take(&mut self.scratch);
        if n == len {
            // The whole queue: swap allocations instead of moving events one by one.
            let queue = std::mem::replace(&mut router.queues[i], VecDeque::from(batch));
            batch = Vec::from(queue);
        } else {
            batch.extend(router.queues[i].drain(..n));
        }
        // A queue is longest just before it is served.
        self.max_queued[i] = self.max_queued[i].max(len);
        let mut n = n;
        if !self.accepts[i] {
            n = self.refuse_messages(i, &mut batch);
            if n == 0 {
                self.scratch = batch;
                return Ok(Dispatch::Handled);
            }
        }
        let counters = &self.stats.modules[i];
        counters.events.fetch_add(n as u64, Relaxed);
        counters.batches.fetch_add(1, Relaxed);
        if let Some(ic) = &mut self.interceptor {
            ic.intercept(&self.node, &self.ids[i], now, self.dispatched, &batch);
        }
        self.dispatched += n as u64;
        let t0 = Instant::now();
        let id = &self.ids[i];
        let res = match &mut self.slots[i] {
            Slot::Passive(m, _) => run_passive(
                &self.node,
                id,
                &mut **m,
                &mut batch,
                &mut self.cursor,
                &mut self.outbox,
            ),
            Slot::Active(m) => {
                self.outbox.set_me(id);
                self.alarms.current = i;
                let mut cx = Context {
                    out: &mut self.outbox,
                    now,
                    alarms: &mut self.alarms,
                    sink: self.sink.as_ref(),
                };
                let cursor = &mut self.cursor;
                let res = catch_unwind(AssertUnwindSafe(|| {
                    m.apply_events(Batch::new(&mut batch, cursor), &mut cx)
                }));
                batch.clear();
                fail(&self.node, id, res, || activity(&self.cursor, n))
            }
            Slot::Remote(busy) => {
                *busy = true;
                let out = std::mem::replace(&mut batch, std::mem::take(&mut self.spare));
                self.scratch = batch;
                return Ok(Dispatch::Offload(out));
            }
            Slot::Port => {
                let out = std::mem::replace(&mut batch, std::mem::take(&mut self.spare));
                self.scratch = batch;
                return Ok(Dispatch::Port(out));
            }
        };
        self.scratch = batch;
        self.stats.modules[i].busy_ns.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        res?;
        self.check_routed()?;
        Ok(Dispatch::Handled)
    }

    /// Drops the peers' messages from a batch for module `i`, which takes none; returns what is
    /// left.
    #[cold]
    fn refuse_messages(&self, i: usize, batch: &mut Vec<Event>) -> usize {
        use crate::stdevents::MessageReceived;
        batch.retain(|ev| {
            if !ev.is::<MessageReceived>() {
                return true;
            }
            let m = ev.get::<MessageReceived>();
            let from = m.map_or("?", |m| m.from.as_str());
            if let Some(count) = self.log.occurred(from, self.ids[i].as_str()) {
                tracing::warn!(
                    node = %self.node,
                    module = %self.ids[i],
                    from = %crate::ratelog::escaped(from),
                    message = %crate::ratelog::escaped(m.map_or("?", |m| m.message.payload.name())),
                    count,
                    "message from a peer to a module that takes no messages; dropped"
                );
            }
            self.stats.modules[i].refused.fetch_add(1, Relaxed);
            false
        });
        batch.len()
    }

    /// Calls module `i`'s alarm handler.
    pub(crate) fn fire_alarm(
        &mut self,
        i: usize,
        alarm: AlarmId,
        now: Time,
    ) -> Result<(), NodeError> {
        let id = &self.ids[i];
        let Slot::Active(m) = &mut self.slots[i] else {
            return Ok(());
        };
        self.outbox.begin(id, i);
        self.alarms.current = i;
        let t0 = Instant::now();
        let mut cx = Context {
            out: &mut self.outbox,
            now,
            alarms: &mut self.alarms,
            sink: self.sink.as_ref(),
        };
        let res = catch_unwind(AssertUnwindSafe(|| m.on_alarm(alarm, &mut cx)));
        self.stats.modules[i].busy_ns.fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        fail(&self.node, id, res, || Activity::Alarm(alarm.0))?;
        self.check_routed()
    }

    /// A remote module finished its batch; `out` is its output.
    pub(crate) fn complete_remote(
        &mut self,
        i: usize,
        out: Vec<Event>,
        busy_ns: u64,
    ) -> Result<(), NodeError> {
        if let Slot::Remote(busy) = &mut self.slots[i] {
            *busy = false;
        }
        self.stats.modules[i].busy_ns.fetch_add(busy_ns, Relaxed);
        self.route_all(out)
    }

    /// Gives back a batch vector for reuse.
    pub(crate) fn recycle(&mut self, mut v: Vec<Event>) {
        v.clear();
        if v.capacity() > self.spare.capacity() {
            self.spare = v;
        }
    }

    /// Writes queue lengths to the shared statistics.
    pub(crate) fn publish_stats(&self, paused: bool) {
        for (i, c) in self.stats.modules.iter().enumerate() {
            c.queued.store(self.queue(i).len() as u64, Relaxed);
            c.max_queued.store(self.max_queued[i] as u64, Relaxed);
        }
        self.stats.buffered.store(self.buffered() as u64, Relaxed);
        self.stats.outside.store(self.outbox.router_ref().outside, Relaxed);
        self.stats.paused.store(paused, Relaxed);
    }
}

/// A node's pending alarms, ordered by time and then by the order they were set.
#[derive(Default)]
pub(crate) struct AlarmQueue {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Time, u64, usize)>>,
    /// Alarms set and neither fired nor cancelled (membership only; never iterated).
    pending: std::collections::HashSet<u64>,
}

impl AlarmQueue {
    /// Takes the alarm requests and cancellations modules made since the last call.
    pub(crate) fn collect(&mut self, req: &mut AlarmRequests) {
        for (id, at, module) in req.set.drain(..) {
            self.heap.push(std::cmp::Reverse((at, id.0, module)));
            self.pending.insert(id.0);
        }
        for id in req.cancel.drain(..) {
            self.pending.remove(&id.0);
        }
    }

    /// The time of the earliest live alarm.
    pub(crate) fn next_time(&mut self) -> Option<Time> {
        while let Some(std::cmp::Reverse((at, id, _))) = self.heap.peek() {
            if self.pending.contains(id) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the earliest live alarm if it is due at `now`: (module index, alarm).
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(usize, AlarmId)> {
        let at = self.next_time()?;
        if at > now {
            return None;
        }
        let std::cmp::Reverse((_, id, module)) = self.heap.pop().expect("peeked");
        self.pending.remove(&id);
        Some((module, AlarmId(id)))
    }
}

impl NodeCore {
    /// Events dispatched so far: the position of the next batch's first event.
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched
    }

    /// What each passive module on this thread is waiting for (see
    /// [`PassiveModule::waiting_for`]), by module.
    pub(crate) fn waiting(&self) -> Vec<(ModuleId, String)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Slot::Passive(m, _) = slot {
                out.extend(m.waiting_for().into_iter().map(|w| (self.ids[i].clone(), w)));
            }
        }
        out
    }
}

impl NodeBuilder {
    /// The node core both executors drive.
    pub(crate) fn build_core(self) -> Result<NodeCore, BuildError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        if self.modules.is_empty() {
            return Err(BuildError::NoModules);
        }
        let ids: Vec<ModuleId> = self.modules.iter().map(|(id, _)| id.clone()).collect();
        let n = ids.len();
        let slots: Vec<Slot> = self
            .modules
            .into_iter()
            .map(|(_, k)| match k {
                ModuleKind::Passive(m) => Slot::Passive(m, false),
                ModuleKind::Worker(m) => Slot::Passive(m, true),
                ModuleKind::Active(m) => Slot::Active(m),
                ModuleKind::Port => Slot::Port,
            })
            .collect();
        let accepts = slots
            .iter()
            .map(|s| match s {
                Slot::Passive(m, _) => m.accepts_messages(),
                Slot::Active(m) => m.accepts_messages(),
                Slot::Remote(_) | Slot::Port => false,
            })
            .collect();
        Ok(NodeCore {
            accepts,
            stats: SharedStats::new(self.node.clone(), ids.clone()),
            node: self.node,
            cfg: self.config,
            outbox: Outbox::with_router(ids[0].clone(), Router::new(ids.clone())),
            ids,
            slots,
            max_queued: vec![0; n],
            scratch: Vec::new(),
            spare: Vec::new(),
            cursor: Cursor::default(),
            alarms: AlarmRequests::default(),
            sink: None,
            interceptor: self.interceptor,
            dispatched: 0,
            log: crate::ratelog::LogLimiter::default(),
        })
    }
}
