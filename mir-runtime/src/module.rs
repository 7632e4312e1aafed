//! Modules: the units a node is made of.
//!
//! * A [`PassiveModule`] is protocol logic: a batch of events in, events out, deterministic,
//!   never called concurrently with itself. It has no clock and no randomness of its own: time and
//!   randomness arrive as events.
//! * An [`ActiveModule`] also makes events on its own: it can set **alarms** on the executor's
//!   clock (that is how the [timer](crate::stdmodules::timer) works, identically in both executors)
//!   and, in the production executor, hand an [`EventSink`] to its own threads or tasks (network,
//!   clients).
//!
//! Both receive their input as a [`Batch`] (an iterator of [`Event`]s, in FIFO order) and write
//! their output to an [`Outbox`]. Returning an error, or panicking, stops the node with an error
//! that names the module and the event being handled: that is for bugs in the node itself. Bad input
//! from a peer must be dropped (and counted) by the module, not turned into an error.

use std::fmt;
use std::time::Duration;

use crate::core::EventSink;
use crate::core::Router;
use crate::event::{Event, Payload};
use crate::id::ModuleId;
use crate::time::Time;

/// The error a module returns when it cannot go on: a bug in this node (a broken invariant, an
/// event it can never receive in a correct node). It stops the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModuleError(pub String);

impl ModuleError {
    /// An error with the given message.
    pub fn new(msg: impl fmt::Display) -> Self {
        ModuleError(msg.to_string())
    }

    /// The standard error for an event type a module does not handle.
    pub fn unexpected_event(ev: &Event) -> Self {
        ModuleError(format!("unexpected event type {} from {}", ev.name(), ev.src))
    }
}

/// The result of handling a batch.
pub type ModuleResult = Result<(), ModuleError>;

/// Where the node keeps track of which event of a batch a module is handling, so that an error or
/// a panic can name it.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    pub(crate) taken: usize,
    /// The type name of the last event taken, when it is typed (the common case: no allocation).
    pub(crate) name: Option<&'static str>,
    /// The type name of the last event taken, when it is encoded.
    pub(crate) encoded_name: String,
}

impl Cursor {
    pub(crate) fn name(&self) -> &str {
        self.name.unwrap_or(&self.encoded_name)
    }
}

/// A batch of events for one module, in the order they were queued. Iterate it to take the events.
///
/// Events a module does not take are dropped when the batch is dropped (as if ignored).
pub struct Batch<'a> {
    drain: std::vec::Drain<'a, Event>,
    cursor: &'a mut Cursor,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(events: &'a mut Vec<Event>, cursor: &'a mut Cursor) -> Self {
        cursor.taken = 0;
        cursor.name = Some("");
        Batch { drain: events.drain(..), cursor }
    }
}

impl Iterator for Batch<'_> {
    type Item = Event;

    #[inline]
    fn next(&mut self) -> Option<Event> {
        let ev = self.drain.next()?;
        self.cursor.taken += 1;
        self.cursor.name = ev.payload.static_name();
        if self.cursor.name.is_none() {
            self.cursor.encoded_name.clear();
            self.cursor.encoded_name.push_str(ev.name());
        }
        Some(ev)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.drain.size_hint()
    }
}

impl ExactSizeIterator for Batch<'_> {}

/// Where a module writes the events it emits.
///
/// ```
/// use mir_runtime::{ModuleId, Outbox, stdevents::TestString};
/// let mut out = Outbox::new(ModuleId::new("me"));
/// out.send(&ModuleId::new("other"), TestString("hi".into()));
/// let evs = out.take();
/// assert_eq!(evs[0].src.as_str(), "me");
/// assert_eq!(evs[0].dest.as_str(), "other");
/// ```
pub struct Outbox {
    me: ModuleId,
    /// Emitted events, when the outbox is not connected to a node's queues.
    events: Vec<Event>,
    /// Inside a node: the node's queues, so emitted events go straight to their destination.
    router: Option<Router>,
    emitted: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("me", &self.me)
            .field("emitted", &self.emitted)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An empty outbox for module `me` (useful to call a module directly in tests).
    pub fn new(me: ModuleId) -> Self {
        Outbox { me, events: Vec::new(), router: None, emitted: 0 }
    }

