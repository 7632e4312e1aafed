//! The module that runs a protocol: [`DslModule`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use mir_runtime::{Batch, Event, ModuleResult, Outbox, PassiveModule};

use crate::ctx::{Continuations, Ctx, Reject};
use crate::Handled;

/// A protocol: implemented by `#[protocol]` (not by hand).
pub trait Protocol: Send + 'static {
    /// Whether [`Protocol::__after_event`] does anything (it is skipped otherwise).
    #[doc(hidden)]
    const __HAS_AFTER_EVENT: bool = true;

    /// Whether the protocol has a message handler (in its main block or a part): then its module
    /// takes peers' messages ([`PassiveModule::accepts_messages`]); otherwise the node refuses
    /// them before they reach it.
    #[doc(hidden)]
    const __TAKES_MESSAGES: bool = false;

    /// Offers `ev` to the handlers; gives it back if none takes it.
    #[doc(hidden)]
    fn __dispatch(&mut self, ctx: &mut Ctx<'_, Self>, ev: Event) -> Result<Option<Event>, Reject>;

    /// Runs the per-event conditions.
    #[doc(hidden)]
    fn __after_event(&mut self, ctx: &mut Ctx<'_, Self>) -> Handled {
        let _ = ctx;
        Ok(())
    }

    /// Runs the per-batch conditions.
    #[doc(hidden)]
    fn __after_batch(&mut self, ctx: &mut Ctx<'_, Self>) -> Handled {
        let _ = ctx;
        Ok(())
    }
}

/// Counters of a DSL module, readable while it runs.
#[derive(Debug, Default)]
pub struct DslStats {
    handled: AtomicU64,
    ignored: AtomicU64,
    /// Which ignored inputs were logged: the 1st, 2nd, 4th… per kind and peer (the reason's
    /// head, e.g. `FINAL from 3`).
    log: mir_runtime::ratelog::LogLimiter,
}

impl DslStats {
    /// Events handled.
    pub fn handled(&self) -> u64 {
        self.handled.load(Relaxed)
    }

    /// Inputs dropped as bad (handlers returning `Reject::Ignore`, unknown or malformed messages).
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Relaxed)
    }
}

/// Runs protocol `P` as a passive module of a node.
pub struct DslModule<P> {
    proto: P,
    conts: Continuations,
    stats: Arc<DslStats>,
}

impl<P: Protocol> DslModule<P> {
    /// A module running `proto`.
    pub fn new(proto: P) -> Self {
        DslModule { proto, conts: Continuations::default(), stats: Arc::default() }
    }

    /// The protocol's state.
    pub fn protocol(&self) -> &P {
        &self.proto
    }

    /// The module's counters (shared: keep the handle to read them while the node runs).
    pub fn stats(&self) -> Arc<DslStats> {
        self.stats.clone()
    }

    /// Requests made and not answered yet.
    pub fn pending_requests(&self) -> usize {
        self.conts.len()
    }
}

/// Turns a handler's outcome into the module's: ignored input is counted and logged.
#[inline]
fn settle(stats: &DslStats, me: &mir_runtime::ModuleId, res: Handled) -> ModuleResult {
    match res {
        Ok(()) => Ok(()),
        Err(Reject::Ignore(reason)) => {
            stats.ignored.fetch_add(1, Relaxed);
            // Ignored input is usually a peer's doing: log it rate-limited, escaped.
            let head = mir_runtime::ratelog::head(&reason);
            if let Some(count) = stats.log.occurred(me.as_str(), head) {
                let reason = mir_runtime::ratelog::escaped(&reason);
                tracing::warn!(module = %me, %reason, count, "input ignored");
            }
            Ok(())
        }
        Err(Reject::Fatal(e)) => Err(e),
    }
}

