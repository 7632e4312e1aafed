//! The in-process transport: production nodes of one process talking through their
//! [`EventSink`]s.
//!
//! ```
//! use mir_runtime::transport::inprocess::InProcessNetwork;
//! use mir_runtime::{Node, NodeId, stdmodules::NullModule};
//! let net = InProcessNetwork::new();
//! let nodes: Vec<Node> = (0..3)
//!     .map(|i| {
//!         let id = NodeId::from_index(i);
//!         Node::builder(id.clone()).passive("app", NullModule).active("net", net.transport(id)).build().unwrap()
//!     })
//!     .collect();
//! for n in &nodes {
//!     net.connect(n.handle().node_id().clone(), n.handle().sink());
//! }
//! assert_eq!(net.connected().len(), 3);
//! ```
//!
//! Messages are encoded once per [`SendMessage`]; the messages of one batch for one destination
//! are injected together (in batches of at most the destination's `max_batch_size`) with
//! [`EventSink::try_inject`]: never waiting (a transport must not block its node), so a full
//! destination queue drops them and counts them as `overflow`. A destination that is not
//! connected counts as `not_connected`; a message for a module the destination does not have is
//! `rejected`. All are logged at WARN. Links are FIFO: one sender's messages to one receiver
//! arrive in order. Messages to itself take the [local loopback](super#messages-to-itself).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::core::{EventSink, InjectError};
use crate::event::{Event, Payload};
use crate::id::NodeId;
use crate::module::{ActiveModule, Batch, Context, ModuleError, ModuleResult};
use crate::stdevents::{Init, Message, MessageReceived, SendMessage};
use crate::transport::TransportStats;

/// The shared "network" of one process: who is reachable through which sink.
#[derive(Clone, Default)]
pub struct InProcessNetwork {
    sinks: Arc<Mutex<BTreeMap<NodeId, EventSink>>>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> Self {
        InProcessNetwork::default()
    }

    /// The transport module for node `me` (register it as an active module, e.g. `net`).
    pub fn transport(&self, me: NodeId) -> InProcessTransport {
        InProcessTransport { me, sinks: self.sinks.clone(), stats: Arc::default() }
    }

    /// Makes `node` reachable through `sink` (its [`NodeHandle::sink`](crate::NodeHandle::sink)).
    pub fn connect(&self, node: NodeId, sink: EventSink) {
        self.sinks.lock().expect("network lock").insert(node, sink);
    }

    /// Makes `node` unreachable (messages to it are dropped and counted from now on).
    pub fn disconnect(&self, node: &NodeId) {
        self.sinks.lock().expect("network lock").remove(node);
    }

    /// The connected nodes.
    pub fn connected(&self) -> Vec<NodeId> {
        self.sinks.lock().expect("network lock").keys().cloned().collect()
    }
}

/// The transport module of one node. See the [module docs](self).
pub struct InProcessTransport {
    me: NodeId,
    sinks: Arc<Mutex<BTreeMap<NodeId, EventSink>>>,
    stats: Arc<TransportStats>,
}

impl InProcessTransport {
    /// The transport's counters (keep the handle to read them while the node runs).
    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }

    /// Queues `send`'s messages per destination (injected together by [`Self::flush`]).
    fn send(
        &self,
        send: SendMessage,
        outgoing: &mut BTreeMap<NodeId, Vec<Event>>,
        cx: &mut Context<'_>,
    ) {
        let message = Message {
            dest_module: send.message.dest_module.clone(),
            payload: Payload::encoded(
                send.message.payload.name(),
                send.message.payload.encode_value(),
            ),
        };
        for dest in send.destinations {
            if dest == self.me {
                self.stats.sent.fetch_add(1, Relaxed);
                super::loopback(cx, &self.stats, dest, &message);
                continue;
            }
            let received = MessageReceived { from: self.me.clone(), message: message.clone() };
            let ev = Event::new(crate::ModuleId::node(), message.dest_module.clone(), received);
            outgoing.entry(dest).or_default().push(ev);
        }
    }

    /// Injects each destination's messages as few batches, in order, without waiting.
    fn flush(&self, outgoing: BTreeMap<NodeId, Vec<Event>>) {
        let sinks = self.sinks.lock().expect("network lock");
        for (dest, events) in outgoing {
            let n = events.len() as u64;
            let Some(sink) = sinks.get(&dest) else {
                self.stats.not_connected.fetch_add(n, Relaxed);
                tracing::warn!(node = %self.me, dest = %dest, messages = n, "in-process transport: destination not connected; messages dropped");
                continue;
            };
            self.stats.sent.fetch_add(n, Relaxed);
            let (good, bad): (Vec<Event>, Vec<Event>) =
                events.into_iter().partition(|ev| sink.accepts(&ev.dest));
            if !bad.is_empty() {
                self.stats.rejected.fetch_add(bad.len() as u64, Relaxed);
                tracing::warn!(node = %self.me, dest = %dest, module = %bad[0].dest, messages = bad.len(), "in-process transport: no such module at the destination; messages dropped");
            }
            let mut good = good.into_iter().peekable();
            while good.peek().is_some() {
                let chunk: Vec<Event> = good.by_ref().take(sink.max_batch()).collect();
                let len = chunk.len() as u64;
                match sink.try_inject(chunk) {
                    Ok(()) => {}
                    Err(InjectError::Full(_)) => {
                        self.stats.overflow.fetch_add(len, Relaxed);
                        tracing::warn!(node = %self.me, dest = %dest, messages = len, "in-process transport: destination overloaded; messages dropped");
                    }
                    Err(
                        InjectError::UnknownDestination { .. } | InjectError::UnknownSource { .. },
                    ) => {
                        self.stats.rejected.fetch_add(len, Relaxed);
                    }
                    Err(InjectError::NodeStopped(_)) => {
                        self.stats.not_connected.fetch_add(len, Relaxed);
                        tracing::warn!(node = %self.me, dest = %dest, "in-process transport: destination stopped; messages dropped");
                    }
                }
            }
        }
    }
}

impl ActiveModule for InProcessTransport {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        let mut outgoing = BTreeMap::new();
        for ev in events {
            if ev.is::<Init>() {
                continue;
            }
            match ev.into_payload::<SendMessage>() {
                Ok(send) => self.send(send, &mut outgoing, cx),
                Err(e) => {
                    return Err(ModuleError::new(format!(
                        "the in-process transport only handles mir.SendMessage ({e})"
                    )))
                }
            }
        }
        self.flush(outgoing);
        Ok(())
    }
}
