//! The handler context: what a handler can do besides changing its state.

use std::any::Any;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::Duration;

use mir_runtime::stdevents::crypto::{Origin, Request, Response};
use mir_runtime::stdevents::{Message, SendMessage, TimerCancel, TimerDelay, TimerId, TimerRepeat};
use mir_runtime::wal::WalAppend;
use mir_runtime::{Event, ModuleError, ModuleId, NodeId, Outbox, Payload};

/// Why a handler did not complete. See the [crate docs](crate#two-kinds-of-failure).
#[derive(Debug)]
pub enum Reject {
    /// Bad input from a peer (or a client): logged, counted, dropped; the node goes on.
    Ignore(String),
    /// A bug in this node: the node stops with this error.
    Fatal(ModuleError),
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::Ignore(r) => write!(f, "ignored: {r}"),
            Reject::Fatal(e) => write!(f, "fatal: {e}"),
        }
    }
}

/// Declares that protocol `Self` has an `#[upon(response)]` handler taking a response `R` and a
/// continuation `C`. Implemented by `#[protocol]` for each such handler; [`Ctx::request`]
/// requires it, so a request nobody will handle does not compile.
#[diagnostic::on_unimplemented(
    message = "no `#[upon(response)]` handler of `{Self}` takes a `{R}` with a continuation of type `{C}`",
    label = "this request's response would have no handler",
    note = "add `#[upon(response)] fn name(&mut self, ctx: &mut Ctx<Self>, res: {R}, cont: {C}) -> Handled` to a `#[protocol]` block of `{Self}`"
)]
pub trait HandlesResponse<R, C> {}

/// Pending requests: continuation values by request number (sequential, so deterministic), the
/// numbers of cancelled requests whose responses have not come back yet, and the next timer ID.
#[derive(Default)]
pub(crate) struct Continuations {
    next: u64,
    /// Request number → (request type, continuation).
    pending: BTreeMap<u64, (&'static str, Box<dyn Any + Send>)>,
    cancelled: BTreeSet<u64>,
    next_timer: u64,
}

/// A request made with [`Ctx::request`], to cancel it with [`Ctx::cancel_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u64);

impl Continuations {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// The pending requests, by type and number: `mir.crypto.SignRequest #3`.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.pending
            .iter()
            .map(|(id, (name, _))| format!("{name} #{id} has no response yet"))
            .collect()
    }
}

/// The context a handler gets: emit events, send messages, make requests.
pub struct Ctx<'a, P: ?Sized> {
    out: &'a mut Outbox,
    conts: &'a mut Continuations,
    src: &'a ModuleId,
    _protocol: PhantomData<fn(&P)>,
}

impl<'a, P: ?Sized> Ctx<'a, P> {
    #[inline]
    pub(crate) fn new(
        out: &'a mut Outbox,
        conts: &'a mut Continuations,
        src: &'a ModuleId,
    ) -> Self {
        Ctx { out, conts, src, _protocol: PhantomData }
    }

    /// This module's ID.
    pub fn me(&self) -> &ModuleId {
        self.out.me()
    }

    /// The source module of the event being handled (for conditions: of the last event).
    pub fn source(&self) -> &ModuleId {
        self.src
    }

    /// Emits `payload` to module `dest` of this node.
    #[inline]
    pub fn emit(&mut self, dest: &ModuleId, payload: impl Into<Payload>) {
        self.out.send(dest, payload);
    }

