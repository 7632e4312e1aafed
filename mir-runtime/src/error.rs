//! Why a node stops.

use std::fmt;

use crate::config::ConfigError;
use crate::id::{IdError, ModuleId, NodeId};
use crate::module::ModuleError;

/// The event a module was handling when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// The event's type name.
    pub type_name: String,
    /// Its position in the batch (0-based).
    pub index: usize,
    /// The size of the batch.
    pub batch_len: usize,
}

impl fmt::Display for EventRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} (#{} of a batch of {})", self.type_name, self.index, self.batch_len)
    }
}

/// What the module was doing when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Handling an event of a batch.
    Event(EventRef),
    /// Handling a batch before taking any event, or after the last.
    Batch {
        /// The size of the batch.
        batch_len: usize,
    },
    /// Handling an alarm.
    Alarm(u64),
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activity::Event(e) => e.fmt(f),
            Activity::Batch { batch_len } => write!(f, "a batch of {batch_len} events"),
            Activity::Alarm(id) => write!(f, "alarm {id}"),
        }
    }
}

/// The error that stops a node. Every variant names the node; module failures also name the
/// module and what it was handling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A module returned an error.
    #[error("node {node}: module {module} failed while handling {activity}: {error}")]
    ModuleFailed {
        /// The node.
        node: NodeId,
        /// The module that failed.
        module: ModuleId,
        /// What it was handling.
        activity: Activity,
        /// The module's error.
        error: ModuleError,
    },
    /// A module panicked.
    #[error("node {node}: module {module} panicked while handling {activity}: {message}")]
    ModulePanicked {
        /// The node.
        node: NodeId,
        /// The module that panicked.
        module: ModuleId,
        /// What it was handling.
        activity: Activity,
        /// The panic message.
        message: String,
    },
    /// An event was addressed to a module the node does not have (Mir drops these silently;
    /// here it is a bug in the module that emitted it, usually a typo in a module ID).
    #[error("node {node}: event {type_name} from {src} is addressed to {dest}, but the node has no module {top:?} (modules: {known})")]
    UnknownDestination {
        /// The node.
        node: NodeId,
        /// The event's source.
        src: ModuleId,
        /// The event's destination.
        dest: ModuleId,
        /// The top-level module that does not exist.
        top: String,
        /// The event's type name.
        type_name: String,
        /// The modules the node has, comma-separated.
        known: String,
    },
    /// A worker thread ended unexpectedly.
    #[error("node {node}: the worker thread of module {module} ended unexpectedly")]
    WorkerLost {
        /// The node.
        node: NodeId,
        /// The module.
        module: ModuleId,
    },
}

impl NodeError {
    /// The node that failed.
    pub fn node(&self) -> &NodeId {
        match self {
            NodeError::ModuleFailed { node, .. }
            | NodeError::ModulePanicked { node, .. }
            | NodeError::UnknownDestination { node, .. }
            | NodeError::WorkerLost { node, .. } => node,
        }
    }
}

/// A node cannot be built as described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error("invalid node configuration: {0}")]
    Config(#[from] ConfigError),
    /// Two modules were given the same ID.
    #[error("module {0} is registered twice")]
    DuplicateModule(ModuleId),
    /// A top-level module ID has more than one segment.
    #[error("module ID {0} has several segments; top-level modules have one-segment IDs (sub-IDs are routed by their top-level module, e.g. a factory)")]
    NotTopLevel(ModuleId),
    /// A module ID is not valid.
    #[error(transparent)]
    BadId(#[from] IdError),
    /// The node has no modules.
    #[error("a node needs at least one module")]
    NoModules,
    /// A restartable node's builder function described another node.
    #[error("restarting node {expected}: the builder function describes node {got}")]
    RebuiltAsOtherNode {
        /// The node being restarted.
        expected: NodeId,
        /// The node the builder described.
        got: NodeId,
    },
}

/// How a node's run ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// [`NodeHandle::stop`](crate::NodeHandle::stop) was called.
    Stopped,
}
