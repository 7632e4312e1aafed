//! Per-module statistics, readable while the node runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::id::{ModuleId, NodeId};

/// Statistics of one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleStats {
    /// The module.
    pub module: ModuleId,
    /// Events handed to the module so far.
    pub events_handled: u64,
    /// Batches handed to the module so far.
    pub batches: u64,
    /// Events waiting in the module's queue (as of the last loop iteration).
    pub queued: u64,
    /// The longest the module's queue has been.
    pub max_queued: u64,
    /// Time spent inside the module (wall-clock time, in both executors).
    pub busy: Duration,
    /// Messages from peers dropped because the module takes none (see
    /// [`PassiveModule::accepts_messages`](crate::PassiveModule::accepts_messages)).
    pub messages_refused: u64,
}

/// Statistics of a node: one entry per module, in registration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// The node.
    pub node: NodeId,
    /// Per-module figures.
    pub modules: Vec<ModuleStats>,
    /// Events buffered in the node's queues.
    pub buffered: u64,
    /// Whether input from outside is paused (too many events buffered).
    pub input_paused: bool,
    /// How many times input was paused.
    pub pauses: u64,
    /// Events modules addressed to `@node` (replies to events injected from outside the node),
    /// dropped: the outside does not receive events.
    pub to_outside: u64,
}

impl NodeStats {
    /// The figures of one module.
    pub fn module(&self, id: &str) -> Option<&ModuleStats> {
        self.modules.iter().find(|m| m.module.as_str() == id)
    }

    /// Logs one line per module through `tracing` (INFO), with structured fields.
    pub fn log(&self) {
        for m in &self.modules {
            tracing::info!(
                node = %self.node,
                module = %m.module,
                events = m.events_handled,
                batches = m.batches,
                queued = m.queued,
                max_queued = m.max_queued,
                busy_ms = m.busy.as_secs_f64() * 1e3,
                messages_refused = m.messages_refused,
                "module stats"
            );
        }
        tracing::info!(node = %self.node, buffered = self.buffered, input_paused = self.input_paused, pauses = self.pauses, to_outside = self.to_outside, "node stats");
    }
}

#[derive(Debug, Default)]
pub(crate) struct ModuleCounters {
    pub(crate) events: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) max_queued: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) refused: AtomicU64,
}

/// Counters shared between the event loop (which writes them) and handles (which read them).
#[derive(Debug)]
pub(crate) struct SharedStats {
    pub(crate) node: NodeId,
    pub(crate) ids: Vec<ModuleId>,
    pub(crate) modules: Vec<ModuleCounters>,
    pub(crate) buffered: AtomicU64,
    pub(crate) paused: AtomicBool,
    pub(crate) pauses: AtomicU64,
    pub(crate) outside: AtomicU64,
}

impl SharedStats {
    pub(crate) fn new(node: NodeId, ids: Vec<ModuleId>) -> Arc<Self> {
        let modules = ids.iter().map(|_| ModuleCounters::default()).collect();
        Arc::new(SharedStats {
            node,
            ids,
            modules,
            buffered: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            pauses: AtomicU64::new(0),
            outside: AtomicU64::new(0),
        })
    }

    pub(crate) fn snapshot(&self) -> NodeStats {
        NodeStats {
            node: self.node.clone(),
            modules: self
                .ids
                .iter()
                .zip(&self.modules)
                .map(|(id, c)| ModuleStats {
                    module: id.clone(),
                    events_handled: c.events.load(Relaxed),
                    batches: c.batches.load(Relaxed),
                    queued: c.queued.load(Relaxed),
                    max_queued: c.max_queued.load(Relaxed),
                    busy: Duration::from_nanos(c.busy_ns.load(Relaxed)),
                    messages_refused: c.refused.load(Relaxed),
                })
                .collect(),
            buffered: self.buffered.load(Relaxed),
            input_paused: self.paused.load(Relaxed),
            pauses: self.pauses.load(Relaxed),
            to_outside: self.outside.load(Relaxed),
        }
    }
}