    /// **Persist before send.** Logs `record` (an event from this module to itself) in the WAL
    /// module `wal` with `retention_index`; what the returned [`Persist`] names next
    /// ([`Persist::then_send`]) leaves only once the record is durable. The WAL syncs once per
    /// batch, so a handler that persists and sends for many slots costs one sync. On restart the
    /// record comes back in [`WalRecovered`](mir_runtime::wal::WalRecovered). With `wal`
    /// `None` (a node without a WAL) nothing is logged and the message is sent at once.
    ///
    /// ```
    /// use mir_dsl::prelude::*;
    /// use mir_dsl::mir_runtime::{stdevents::TestString, wal::{WalAppend}, Event, testing::apply};
    ///
    /// struct Voter;
    /// #[protocol]
    /// impl Voter {
    ///     /// upon ⟨propose v⟩ do log ⟨voted v⟩; then send VOTE(v) to all
    ///     #[upon(event)]
    ///     fn propose(&mut self, ctx: &mut Ctx<Self>, v: TestString) -> Handled {
    ///         let (wal, net) = (ModuleId::new("wal"), ModuleId::new("net"));
    ///         ctx.persist(Some(&wal), 0, v.clone()).then_send(&net, [NodeId::new("b")], v);
    ///         Ok(())
    ///     }
    /// }
    /// let mut m = DslModule::new(Voter);
    /// let out = apply(&mut m, ModuleId::new("voter"),
    ///     vec![Event::new("app", "voter", TestString("x".into()))]).unwrap();
    /// assert_eq!(out.len(), 1); // one event, to the WAL: the vote waits for the sync
    /// let a: WalAppend = out[0].payload.decode().unwrap().unwrap();
    /// assert_eq!((a.records.len(), a.then.len()), (1, 1));
    /// ```
    pub fn persist(
        &mut self,
        wal: Option<&ModuleId>,
        retention_index: u64,
        record: impl Into<Payload>,
    ) -> Persist<'_, 'a, P> {
        let me = self.out.me().clone();
        let record = Event { src: me.clone(), dest: me, payload: record.into() };
        let append = WalAppend { retention_index, records: vec![record], then: Vec::new() };
        Persist { wal: wal.cloned(), append, ctx: self }
    }

    /// [`Ctx::persist`] with nothing to log, for a message that repeats one logged before: it
    /// leaves once everything this module handed the WAL before is durable (the WAL handles
    /// appends in order and syncs before it releases), so a resend never overtakes the record it
    /// repeats. Without a WAL it leaves at once.
    pub fn after_logged(&mut self, wal: Option<&ModuleId>) -> Persist<'_, 'a, P> {
        let append = WalAppend { retention_index: 0, records: Vec::new(), then: Vec::new() };
        Persist { wal: wal.cloned(), append, ctx: self }
    }

    /// Sends `msg` through the transport module `net` to this protocol's module (same ID) on
    /// each of `to`: any iterable of node IDs, borrowed or owned (`[&leader]`,
    /// `voters.nodes()`, a `Vec<NodeId>`).
    pub fn send<N: Borrow<NodeId>>(
        &mut self,
        net: &ModuleId,
        to: impl IntoIterator<Item = N>,
        msg: impl Into<Payload>,
    ) {
        let dest_module = self.out.me().clone();
        self.send_to_module(net, to, &dest_module, msg);
    }

    /// Sends `msg` through `net` to module `module` on each of `to`.
    pub fn send_to_module<N: Borrow<NodeId>>(
        &mut self,
        net: &ModuleId,
        to: impl IntoIterator<Item = N>,
        module: &ModuleId,
        msg: impl Into<Payload>,
    ) {
        let destinations: Vec<NodeId> = to.into_iter().map(|n| n.borrow().clone()).collect();
        if destinations.is_empty() {
            return;
        }
        self.out.send(
            net,
            SendMessage {
                destinations,
                message: Message { dest_module: module.clone(), payload: msg.into() },
            },
        );
    }

    /// Asks the timer module `timer` to deliver `payload` back to this module `delay` from now
    /// (a [`TimerDelay`] holding one event from this module to itself), and returns the timer's
    /// ID for [`Ctx::cancel`]. Time reaches a protocol only this way, so the simulator controls
    /// it. The timer's retention index is `u64::MAX`: a
    /// [`TimerGarbageCollect`](mir_runtime::stdevents::TimerGarbageCollect) never cancels it.
    /// Works the same in both executors (the timer module runs on the executor's clock).
    ///
    /// ```
    /// # use mir_dsl::{protocol, Ctx, Handled, DslModule};
    /// # use mir_dsl::mir_runtime::{stdevents::{TestUint64, TimerDelay}, Event, ModuleId};
    /// struct Retry;
    /// #[protocol]
    /// impl Retry {
    ///     #[upon(event)]
    ///     fn on_n(&mut self, ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
    ///         if n.0 > 0 {
    ///             ctx.after(&ModuleId::new("timer"), std::time::Duration::from_secs(1), TestUint64(n.0 - 1));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let mut m = DslModule::new(Retry);
    /// let out = mir_dsl::mir_runtime::testing::apply(&mut m, "retry".into(),
    ///     vec![Event::new("app", "retry", TestUint64(2))]).unwrap();
    /// let t = out[0].get::<TimerDelay>().unwrap();
    /// assert_eq!(t.events[0].get::<TestUint64>(), Some(&TestUint64(1)));
    /// ```
    pub fn after(
        &mut self,
        timer: &ModuleId,
        delay: Duration,
        payload: impl Into<Payload>,
    ) -> TimerId {
        let (id, events) = self.timer_event(payload);
        self.out.send(timer, TimerDelay { id: Some(id), delay, retention_index: u64::MAX, events });
        id
    }