impl<P: Protocol> PassiveModule for DslModule<P> {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let me = out.me().clone();
        // The source of the event being handled: swapped out of the event, not cloned (cloning
        // it from the event just moved out of the batch stalled on store forwarding, a third of
        // the DSL's cost per event). The event keeps the previous source meanwhile, which no
        // handler sees; it is put back before the event is reported.
        let mut src = me.clone();
        let mut handled = 0;
        for mut ev in events {
            std::mem::swap(&mut ev.src, &mut src);
            let mut ctx = Ctx::new(out, &mut self.conts, &src);
            let res = match self.proto.__dispatch(&mut ctx, ev) {
                Ok(None) => Ok(()),
                Ok(Some(mut ev)) => {
                    ev.src = src.clone();
                    private::unhandled(&ev)
                }
                Err(e) => Err(e),
            };
            handled += 1;
            if res.is_err() {
                settle(&self.stats, &me, res)?;
            }
            if P::__HAS_AFTER_EVENT {
                let res = self.proto.__after_event(&mut ctx);
                if res.is_err() {
                    settle(&self.stats, &me, res)?;
                }
            }
        }
        self.stats.handled.fetch_add(handled, Relaxed);
        let mut ctx = Ctx::new(out, &mut self.conts, &src);
        let res = self.proto.__after_batch(&mut ctx);
        settle(&self.stats, &me, res)
    }

    fn accepts_messages(&self) -> bool {
        P::__TAKES_MESSAGES
    }

    fn waiting_for(&self) -> Vec<String> {
        self.conts.describe()
    }
}

pub mod private {
    //! What the generated code calls and implements: decoding helpers, the traits that join a
    //! main block to its parts, and the marker traits that make a handler that would never run a
    //! compile error.
    use mir_runtime::stdevents::{Init, MessageReceived};
    use mir_runtime::{Event, EventPayload, ModuleError, NodeId, PayloadError};

    use crate::ctx::{Ctx, Reject};
    use crate::Handled;

    /// Marks that protocol `Self` has a group of `#[upon(event)]` handlers of `T` (handlers of one
    /// type written the same way in one block). Never used as a bound: two groups of one type
    /// (an alias, a type in the main block and in a part, two parts) are two impls of this trait,
    /// which the compiler refuses (E0119, "conflicting implementations"), because the event would
    /// reach only the first group and the second would never run.
    pub trait HandlesEvent<T: ?Sized> {}

    /// Marks that protocol `Self` has a group of `#[upon(message)]` handlers of `M`; see
    /// [`HandlesEvent`]. (For responses, [`HandlesResponse`](crate::HandlesResponse) plays this
    /// role.)
    pub trait HandlesMessage<M: ?Sized> {}

