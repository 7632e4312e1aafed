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

    /// Lists one entry per group of handlers, of the main block and every part.
    #[doc(hidden)]
    fn __handlers(out: &mut Vec<private::HandlerInfo>) {
        let _ = out;
    }
}

/// Checks once per protocol type that no type is handled by two groups of handlers (two
/// spellings of one path, an alias, the main block and a part): the second group would never run.
/// A duplicate is a bug in the protocol's code, found when its first module is built.
fn check_handlers<P: Protocol>() {
    use std::any::TypeId;
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static CHECKED: Mutex<BTreeSet<TypeId>> = Mutex::new(BTreeSet::new());
    if !CHECKED.lock().unwrap_or_else(|e| e.into_inner()).insert(TypeId::of::<P>()) {
        return;
    }
    let mut hs = Vec::new();
    P::__handlers(&mut hs);
    if let Err(e) = private::duplicate_handlers(std::any::type_name::<P>(), &hs) {
        CHECKED.lock().unwrap_or_else(|e| e.into_inner()).remove(&TypeId::of::<P>());
        panic!("{e}");
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
    ///
    /// # Panics
    ///
    /// If one type is handled by two groups of handlers that the macro could not see were the
    /// same (an alias, or the main block and a part): the second group would never run. The
    /// message names both handlers. Checked once per protocol type.
    pub fn new(proto: P) -> Self {
        check_handlers::<P>();
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
        let mut src = me.clone();
        let mut handled = 0;
        for ev in events {
            let mut ctx = Ctx::new(out, &mut self.conts, ev.src.clone());
            let res = match self.proto.__dispatch(&mut ctx, ev) {
                Ok(None) => Ok(()),
                Ok(Some(ev)) => private::unhandled(&ev),
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
            src = ctx.into_source();
        }
        self.stats.handled.fetch_add(handled, Relaxed);
        let mut ctx = Ctx::new(out, &mut self.conts, src);
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
    //! Decoding helpers for the generated code, and the list it makes of its handlers.
    use mir_runtime::stdevents::{Init, MessageReceived};
    use mir_runtime::{Event, EventPayload, ModuleError, NodeId, PayloadError};

    use crate::ctx::Reject;

    /// One group of handlers of a protocol (the generated `__handlers` lists them).
    #[derive(Debug, Clone)]
    pub struct HandlerInfo {
        /// `event`, `message` or `response`.
        pub kind: &'static str,
        /// The value type, and the continuation type of a response.
        pub types: (std::any::TypeId, Option<std::any::TypeId>),
        /// The types as written.
        pub type_name: &'static str,
        /// The group's first handler.
        pub method: &'static str,
        /// `the main block` or `part <name>`.
        pub block: &'static str,
    }

    /// An error naming both handlers if two groups handle the same types.
    pub fn duplicate_handlers(protocol: &str, hs: &[HandlerInfo]) -> Result<(), String> {
        for (i, b) in hs.iter().enumerate() {
            if let Some(a) = hs[..i].iter().find(|a| a.kind == b.kind && a.types == b.types) {
                return Err(format!(
                    "protocol {protocol}: {} handler `{}` ({}, `{}`) and `{}` ({}, `{}`) take the same type, so `{}` would never run; \
                     handle a type in one block and write it the same way in every handler",
                    b.kind, a.method, a.block, a.type_name, b.method, b.block, b.type_name, b.method
                ));
            }
        }
        Ok(())
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
