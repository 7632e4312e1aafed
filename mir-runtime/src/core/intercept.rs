//! The [`Interceptor`] hook: what the event log's recorder (or any tool) plugs into a node to see
//! every batch, in both executors.

use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::time::Time;

/// Sees every batch just before a module handles it.
pub trait Interceptor: Send + 'static {
    /// `events` is the batch module `module` of node `node` is about to handle at `time`;
    /// `index` is the position of its first event among all events the node dispatched.
    fn intercept(
        &mut self,
        node: &NodeId,
        module: &ModuleId,
        time: Time,
        index: u64,
        events: &[Event],
    );
}
