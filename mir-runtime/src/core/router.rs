//! [`Router`]: the node's queues and how events are routed into them.

use std::collections::VecDeque;

use crate::event::Event;
use crate::id::ModuleId;

/// The node's queues and how to route into them. It lives inside the node's [`Outbox`] while the
/// node runs, so a module's output goes straight into the destination queue.
pub(crate) struct Router {
    ids: Vec<ModuleId>,
    /// `ids[i].top_key()`.
    keys: Vec<(usize, u64)>,
    /// Per module: the module its last emitted event went to (tried first).
    hints: Vec<usize>,
    /// The module being called.
    pub(crate) src: usize,
    pub(crate) queues: Vec<VecDeque<Event>>,
    /// Events in all queues.
    pub(crate) buffered: usize,
    /// The first event that named a module the node does not have.
    pub(crate) unknown: Option<Event>,
    /// Events addressed to [`ModuleId::node`] (outside the node, e.g. a reply to an injected
    /// event), dropped.
    pub(crate) outside: u64,
}

impl Router {
    /// Empty queues for the modules `ids` (in registration order).
    pub(crate) fn new(ids: Vec<ModuleId>) -> Self {
        let n = ids.len();
        Router {
            keys: ids.iter().map(|id| id.top_key()).collect(),
            ids,
            hints: vec![0; n],
            src: 0,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            buffered: 0,
            unknown: None,
            outside: 0,
        }
    }

    /// The index of the top-level module of `dest`: the emitter's last destination first, then
    /// a scan over (length, first 8 bytes) keys, with a full comparison only for longer names.
    #[inline(always)]
    fn index(&mut self, dest: &ModuleId) -> Option<usize> {
        let key = dest.top_key();
        let hint = self.hints[self.src];
        if self.keys[hint] == key && (key.0 <= 8 || self.ids[hint].as_str() == dest.top()) {
            return Some(hint);
        }
        let mut i = self.keys.iter().position(|k| *k == key)?;
        if key.0 > 8 && self.ids[i].as_str() != dest.top() {
            i = self.ids.iter().position(|id| id.as_str() == dest.top())?;
        }
        self.hints[self.src] = i;
        Some(i)
    }

    /// Queues `ev`, or keeps it as `unknown` if its destination does not exist.
    #[inline]
    pub(crate) fn route(&mut self, ev: Event) {
        let to = self.index(&ev.dest);
        self.queue(to, ev);
    }

    /// Queues the event `make()` for `dest`, its destination. The queue is found from `dest`
    /// before the event is made: reading the key of the event's own, freshly copied `dest`
    /// stalled on store forwarding (half of [`Outbox::send`](crate::Outbox::send)'s time in
    /// the event-loop benchmark).
    #[inline(always)]
    pub(crate) fn route_to(&mut self, dest: &ModuleId, make: impl FnOnce() -> Event) {
        let to = self.index(dest);
        self.queue(to, make());
    }

    #[inline(always)]
    fn queue(&mut self, to: Option<usize>, ev: Event) {
        match to {
            Some(i) => {
                self.queues[i].push_back(ev);
                self.buffered += 1;
            }
            None => self.not_routed(ev),
        }
    }

    /// An event for `@node` (outside the node: a reply to an injected event) is dropped and
    /// counted; any other unknown destination is kept to stop the node.
    #[cold]
    fn not_routed(&mut self, ev: Event) {
        if ev.dest.is_node() {
            self.outside += 1;
            tracing::debug!(src = %ev.src, event = ev.name(), "event for @node (outside the node); dropped");
        } else if self.unknown.is_none() {
            self.unknown = Some(ev);
        }
    }

    /// Whether `dest`'s top-level module exists.
    pub(crate) fn has(&self, dest: &ModuleId) -> bool {
        self.ids.iter().any(|id| id.as_str() == dest.top())
    }
}
