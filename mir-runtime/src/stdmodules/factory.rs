//! The factory: a module that creates, routes to and garbage-collects sub-instances.
//!
//! A factory registered as `ordering` owns submodules `ordering/<x>` (one PBFT instance per ISS
//! segment, one BCB instance per broadcast…). Rules:
//!
//! 1. [`NewSubmodule`] `{id, params, retention_index}` sent to the factory itself calls the
//!    generator with `(id, params)`. The new submodule first gets [`Init`], then any early
//!    messages buffered for it (rule 4), in arrival order. `id` must be the factory's ID plus one
//!    segment; creating an existing submodule is an error (a bug in the requester). A request
//!    below the garbage-collection index is ignored and logged.
//! 2. An event for `ordering/<x>/…` goes to submodule `ordering/<x>`. Events are handled
//!    **in batch order, one submodule at a time** (consecutive events for one submodule form one
//!    batch), so the output order is a pure function of the input (Mir ran submodules concurrently
//!    and its output order varied).
//! 3. [`GarbageCollect`] `{r}` removes every submodule with a retention index below `r`; with
//!    [`Factory::cancel_timers_at`], the timers the removed submodules set are cancelled too
//!    ([`TimerCancelModules`]), so that a removed submodule's periodic timer stops firing.
//! 4. A [`MessageReceived`] for a submodule that does not exist (yet) is kept, up to
//!    `max_early_per_sender` messages (default 1024) and `max_early_bytes_per_sender` bytes
//!    (default 4 MiB, counting each message's canonical encoding) per sending node; beyond
//!    either, the sender's oldest are evicted and counted: peers may be ahead of us, but one
//!    peer can make the factory hold at most its own budget. Any other event for a missing submodule — typically a
//!    late event for a garbage-collected one — is dropped, logged and counted (logged at debug
//!    level when it is the removed submodule's own, such as its timer firing: expected after
//!    garbage collection; at warn level otherwise).
//! 5. A submodule's error or panic is the factory's error, naming the submodule.
//! 6. Peers' messages reach a submodule only if it takes messages
//!    ([`PassiveModule::accepts_messages`]); messages to the factory's own ID, or to a submodule
//!    that takes none, are dropped, logged and counted as `refused`.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::core::panic_message;
use crate::event::{Event, Payload};
use crate::id::{ModuleId, NodeId};
use crate::module::{Batch, Cursor, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::{GarbageCollect, Init, MessageReceived, NewSubmodule, TimerCancelModules};

/// Makes a submodule from its ID and the parameters of its [`NewSubmodule`] request.
pub type Generator =
    Box<dyn FnMut(&ModuleId, &Payload) -> Result<Box<dyn PassiveModule>, ModuleError> + Send>;

/// Counters of a factory, readable while it runs (see [`Factory::stats`]).
#[derive(Debug, Default)]
pub struct FactoryStats {
    /// Submodules created.
    pub created: AtomicU64,
    /// Submodules removed by garbage collection.
    pub collected: AtomicU64,
    /// Early messages buffered so far.
    pub buffered: AtomicU64,
    /// Early messages evicted because their sender's buffer was full.
    pub evicted: AtomicU64,
    /// Events dropped because their submodule does not exist (and they are not messages).
    pub dropped: AtomicU64,
    /// `NewSubmodule` requests ignored because they were below the garbage-collection index.
    pub stale_requests: AtomicU64,
    /// Messages from peers addressed to the factory itself (not to a submodule), or to a
    /// submodule that takes no messages: dropped.
    pub refused: AtomicU64,
}

/// (arrival number, event, its size in bytes), oldest first.
type EarlyQueue = VecDeque<(u64, Event, usize)>;

struct Sub {
    module: Box<dyn PassiveModule>,
    retention: u64,
    /// The submodule's [`PassiveModule::accepts_messages`], asked once at creation.
    accepts: bool,
}

/// The factory module. See the [module docs](self).
///
/// ```
/// use mir_runtime::{stdmodules::{Factory, NullModule}, PassiveModule};
/// let factory = Factory::new(|_id, _params| Ok(Box::new(NullModule) as Box<dyn PassiveModule>));
/// let stats = factory.stats();
/// assert_eq!(stats.created.load(std::sync::atomic::Ordering::Relaxed), 0);
/// ```
pub struct Factory {
    me: Option<ModuleId>,
    generator: Generator,
    subs: BTreeMap<ModuleId, Sub>,
    gc_index: u64,
    /// Per sender: its early messages and the bytes they hold.
    early: BTreeMap<NodeId, (EarlyQueue, usize)>,
    early_seq: u64,
    max_early_per_sender: usize,
    max_early_bytes_per_sender: usize,
    stats: Arc<FactoryStats>,
    cursor: Cursor,
    /// Which peer-caused warnings were logged (per sender and kind).
    log: crate::ratelog::LogLimiter,
    /// The timer whose timers of removed submodules are cancelled.
    timer: Option<ModuleId>,
}

impl Factory {
    /// A factory whose submodules `generator` makes. Keeps up to 1024 early messages and 4 MiB
    /// of them per sender.
    pub fn new<F>(generator: F) -> Self
    where
        F: FnMut(&ModuleId, &Payload) -> Result<Box<dyn PassiveModule>, ModuleError>
            + Send
            + 'static,
    {
        Factory {
            me: None,
            generator: Box::new(generator),
            subs: BTreeMap::new(),
            gc_index: 0,
            early: BTreeMap::new(),
            early_seq: 0,
            max_early_per_sender: 1024,
            max_early_bytes_per_sender: 4 << 20,
            stats: Arc::default(),
            cursor: Cursor::default(),
            log: crate::ratelog::LogLimiter::default(),
            timer: None,
        }
    }

    /// When submodules are garbage-collected, cancels the timers they set at the timer module
    /// `timer` (which must exist in the node; without this, a removed submodule's periodic
    /// timer keeps firing, and the factory drops what it emits).
    ///
    /// ```
    /// use mir_runtime::stdmodules::{Factory, NullModule};
    /// use mir_runtime::stdevents::TestUint64;
    /// use mir_runtime::ModuleId;
    /// let factory = Factory::of(|_id, _n: TestUint64| Ok(NullModule)).cancel_timers_at(ModuleId::new("timer"));
    /// # drop(factory);
    /// ```
    pub fn cancel_timers_at(mut self, timer: ModuleId) -> Self {
        self.timer = Some(timer);
        self
    }

    /// A factory whose parameters are one payload type `P`: `make` gets them decoded, so a
    /// protocol never decodes them by hand. A `NewSubmodule` whose parameters are of another type
    /// (or do not decode) is an error naming both types, which stops the node (the request comes
    /// from a module of this node: a bug).
    ///
    /// ```
    /// use mir_runtime::stdevents::TestUint64;
    /// use mir_runtime::stdmodules::{Factory, NullModule};
    /// // Instance parameters are a `TestUint64`; the generator gets it decoded.
    /// let factory = Factory::of(|_id, n: TestUint64| {
    ///     assert!(n.0 < 100);
    ///     Ok(NullModule)
    /// });
    /// # drop(factory);
    /// ```
    pub fn of<P, M, F>(mut make: F) -> Self
    where
        P: crate::EventPayload,
        M: PassiveModule,
        F: FnMut(&ModuleId, P) -> Result<M, ModuleError> + Send + 'static,
    {
        Factory::new(move |id, params| {
            let p = params.decode::<P>().map_err(ModuleError::new)?.ok_or_else(|| {
                ModuleError::new(format!(
                    "factory: submodule {id}'s parameters must be {}, got {}",
                    P::NAME,
                    params.name()
                ))
            })?;
            Ok(Box::new(make(id, p)?) as Box<dyn PassiveModule>)
        })
    }

    /// Sets how many early messages are kept per sending node (at least 1).
    pub fn max_early_per_sender(mut self, n: usize) -> Self {
        self.max_early_per_sender = n.max(1);
        self
    }

    /// Sets how many bytes of early messages are kept per sending node.
    pub fn max_early_bytes_per_sender(mut self, bytes: usize) -> Self {
        self.max_early_bytes_per_sender = bytes;
        self
    }

    /// The factory's counters (shared: keep this handle to read them while the node runs).
    pub fn stats(&self) -> Arc<FactoryStats> {
        self.stats.clone()
    }

    /// The IDs of the live submodules, in order.
    pub fn submodules(&self) -> Vec<ModuleId> {
        self.subs.keys().cloned().collect()
    }

    /// The submodule an event for `dest` belongs to: the factory's ID plus `dest`'s next segment.
    fn sub_key<'a>(me: &ModuleId, dest: &'a ModuleId) -> Option<&'a str> {
        let s = dest.as_str();
        if !dest.is_under(me) || s.len() == me.as_str().len() {
            return None;
        }
        let rest = &s[me.as_str().len() + 1..];
        let end = rest.find('/').map_or(s.len(), |i| me.as_str().len() + 1 + i);
        Some(&s[..end])
    }

    fn run_sub(&mut self, key: &str, batch: &mut Vec<Event>, out: &mut Outbox) -> ModuleResult {
        let (id, sub) =
            self.subs.iter_mut().find(|(k, _)| k.as_str() == key).expect("caller checked");
        let id = id.clone();
        if !sub.accepts {
            let (stats, log) = (&self.stats, &self.log);
            batch.retain(|ev| {
                let Some(m) = ev.get::<MessageReceived>() else {
                    return true;
                };
                stats.refused.fetch_add(1, Relaxed);
                if let Some(count) = log.occurred(m.from.as_str(), "to a submodule that takes none") {
                    tracing::warn!(submodule = %id, from = %crate::ratelog::escaped(m.from.as_str()), count, "message from a peer to a submodule that takes no messages; dropped");
                }
                false
            });
            if batch.is_empty() {
                return Ok(());
            }
        }
        let saved = out.me().clone();
        out.set_me(&id);
        let cursor = &mut self.cursor;
        let len = batch.len();
        let res = catch_unwind(AssertUnwindSafe(|| {
            sub.module.apply_events(Batch::new(batch, cursor), out)
        }));
        batch.clear();
        out.set_me(&saved);
        let what = || {
            if self.cursor.taken == 0 {
                format!("a batch of {len}")
            } else {
                format!("event {} (#{} of {len})", self.cursor.name(), self.cursor.taken - 1)
            }
        };
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ModuleError::new(format!(
                "submodule {id} failed while handling {}: {e}",
                what()
            ))),
            Err(p) => Err(ModuleError::new(format!(
                "submodule {id} panicked while handling {}: {}",
                what(),
                panic_message(&*p)
            ))),
        }
    }

    fn flush(
        &mut self,
        pending: &mut Vec<Event>,
        key: &mut Option<ModuleId>,
        out: &mut Outbox,
    ) -> ModuleResult {
        if let Some(k) = key.take() {
            self.run_sub(k.as_str(), pending, out)?;
        }
        Ok(())
    }

    fn create(&mut self, me: &ModuleId, req: NewSubmodule, out: &mut Outbox) -> ModuleResult {
        let id = req.id;
        if id.top_id() != *me || Self::sub_key(me, &id) != Some(id.as_str()) {
            return Err(ModuleError::new(format!(
                "NewSubmodule {id}: a submodule of factory {me} must be {me}/<one segment>"
            )));
        }
        if self.subs.contains_key(id.as_str()) {
            return Err(ModuleError::new(format!(
                "NewSubmodule {id}: the submodule already exists"
            )));
        }
        if req.retention_index < self.gc_index {
            self.stats.stale_requests.fetch_add(1, Relaxed);
            tracing::warn!(submodule = %id, retention = req.retention_index, gc_index = self.gc_index, "NewSubmodule below the garbage-collection index; ignored");
            return Ok(());
        }
        let module = (self.generator)(&id, &req.params)?;
        let accepts = module.accepts_messages();
        self.subs.insert(id.clone(), Sub { module, retention: req.retention_index, accepts });
        self.stats.created.fetch_add(1, Relaxed);
        // Init first, then the early messages for it, in arrival order.
        let mut batch = vec![Event::new(me.clone(), id.clone(), Init)];
        let mut early: Vec<(u64, Event)> = Vec::new();
        for (queue, held) in self.early.values_mut() {
            let mut kept = VecDeque::with_capacity(queue.len());
            for (seq, ev, size) in queue.drain(..) {
                if Self::sub_key(me, &ev.dest) == Some(id.as_str()) {
                    *held -= size;
                    early.push((seq, ev));
                } else {
                    kept.push_back((seq, ev, size));
                }
            }
            *queue = kept;
        }
        self.early.retain(|_, (q, _)| !q.is_empty());
        early.sort_by_key(|(seq, _)| *seq);
        batch.extend(early.into_iter().map(|(_, ev)| ev));
        self.run_sub(id.as_str(), &mut batch, out)
    }

    fn buffer_or_drop(&mut self, ev: Event) {
        if ev.is::<MessageReceived>() {
            let (from, size) = match ev.payload.decode::<MessageReceived>() {
                Ok(Some(m)) => (m.from, ev.payload.encode_value().len()),
                _ => {
                    self.stats.dropped.fetch_add(1, Relaxed);
                    tracing::warn!(dest = %ev.dest, "malformed early message for a missing submodule; dropped");
                    return;
                }
            };
            if size > self.max_early_bytes_per_sender {
                self.stats.evicted.fetch_add(1, Relaxed);
                tracing::debug!(sender = %from, size, "early message larger than the sender's whole buffer; dropped");
                return;
            }
            self.early_seq += 1;
            let (queue, held) = self.early.entry(from.clone()).or_default();
            while queue.len() >= self.max_early_per_sender
                || *held + size > self.max_early_bytes_per_sender
            {
                let Some((_, _, old)) = queue.pop_front() else {
                    break;
                };
                *held -= old;
                self.stats.evicted.fetch_add(1, Relaxed);
                tracing::debug!(sender = %from, "early-message buffer full; oldest evicted");
            }
            *held += size;
            queue.push_back((self.early_seq, ev, size));
            self.stats.buffered.fetch_add(1, Relaxed);
        } else {
            self.stats.dropped.fetch_add(1, Relaxed);
            if ev.src == ev.dest {
                // A removed submodule's own timer or loopback: expected after garbage collection.
                tracing::debug!(dest = %ev.dest, event = ev.name(), "event of a removed submodule to itself; dropped");
            } else {
                tracing::warn!(dest = %ev.dest, src = %ev.src, event = ev.name(), "event for a submodule that does not exist; dropped");
            }
        }
    }
}