    /// Asks the timer module `timer` to deliver `payload` back to this module every `period`
    /// (the first time one period from now) until [`Ctx::cancel`]led; returns the timer's ID.
    /// A zero period is refused by the timer module (the node stops: a bug).
    ///
    /// ```
    /// # use mir_dsl::{protocol, Ctx, Handled, DslModule};
    /// # use mir_dsl::mir_runtime::{stdevents::{Init, TestUint64, TimerRepeat, TimerCancel}, Event, ModuleId};
    /// # use std::time::Duration;
    /// /// A heartbeat every second; the fifth beat stops it.
    /// struct Heartbeat { beats: u64, timer: Option<mir_dsl::mir_runtime::stdevents::TimerId> }
    /// #[protocol]
    /// impl Heartbeat {
    ///     #[upon(event)]
    ///     fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
    ///         self.timer = Some(ctx.every(&ModuleId::new("timer"), Duration::from_secs(1), TestUint64(0)));
    ///         Ok(())
    ///     }
    ///     #[upon(event)]
    ///     fn beat(&mut self, ctx: &mut Ctx<Self>, _b: TestUint64) -> Handled {
    ///         self.beats += 1;
    ///         if self.beats == 5 {
    ///             ctx.cancel(&ModuleId::new("timer"), self.timer.take().unwrap());
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let mut m = DslModule::new(Heartbeat { beats: 4, timer: None });
    /// let out = mir_dsl::mir_runtime::testing::apply(&mut m, "hb".into(), vec![
    ///     Event::new("hb", "hb", Init),
    ///     Event::new("hb", "hb", TestUint64(0)),
    /// ]).unwrap();
    /// let id = out[0].get::<TimerRepeat>().unwrap().id.unwrap();
    /// assert_eq!(out[1].get::<TimerCancel>().unwrap().id, id);
    /// ```
    pub fn every(
        &mut self,
        timer: &ModuleId,
        period: Duration,
        payload: impl Into<Payload>,
    ) -> TimerId {
        let (id, events) = self.timer_event(payload);
        self.out
            .send(timer, TimerRepeat { id: Some(id), period, retention_index: u64::MAX, events });
        id
    }

    /// Cancels this module's timer `id` at the timer module `timer` (made by [`Ctx::after`] or
    /// [`Ctx::every`]). A timer that already fired (one-shot) or was cancelled is not an error;
    /// an event the timer emitted before the cancellation reached it may still arrive.
    pub fn cancel(&mut self, timer: &ModuleId, id: TimerId) {
        self.out.send(timer, TimerCancel { id });
    }

    fn timer_event(&mut self, payload: impl Into<Payload>) -> (TimerId, Vec<mir_runtime::Event>) {
        let id = TimerId(self.conts.next_timer);
        self.conts.next_timer += 1;
        let me = self.out.me().clone();
        (id, vec![mir_runtime::Event::new(me.clone(), me, payload)])
    }

    /// Sends `request` to module `dest` and keeps `cont`; the response comes back to the
    /// `#[upon(response)]` handler taking `(R::Response, C)`, with `cont`. See the
    /// [crate docs](crate#requests-responses-and-typed-continuations) for the lifecycle of `cont`.
    pub fn request<R, C>(&mut self, dest: &ModuleId, mut request: R, cont: C) -> RequestId
    where
        R: Request,
        C: Send + 'static,
        P: HandlesResponse<R::Response, C>,
    {
        let id = self.conts.next;
        self.conts.next += 1;
        self.conts.pending.insert(id, (R::NAME, Box::new(cont)));
        request.set_origin(Origin { module: self.out.me().clone(), id });
        self.out.send(dest, request);
        RequestId(id)
    }