    pub(crate) fn with_router(me: ModuleId, router: Router) -> Self {
        Outbox { me, events: Vec::new(), router: Some(router), emitted: 0 }
    }

    /// The ID of the module writing to this outbox (the source of [`Outbox::send`]).
    pub fn me(&self) -> &ModuleId {
        &self.me
    }

    /// Emits an event as it is.
    #[inline]
    pub fn emit(&mut self, ev: Event) {
        self.emitted += 1;
        match &mut self.router {
            Some(r) => r.route(ev),
            None => self.events.push(ev),
        }
    }

    /// Emits `payload` from this module to `dest`.
    #[inline]
    pub fn send(&mut self, dest: &ModuleId, payload: impl Into<Payload>) {
        self.emitted += 1;
        let me = &self.me;
        let make = || Event { src: me.clone(), dest: dest.clone(), payload: payload.into() };
        match &mut self.router {
            Some(r) => r.route_to(dest, make),
            None => self.events.push(make()),
        }
    }

    /// Number of events emitted since the module was called (or the outbox made).
    pub fn len(&self) -> usize {
        self.emitted
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.emitted == 0
    }

    /// The emitted events so far (leaves the outbox empty). Inside a node, events go straight to
    /// their destinations and this is empty.
    pub fn take(&mut self) -> Vec<Event> {
        self.emitted = 0;
        std::mem::take(&mut self.events)
    }

    pub(crate) fn set_me(&mut self, me: &ModuleId) {
        if self.me != *me {
            self.me = me.clone();
        }
    }

    /// Whether `dest`'s top-level module exists in this node (always `true` outside a node). A
    /// module that relays peers' messages (a link, a gateway) checks it, because an event for a
    /// missing module stops the node: a peer must not be able to name one.
    pub fn has_module(&self, dest: &ModuleId) -> bool {
        self.router.as_ref().is_none_or(|r| r.has(dest))
    }

    pub(crate) fn router(&mut self) -> &mut Router {
        self.router.as_mut().expect("the node's outbox has a router")
    }

    pub(crate) fn router_ref(&self) -> &Router {
        self.router.as_ref().expect("the node's outbox has a router")
    }

    /// Prepares the node's outbox for a call of module `src`.
    pub(crate) fn begin(&mut self, me: &ModuleId, src: usize) {
        self.set_me(me);
        self.emitted = 0;
        if let Some(r) = &mut self.router {
            r.src = src;
        }
    }
}

/// Protocol logic: deterministic, a batch of events in, events out.
///
/// ```
/// use mir_runtime::{Batch, Outbox, PassiveModule, ModuleResult, ModuleId, stdevents::TestUint64};
/// /// Answers every number with its double.
/// struct Doubler { reply_to: ModuleId }
/// impl PassiveModule for Doubler {
///     fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
///         for ev in events {
///             if let Some(TestUint64(n)) = ev.get::<TestUint64>() {
///                 out.send(&self.reply_to, TestUint64(n * 2));
///             }
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait PassiveModule: Send + 'static {
    /// Handles a batch of events, writing output events to `out`.
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult;

    /// Whether peers may send this module messages: **refused unless declared**. A peer can name
    /// any module of a node as a message's destination; for a module that answers `false` (the
    /// default: local services such as the hasher, crypto, the timer, transports) the node drops
    /// every [`MessageReceived`](crate::stdevents::MessageReceived) addressed to it before the
    /// module sees it, logs it (WARN, rate-limited) and counts it
    /// ([`ModuleStats::messages_refused`](crate::ModuleStats)). Protocol modules that take
    /// messages answer `true` (a `#[protocol]` with `#[upon(message)]` handlers does so by
    /// itself). Asked once, when the node is built.
    fn accepts_messages(&self) -> bool {
        false
    }

    /// What this module is waiting for, if anything: requests it made that have no answer yet.
    /// The simulator names these when a run stalls (nothing left to do while work is pending:
    /// [`SimError::Stalled`](crate::sim::SimError::Stalled)). Default: nothing. DSL modules
    /// report their pending requests; a factory reports its submodules'.
    fn waiting_for(&self) -> Vec<String> {
        Vec::new()
    }
}

