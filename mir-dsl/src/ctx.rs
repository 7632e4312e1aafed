//! The handler context: what a handler can do besides changing its state.

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use mir_runtime::stdevents::crypto::{Origin, Request, Response};
use mir_runtime::stdevents::{Message, SendMessage};
use mir_runtime::{ModuleError, ModuleId, NodeId, Outbox, Payload};

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

/// Pending requests: continuation values by request number (sequential, so deterministic).
#[derive(Default)]
pub(crate) struct Continuations {
    next: u64,
    pending: BTreeMap<u64, Box<dyn Any + Send>>,
}

impl Continuations {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// The context a handler gets: emit events, send messages, make requests.
pub struct Ctx<'a, P: ?Sized> {
    out: &'a mut Outbox,
    conts: &'a mut Continuations,
    src: ModuleId,
    _protocol: PhantomData<fn(&P)>,
}

impl<'a, P: ?Sized> Ctx<'a, P> {
    #[inline]
    pub(crate) fn new(out: &'a mut Outbox, conts: &'a mut Continuations, src: ModuleId) -> Self {
        Ctx { out, conts, src, _protocol: PhantomData }
    }

    pub(crate) fn into_source(self) -> ModuleId {
        self.src
    }

    /// This module's ID.
    pub fn me(&self) -> &ModuleId {
        self.out.me()
    }

    /// The source module of the event being handled (for conditions: of the last event).
    pub fn source(&self) -> &ModuleId {
        &self.src
    }

    /// Emits `payload` to module `dest` of this node.
    #[inline]
    pub fn emit(&mut self, dest: &ModuleId, payload: impl Into<Payload>) {
        self.out.send(dest, payload);
    }

    /// Sends `msg` through the transport module `net` to this protocol's module (same ID) on
    /// each of `to`.
    pub fn send<'n>(
        &mut self,
        net: &ModuleId,
        to: impl IntoIterator<Item = &'n NodeId>,
        msg: impl Into<Payload>,
    ) {
        let dest_module = self.out.me().clone();
        self.send_to_module(net, to, &dest_module, msg);
    }

    /// Sends `msg` through `net` to module `module` on each of `to`.
    pub fn send_to_module<'n>(
        &mut self,
        net: &ModuleId,
        to: impl IntoIterator<Item = &'n NodeId>,
        module: &ModuleId,
        msg: impl Into<Payload>,
    ) {
        let destinations: Vec<NodeId> = to.into_iter().cloned().collect();
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
    /// (a [`TimerDelay`](mir_runtime::stdevents::TimerDelay) holding one event from this module to
    /// itself). Time reaches a protocol only this way, so the simulator controls it. The timer's
    /// retention index is `u64::MAX`: a
    /// [`TimerGarbageCollect`](mir_runtime::stdevents::TimerGarbageCollect) never cancels it (the
    /// protocol ignores a timeout it no longer needs).
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
        delay: std::time::Duration,
        payload: impl Into<Payload>,
    ) {
        let me = self.out.me().clone();
        let ev = mir_runtime::Event::new(me.clone(), me, payload);
        self.out.send(
            timer,
            mir_runtime::stdevents::TimerDelay {
                id: None,
                delay,
                retention_index: u64::MAX,
                events: vec![ev],
            },
        );
    }

    /// Sends `request` to module `dest` and keeps `cont`; the response comes back to the
    /// `#[upon(response)]` handler taking `(R::Response, C)`, with `cont`.
    pub fn request<R, C>(&mut self, dest: &ModuleId, mut request: R, cont: C)
    where
        R: Request,
        C: Send + 'static,
        P: HandlesResponse<R::Response, C>,
    {
        let id = self.conts.next;
        self.conts.next += 1;
        self.conts.pending.insert(id, Box::new(cont));
        request.set_origin(Origin { module: self.out.me().clone(), id });
        self.out.send(dest, request);
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
    /// `C`. A response that matches no pending request of this module is fatal.
    pub fn pending_is<P: ?Sized, R: Response, C: 'static>(
        ctx: &Ctx<'_, P>,
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
            None => Err(Reject::Fatal(ModuleError::new(format!(
                "response {} (request #{}) matches no pending request",
                R::NAME,
                origin.id
            )))),
            Some(c) => Ok(c.is::<C>()),
        }
    }

    /// Takes the continuation of response `res` (checked by [`pending_is`]).
    pub fn take_continuation<P: ?Sized, R: Response, C: 'static>(
        ctx: &mut Ctx<'_, P>,
        res: &R,
    ) -> C {
        let c = ctx.conts.pending.remove(&res.origin().id).expect("checked by pending_is");
        *c.downcast::<C>().expect("checked by pending_is")
    }
}