    /// Gives up on request `id`: its continuation is dropped now, and its response, if it still
    /// comes, is dropped (counted as ignored) instead of reaching a handler. Returns whether the
    /// request was pending.
    pub fn cancel_request(&mut self, id: RequestId) -> bool {
        let was = self.conts.pending.remove(&id.0).is_some();
        if was {
            self.conts.cancelled.insert(id.0);
        }
        was
    }

    /// Requests made and not answered yet.
    pub fn pending_requests(&self) -> usize {
        self.conts.len()
    }
}

pub mod private {
    //! Continuation recovery for the generated code.
    use super::*;

    /// Whether the pending request `origin` of response `R` was made with a continuation of type
    /// `C`. The response to a cancelled request is dropped (`Reject::Ignore`, counted); one that
    /// matches no pending or cancelled request of this module is fatal.
    pub fn pending_is<P: ?Sized, R: Response, C: 'static>(
        ctx: &mut Ctx<'_, P>,
        res: &R,
    ) -> Result<bool, Reject> {
        let origin = res.origin();
        if origin.module != *ctx.me() {
            return Err(Reject::Fatal(ModuleError::new(format!(
                "response {} for module {} reached {}",
                R::NAME,
                origin.module,
                ctx.me()
            ))));
        }
        match ctx.conts.pending.get(&origin.id) {
            None if ctx.conts.cancelled.remove(&origin.id) => Err(Reject::Ignore(format!(
                "response {} to request #{}, which was cancelled",
                R::NAME,
                origin.id
            ))),
            None => Err(Reject::Fatal(ModuleError::new(format!(
                "response {} (request #{}) matches no pending request",
                R::NAME,
                origin.id
            )))),
            Some((_, c)) => Ok(c.is::<C>()),
        }
    }

    /// Takes the continuation of response `res` (checked by [`pending_is`]).
    pub fn take_continuation<P: ?Sized, R: Response, C: 'static>(
        ctx: &mut Ctx<'_, P>,
        res: &R,
    ) -> C {
        let (_, c) = ctx.conts.pending.remove(&res.origin().id).expect("checked by pending_is");
        *c.downcast::<C>().expect("checked by pending_is")
    }
}

/// What may leave once a [`Ctx::persist`]ed record is durable.
#[must_use = "the record is logged only by then_send or then_nothing"]
pub struct Persist<'c, 'a, P: ?Sized> {
    ctx: &'c mut Ctx<'a, P>,
    wal: Option<ModuleId>,
    append: WalAppend,
}

impl<P: ?Sized> Persist<'_, '_, P> {
    /// Also logs `record` (in the same append).
    pub fn and(mut self, record: impl Into<Payload>) -> Self {
        let me = self.ctx.out.me().clone();
        self.append.records.push(Event { src: me.clone(), dest: me, payload: record.into() });
        self
    }

    /// Sends `msg` through `net` to this protocol's module on each of `to` once the records are
    /// durable (at once without a WAL), as [`Ctx::send`] does.
    pub fn then_send<N: Borrow<NodeId>>(
        mut self,
        net: &ModuleId,
        to: impl IntoIterator<Item = N>,
        msg: impl Into<Payload>,
    ) {
        let destinations: Vec<NodeId> = to.into_iter().map(|n| n.borrow().clone()).collect();
        let me = self.ctx.out.me().clone();
        let send = SendMessage {
            destinations,
            message: Message { dest_module: me.clone(), payload: msg.into() },
        };
        match &self.wal {
            None => self.ctx.out.send(net, send),
            Some(_) => {
                if !send.destinations.is_empty() {
                    self.append.then.push(Event::new(me, net.clone(), send));
                }
                self.then_nothing();
            }
        }
    }

    /// Emits `payload` to module `dest` of this node once the records are durable (at once
    /// without a WAL): a local answer that promises what was logged (a batch store's "stored").
    pub fn then_emit(mut self, dest: &ModuleId, payload: impl Into<Payload>) {
        let me = self.ctx.out.me().clone();
        match &self.wal {
            None => self.ctx.out.send(dest, payload),
            Some(_) => {
                self.append.then.push(Event::new(me, dest.clone(), payload.into()));
                self.then_nothing();
            }
        }
    }

    /// Logs the records without anything waiting for them.
    pub fn then_nothing(self) {
        if let Some(wal) = &self.wal {
            self.ctx.out.send(wal, self.append);
        }
    }
}