    /// The handlers of part `ID` of protocol `Self` (`ID` is [`part_id`] of its name): implemented
    /// by the `#[protocol(part = name)]` block, called by the main block.
    #[diagnostic::on_unimplemented(
        message = "no `#[protocol(part = …)]` block of `{Self}` defines this part",
        label = "listed here, defined nowhere",
        note = "write `#[protocol(part = name)] impl {Self} {{ … }}` (in any module of this crate), or remove the name from `parts(…)`"
    )]
    pub trait Part<const ID: u64> {
        /// Whether the part has a message handler.
        const TAKES_MESSAGES: bool = false;
        /// Whether [`Part::after_event`] does anything.
        const HAS_AFTER_EVENT: bool = false;

        /// Offers `ev` to the part's handlers; gives it back if none takes it.
        fn dispatch(&mut self, ctx: &mut Ctx<'_, Self>, ev: Event)
            -> Result<Option<Event>, Reject>;

        /// Runs the part's per-event conditions.
        #[inline(always)]
        fn after_event(&mut self, ctx: &mut Ctx<'_, Self>) -> Handled {
            let _ = ctx;
            Ok(())
        }

        /// Runs the part's per-batch conditions.
        #[inline(always)]
        fn after_batch(&mut self, ctx: &mut Ctx<'_, Self>) -> Handled {
            let _ = ctx;
            Ok(())
        }
    }

    /// Implemented by the main block of protocol `Self` for each part it lists; each part
    /// requires it ([`part_is_listed`]), so a part left out of `parts(…)`, whose handlers would
    /// never run, does not compile.
    #[diagnostic::on_unimplemented(
        message = "this part of `{Self}` is not listed in its main block, so its handlers would never run",
        label = "not in the main block's `parts(…)`",
        note = "add the name to `#[protocol(parts(…))]` on the main `#[protocol]` block of `{Self}`"
    )]
    pub trait ListsPart<const ID: u64> {}

    /// Compiles only if the main block of `P` lists part `ID`.
    pub const fn part_is_listed<P: ListsPart<ID> + ?Sized, const ID: u64>() {}

    /// The number that names a part in [`Part`] and [`ListsPart`] (FNV-1a of its name; the
    /// generated code writes `part_id("name")`, so it reads as the name).
    pub const fn part_id(name: &str) -> u64 {
        let bytes = name.as_bytes();
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        hash
    }

    /// What a handler returns; only [`Handled`] is one. The generated code passes each handler's
    /// result through [`handled`], so a handler declared with another return type gets one error
    /// saying so, at its return type.
    #[diagnostic::on_unimplemented(
        message = "a handler returns `Handled`, not `{Self}`",
        label = "expected `Handled`",
        note = "`Handled` is `Result<(), Reject>`: return `Ok(())`, or fail with `ignore!(…)`, `ensure!(…)` or `fatal!(…)`"
    )]
    pub trait HandlerResult {
        /// The result as [`Handled`].
        fn into_handled(self) -> Handled;
    }

    impl HandlerResult for Handled {
        #[inline(always)]
        fn into_handled(self) -> Handled {
            self
        }
    }

    /// A handler's result (see [`HandlerResult`]).
    #[inline(always)]
    pub fn handled<R: HandlerResult>(r: R) -> Handled {
        r.into_handled()
    }

    /// The policy for events no handler took: `Init` is fine, an unknown message is bad input
    /// (ignored), an unknown local event is a bug.
    #[inline]
    pub fn unhandled(ev: &Event) -> Result<(), Reject> {
        if ev.is::<Init>() {
            return Ok(());
        }
        if let Some(m) = ev.get::<MessageReceived>() {
            return Err(Reject::Ignore(format!(
                "no handler for message type {} from node {}",
                m.message.payload.name(),
                m.from
            )));
        }
        Err(Reject::Fatal(ModuleError::unexpected_event(ev)))
    }

    /// Makes a `MessageReceived` event typed (it may arrive encoded, e.g. from a log), so its
    /// message can be inspected.
    #[inline]
    pub fn normalize(ev: Event) -> Result<Event, Reject> {
        if ev.payload.is_encoded() {
            return normalize_encoded(ev);
        }
        Ok(ev)
    }

    #[cold]
    #[inline(never)]
    fn normalize_encoded(ev: Event) -> Result<Event, Reject> {
        if ev.is::<MessageReceived>() {
            let src = ev.src.clone();
            let dest = ev.dest.clone();
            let m = ev
                .into_payload::<MessageReceived>()
                .map_err(|e| Reject::Fatal(ModuleError::new(e)))?;
            return Ok(Event::new(src, dest, m));
        }
        Ok(ev)
    }

    /// The value of a local event (it was checked to be a `T`).
    #[inline(always)]
    pub fn value<T: EventPayload>(ev: Event) -> Result<T, Reject> {
        ev.into_payload::<T>().map_err(|e| Reject::Fatal(ModuleError::new(e)))
    }

    /// The event with its payload typed as `T` (it was checked to be a `T`; it may arrive encoded,
    /// e.g. from a log).
    #[inline]
    pub fn typed<T: EventPayload>(ev: Event) -> Result<Event, Reject> {
        if !ev.payload.is_encoded() {
            return Ok(ev);
        }
        let (src, dest) = (ev.src.clone(), ev.dest.clone());
        let v = value::<T>(ev)?;
        Ok(Event::new(src, dest, v))
    }

    /// The typed value of an event made typed by [`typed`].
    #[inline]
    pub fn get<T: EventPayload>(ev: &Event) -> &T {
        ev.get::<T>().expect("made typed by `typed`")
    }

    /// Whether `ev` is a received message of type `M`.
    #[inline]
    pub fn message_is<M: EventPayload>(ev: &Event) -> bool {
        ev.get::<MessageReceived>().is_some_and(|m| m.message.payload.is::<M>())
    }

    /// The sender and value of a received message of type `M` (checked by [`message_is`]); a
    /// malformed one is bad input from its sender.
    #[inline]
    pub fn message_value<M: EventPayload>(ev: Event) -> Result<(NodeId, M), Reject> {
        let m =
            ev.into_payload::<MessageReceived>().map_err(|e| Reject::Fatal(ModuleError::new(e)))?;
        match m.message.payload.into_typed::<M>() {
            Ok(v) => Ok((m.from, v)),
            Err(PayloadError::Malformed(e)) => {
                Err(Reject::Ignore(format!("malformed message from node {}: {e}", m.from)))
            }
            Err(PayloadError::OtherType(p)) => Err(Reject::Fatal(ModuleError::new(format!(
                "expected {}, got {}",
                M::NAME,
                p.name()
            )))),
        }
    }
}