impl PassiveModule for Box<dyn PassiveModule> {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        (**self).apply_events(events, out)
    }
    fn accepts_messages(&self) -> bool {
        (**self).accepts_messages()
    }
    fn waiting_for(&self) -> Vec<String> {
        (**self).waiting_for()
    }
}

/// The identifier of an alarm set by an active module (unique within a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmId(pub u64);

#[derive(Debug, Default)]
pub(crate) struct AlarmRequests {
    pub(crate) next_id: u64,
    /// The module being called (index in the node), recorded with each alarm it sets.
    pub(crate) current: usize,
    pub(crate) set: Vec<(AlarmId, Time, usize)>,
    pub(crate) cancel: Vec<AlarmId>,
}

/// What an [`ActiveModule`] can do besides emitting events: read the executor's clock, set alarms,
/// and (production executor only) get an [`EventSink`] for its own threads.
pub struct Context<'a> {
    pub(crate) out: &'a mut Outbox,
    pub(crate) now: Time,
    pub(crate) alarms: &'a mut AlarmRequests,
    pub(crate) sink: Option<&'a EventSink>,
}

impl Context<'_> {
    /// The executor's current time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The outbox for emitted events.
    pub fn out(&mut self) -> &mut Outbox {
        self.out
    }

    /// Emits `payload` from this module to `dest`.
    pub fn send(&mut self, dest: &ModuleId, payload: impl Into<Payload>) {
        self.out.send(dest, payload)
    }

    /// Emits an event as it is.
    pub fn emit(&mut self, ev: Event) {
        self.out.emit(ev)
    }

    /// Asks the executor to call [`ActiveModule::on_alarm`] at time `at` (at once if `at` is
    /// past). Alarms with equal times fire in the order they were set.
    pub fn set_alarm(&mut self, at: Time) -> AlarmId {
        let id = AlarmId(self.alarms.next_id);
        self.alarms.next_id += 1;
        self.alarms.set.push((id, at, self.alarms.current));
        id
    }

    /// [`Context::set_alarm`] at `now + after`.
    pub fn set_alarm_after(&mut self, after: Duration) -> AlarmId {
        let at = self.now + after;
        self.set_alarm(at)
    }

    /// Whether this node has the module `dest` would be routed to (its top-level module). Emitting
    /// an event for a module the node does not have stops the node; a transport that delivers a
    /// node's messages to itself checks here first and drops (and counts) the others, as it does
    /// for messages from peers.
    pub fn has_module(&self, dest: &ModuleId) -> bool {
        self.out.has_module(dest)
    }

    /// Cancels an alarm that has not fired yet (no effect otherwise).
    pub fn cancel_alarm(&mut self, id: AlarmId) {
        self.alarms.cancel.push(id);
    }

    /// A handle through which other threads and tasks can inject events into this node (bounded:
    /// it waits while the node is overloaded). `None` in the deterministic simulator, where nothing
    /// may happen outside the simulator's control.
    pub fn sink(&self) -> Option<EventSink> {
        self.sink.cloned()
    }
}

/// A module that also makes events on its own (timers, network, clients).
///
/// `apply_events` and `on_alarm` must not block: hand blocking work to a thread or task and bring
/// its results back through [`Context::sink`].
pub trait ActiveModule: Send + 'static {
    /// Handles a batch of events.
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult;

    /// Called when an alarm set through [`Context::set_alarm`] is due.
    fn on_alarm(&mut self, alarm: AlarmId, cx: &mut Context<'_>) -> ModuleResult {
        let _ = (alarm, cx);
        Ok(())
    }

    /// Whether peers may send this module messages; see
    /// [`PassiveModule::accepts_messages`]. Default `false` (transports, the timer and clients'
    /// gateways make messages; they do not take them).
    fn accepts_messages(&self) -> bool {
        false
    }
}
