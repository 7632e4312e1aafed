//! Replay: feed a recorded log to fresh instances of some modules and check that they emit what
//! the recorded run shows them emitting — a difference means the module is not deterministic (or
//! was changed). Inputs are replayed in the batches the recorded run handed the module, so
//! per-batch logic (a DSL `per_batch` condition) sees what it saw then. A step callback shows each
//! batch and what it made the module emit.
//!
//! What a module emitted is read from the log itself: every event it emitted was later handed to
//! its destination, and the destination's batches are in the log. Events to one destination keep
//! their order (the node's FIFO guarantee), so the check compares, per (module, destination), the
//! recorded sequence with the replayed one. Events the recording never got to deliver (still
//! queued when it stopped) are not in the log; replayed events beyond the recorded ones are
//! therefore reported as `unconfirmed`, not as differences. Events a module schedules with the
//! timer (`TimerDelay`, `TimerRepeat`) arrive later with the module as their source; they are
//! left out of the comparison (the timer requests that carry them are compared).
//!
//! Modules under replay receive payloads in encoded form: they must use `is`, `into_payload`
//! or `decode` (as DSL modules do), not `get`, to read them.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::Event;
use crate::eventlog::Entry;
use crate::id::{ModuleId, NodeId};
use crate::module::{ModuleError, PassiveModule};
use crate::stdevents::{TimerDelay, TimerRepeat};
use crate::testing::apply;

/// One replayed batch and what the module emitted for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayStep {
    /// The module.
    pub module: ModuleId,
    /// When the recorded run handed it the batch (nanoseconds since its executor started).
    pub time_ns: u64,
    /// The batch, as recorded.
    pub inputs: Vec<Event>,
    /// What the replayed module emitted.
    pub outputs: Vec<Event>,
}

/// The outcome of a replay that matched the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Input events replayed.
    pub inputs: u64,
    /// Batches replayed.
    pub batches: u64,
    /// Emitted events that match the recording.
    pub confirmed: u64,
    /// Emitted events the recording never delivered (it stopped first).
    pub unconfirmed: u64,
}

/// Why a replay did not match.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// A replayed module emitted something else than the recorded run.
    #[error("module {module} emitted, as its event #{position} to {dest}, {replayed:?}; the recorded run shows {recorded:?}")]
    Mismatch {
        /// The module.
        module: ModuleId,
        /// The destination.
        dest: ModuleId,
        /// Position among the module's events to that destination.
        position: usize,
        /// What the replay emitted.
        replayed: Box<Event>,
        /// What the log shows.
        recorded: Box<Event>,
    },
    /// The recording shows more events from the module to a destination than the replay emitted.
    #[error("module {module} emitted {replayed} events to {dest} in the replay, but the recorded run shows {recorded}")]
    Missing {
        /// The module.
        module: ModuleId,
        /// The destination.
        dest: ModuleId,
        /// Events emitted in the replay.
        replayed: usize,
        /// Events in the log.
        recorded: usize,
    },
    /// A replayed module failed.
    #[error("module {module} failed during replay: {error}")]
    Failed {
        /// The module.
        module: ModuleId,
        /// Its error.
        error: ModuleError,
    },
}

