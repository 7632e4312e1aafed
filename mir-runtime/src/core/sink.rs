//! [`EventSink`]: how threads and tasks outside the event loop (active modules' own tasks, a
//! network transport, a client gateway) put events into a running node, with back-pressure.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::Event;
use crate::id::{ModuleId, NodeId};

/// Why events could not be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// An event's destination is not a module of the node (nothing was injected).
    #[error("cannot inject {type_name}: node {node} has no module {top:?} (destination {dest})")]
    UnknownDestination {
        /// The node.
        node: NodeId,
        /// The destination given.
        dest: ModuleId,
        /// Its top-level part.
        top: String,
        /// The event's type name.
        type_name: String,
    },
    /// An event's source is neither `@node` ([`ModuleId::node`]) nor a module of the node
    /// (nothing was injected). Replies go to an event's source: from outside the node, inject
    /// with source `@node` (replies to it are dropped and counted as
    /// [`NodeStats::to_outside`](crate::NodeStats)) or through an active module of the node
    /// (a client gateway) that takes the replies.
    #[error("cannot inject {type_name} into node {node}: source {src} is neither @node nor a module of the node")]
    UnknownSource {
        /// The node.
        node: NodeId,
        /// The source given.
        src: ModuleId,
        /// The event's type name.
        type_name: String,
    },
    /// The node's run has ended.
    #[error("node {0} is not running any more")]
    NodeStopped(NodeId),
    /// `try_inject` only: the injection channel is full (the node is overloaded); try later.
    #[error("node {0} is not accepting input now (overloaded); retry later")]
    Full(NodeId),
}

/// A handle through which tasks and threads outside the loop inject events into a node.
/// Cheap to clone. Events are checked against the node's modules before they are queued.
#[derive(Clone)]
pub struct EventSink {
    pub(crate) node: NodeId,
    pub(crate) tx: mpsc::Sender<Vec<Event>>,
    pub(crate) ids: Arc<[ModuleId]>,
    pub(crate) max_batch: usize,
}

impl EventSink {
    fn check(&self, events: &[Event]) -> Result<(), InjectError> {
        for ev in events {
            if !ev.src.is_node() && !self.ids.iter().any(|id| id.as_str() == ev.src.top()) {
                return Err(InjectError::UnknownSource {
                    node: self.node.clone(),
                    src: ev.src.clone(),
                    type_name: ev.name().to_owned(),
                });
            }
            let top = ev.dest.top();
            if !self.ids.iter().any(|id| id.as_str() == top) {
                return Err(InjectError::UnknownDestination {
                    node: self.node.clone(),
                    dest: ev.dest.clone(),
                    top: top.to_owned(),
                    type_name: ev.name().to_owned(),
                });
            }
        }
        Ok(())
    }

    fn chunks(&self, mut events: Vec<Event>) -> Vec<Vec<Event>> {
        let mut out = Vec::new();
        while events.len() > self.max_batch {
            let rest = events.split_off(self.max_batch);
            out.push(events);
            events = rest;
        }
        if !events.is_empty() {
            out.push(events);
        }
        out
    }

    /// Whether the node has the top-level module of `dest` (injecting an event for it would not be
    /// refused as [`InjectError::UnknownDestination`]).
    pub fn accepts(&self, dest: &ModuleId) -> bool {
        let top = dest.top();
        self.ids.iter().any(|id| id.as_str() == top)
    }

    /// The most events one injected batch may hold ([`EventSink::try_inject`] refuses more).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Injects events, waiting while the node is overloaded. Events keep their order.
    pub async fn inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.check(&events)?;
        for chunk in self.chunks(events) {
            self.tx.send(chunk).await.map_err(|_| InjectError::NodeStopped(self.node.clone()))?;
        }
        Ok(())
    }

    /// Injects events from a thread that is not a tokio task, blocking while the node is
    /// overloaded.
    ///
    /// # Panics
    ///
    /// If called from within an asynchronous context (use [`EventSink::inject`] there).
    pub fn blocking_inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.check(&events)?;
        for chunk in self.chunks(events) {
            self.tx
                .blocking_send(chunk)
                .map_err(|_| InjectError::NodeStopped(self.node.clone()))?;
        }
        Ok(())
    }

    /// Injects at most `max_batch_size` events without waiting; [`InjectError::Full`] if the node
    /// is not accepting input now.
    pub fn try_inject(&self, events: Vec<Event>) -> Result<(), InjectError> {
        self.check(&events)?;
        if events.len() > self.max_batch {
            return Err(InjectError::Full(self.node.clone()));
        }
        self.tx.try_send(events).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InjectError::Full(self.node.clone()),
            mpsc::error::TrySendError::Closed(_) => InjectError::NodeStopped(self.node.clone()),
        })
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").field("node", &self.node).finish_non_exhaustive()
    }
}