impl PassiveModule for Factory {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let mut pending: Vec<Event> = Vec::new();
        let mut key: Option<ModuleId> = None;
        for ev in events {
            let me = self.me.get_or_insert_with(|| ev.dest.top_id()).clone();
            if ev.dest == me {
                self.flush(&mut pending, &mut key, out)?;
                if ev.is::<Init>() {
                    continue;
                }
                if ev.is::<NewSubmodule>() {
                    let req: NewSubmodule = ev.into_payload().map_err(ModuleError::new)?;
                    self.create(&me, req, out)?;
                } else if ev.is::<GarbageCollect>() {
                    // Decoded, not borrowed: a replayed event carries its payload encoded.
                    let gc: GarbageCollect = ev.into_payload().map_err(ModuleError::new)?;
                    self.gc_index = self.gc_index.max(gc.retention_index);
                    let gc_index = self.gc_index;
                    let removed: Vec<ModuleId> = self
                        .subs
                        .iter()
                        .filter(|(_, s)| s.retention < gc_index)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in &removed {
                        self.subs.remove(id);
                    }
                    self.stats.collected.fetch_add(removed.len() as u64, Relaxed);
                    if let (Some(timer), false) = (&self.timer, removed.is_empty()) {
                        out.send(timer, TimerCancelModules { modules: removed });
                    }
                } else if ev.is::<crate::stdevents::MessageReceived>() {
                    // A peer named the factory itself: bad input, not a bug of this node.
                    let from = ev
                        .get::<crate::stdevents::MessageReceived>()
                        .map_or("?".to_owned(), |m| m.from.to_string());
                    if let Some(count) = self.log.occurred(&from, "to the factory itself") {
                        let from = crate::ratelog::escaped(&from);
                        tracing::warn!(factory = %me, %from, count, "message from a peer to a factory (not a submodule); dropped");
                    }
                    self.stats.refused.fetch_add(1, Relaxed);
                } else {
                    return Err(ModuleError::unexpected_event(&ev));
                }
                continue;
            }
            let Some(k) = Self::sub_key(&me, &ev.dest) else {
                return Err(ModuleError::new(format!(
                    "event {} for {} reached factory {me}",
                    ev.name(),
                    ev.dest
                )));
            };
            if !self.subs.contains_key(k) {
                self.flush(&mut pending, &mut key, out)?;
                self.buffer_or_drop(ev);
                continue;
            }
            if key.as_ref().is_some_and(|cur| cur.as_str() != k) {
                self.flush(&mut pending, &mut key, out)?;
            }
            if key.is_none() {
                key = Some(ModuleId::new(k));
            }
            pending.push(ev);
        }
        self.flush(&mut pending, &mut key, out)
    }

    /// A factory takes messages for its submodules (each submodule's own
    /// [`PassiveModule::accepts_messages`] decides; messages to the factory's own ID are refused).
    fn accepts_messages(&self) -> bool {
        true
    }

    fn waiting_for(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, sub) in &self.subs {
            out.extend(sub.module.waiting_for().into_iter().map(|w| format!("{id}: {w}")));
        }
        out
    }
}