/// Replays `node`'s recorded inputs to `modules` (fresh instances, by top-level ID), batch by
/// batch in recorded order, calling `on_step` after each; then checks their outputs against the
/// recording.
///
/// ```
/// use std::collections::{BTreeMap, BTreeSet};
/// use mir_runtime::eventlog::{read_log, replay, Recorder, RecorderConfig};
/// use mir_runtime::sim::{SimConfig, Simulation};
/// use mir_runtime::stdevents::TestUint64;
/// use mir_runtime::stdmodules::NullModule;
/// use mir_runtime::{Batch, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule};
///
/// /// Numbers the events it gets and sends the numbers to `sink`: deterministic.
/// #[derive(Default)]
/// struct Counter(u64);
/// impl PassiveModule for Counter {
///     fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
///         for _ in events {
///             self.0 += 1;
///             out.send(&ModuleId::new("sink"), TestUint64(self.0));
///         }
///         Ok(())
///     }
/// }
///
/// // Record a run of node 0.
/// let dir = std::env::temp_dir().join(format!("mir-doc-replay-{}", std::process::id()));
/// let rec = Recorder::new(RecorderConfig::new(&dir), &NodeId::new("0")).unwrap();
/// let files = rec.files();
/// let node = Node::builder("0").passive("counter", Counter::default()).passive("sink", NullModule);
/// let mut sim = Simulation::new(SimConfig::with_seed(1));
/// sim.add_node(node.interceptor(rec)).unwrap();
/// sim.run_until_idle(std::time::Duration::from_secs(1)).unwrap();
/// drop(sim); // the recorder flushes
/// let entries = read_log(&files.lock().unwrap()[0]).unwrap();
///
/// // Replay it into a fresh counter, showing each batch.
/// let mut fresh: BTreeMap<ModuleId, Box<dyn PassiveModule>> = BTreeMap::new();
/// fresh.insert(ModuleId::new("counter"), Box::new(Counter::default()));
/// let mut shown = Vec::new();
/// let report = replay(&entries, &NodeId::new("0"), fresh, |step| {
///     shown.push(format!("{} got {:?}, emitted {:?}", step.module, step.inputs, step.outputs))
/// })
/// .unwrap();
/// assert_eq!((report.batches, report.inputs, report.confirmed), (1, 1, 1));
/// assert!(shown[0].ends_with("emitted [[counter -> sink] mir.TestUint64: TestUint64(1)]"), "{shown:?}");
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn replay(
    entries: &[Entry],
    node: &NodeId,
    mut modules: BTreeMap<ModuleId, Box<dyn PassiveModule>>,
    mut on_step: impl FnMut(&ReplayStep),
) -> Result<ReplayReport, ReplayError> {
    let mine = |e: &&Entry| &e.node == node;
    // What the log shows each replayed module emitting, per destination, in order.
    let mut recorded: BTreeMap<(ModuleId, ModuleId), Vec<Event>> = BTreeMap::new();
    for e in entries.iter().filter(mine) {
        for ev in &e.events {
            let src_top = ev.src.top_id();
            if modules.contains_key(&src_top) {
                recorded.entry((src_top, ev.dest.clone())).or_default().push(ev.clone());
            }
        }
    }
    let mut replayed: BTreeMap<(ModuleId, ModuleId), Vec<Event>> = BTreeMap::new();
    let (mut inputs, mut batches) = (0, 0);
    for e in entries.iter().filter(mine) {
        let Some(module) = modules.get_mut(&e.module) else {
            continue;
        };
        inputs += e.events.len() as u64;
        batches += 1;
        let outputs = apply(module.as_mut(), e.module.clone(), e.events.clone())
            .map_err(|error| ReplayError::Failed { module: e.module.clone(), error })?;
        for out in &outputs {
            replayed.entry((e.module.clone(), out.dest.clone())).or_default().push(out.clone());
        }
        on_step(&ReplayStep {
            module: e.module.clone(),
            time_ns: e.time_ns,
            inputs: e.events.clone(),
            outputs,
        });
    }
    // Events a replayed module handed the timer reach their destination later with the module
    // as their source, interleaved with what it emitted directly: they are not compared (on
    // either side), the timer requests that carry them are.
    let timed: BTreeSet<Vec<u8>> = replayed
        .values()
        .flatten()
        .flat_map(|ev| {
            let delayed = ev.payload.decode::<TimerDelay>().ok().flatten().map(|t| t.events);
            let repeated = ev.payload.decode::<TimerRepeat>().ok().flatten().map(|t| t.events);
            delayed.into_iter().chain(repeated).flatten()
        })
        .map(|ev| ev.encode())
        .collect();
    for list in recorded.values_mut().chain(replayed.values_mut()) {
        list.retain(|ev| !timed.contains(&ev.encode()));
    }
    let (mut confirmed, mut unconfirmed) = (0, 0);
    for (key, rec) in &recorded {
        let rep = replayed.get(key).map(Vec::as_slice).unwrap_or(&[]);
        if rep.len() < rec.len() {
            return Err(ReplayError::Missing {
                module: key.0.clone(),
                dest: key.1.clone(),
                replayed: rep.len(),
                recorded: rec.len(),
            });
        }
    }
    for (key, rep) in &replayed {
        let rec = recorded.get(key).map(Vec::as_slice).unwrap_or(&[]);
        for (position, r) in rep.iter().enumerate() {
            match rec.get(position) {
                Some(want) if want == r => confirmed += 1,
                Some(want) => {
                    return Err(ReplayError::Mismatch {
                        module: key.0.clone(),
                        dest: key.1.clone(),
                        position,
                        replayed: Box::new(r.clone()),
                        recorded: Box::new(want.clone()),
                    })
                }
                None => unconfirmed += 1,
            }
        }
    }
    Ok(ReplayReport { inputs, batches, confirmed, unconfirmed })
}
