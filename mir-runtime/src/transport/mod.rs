//! Transports: modules that carry [`SendMessage`](crate::stdevents::SendMessage) to other nodes
//! and hand what arrives to the destination module as
//! [`MessageReceived`]. A protocol never changes when its
//! transport does.
//!
//! | transport | where |
//! |---|---|
//! | in-process: many production nodes in one process | [`inprocess`] |
//! | simulated, with faults | built into the [simulator](crate::sim) |
//! | gRPC between processes and machines, over mutually authenticated TLS 1.3 ([`tls`]) | [`grpc`] |
//!
//! Every transport delivers payloads in **encoded** form, so a protocol that works in one process
//! also works across the network, and drops (and counts) what it cannot deliver rather than
//! stopping the node: a peer's bad input is never this node's bug.
//!
//! ## Messages to itself
//!
//! A node may list itself among a [`SendMessage`](crate::stdevents::SendMessage)'s destinations
//! (protocols do: "send to all"). Every transport, and the simulator, delivers such a message on a
//! **local, lossless loopback**: at once, into the destination module's queue, as a
//! `MessageReceived` from this node, never through the network, never dropped for lack of room
//! (it is part of the node's own output, like any event a module emits), never subject to the
//! simulator's faults. The one exception is a message for a module the node does not have: it is
//! dropped and counted as `rejected`, as it would be from a peer.

#[cfg(feature = "grpc")]
pub mod grpc;
pub mod inprocess;
#[cfg(feature = "grpc")]
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Event;
use crate::id::NodeId;
use crate::module::Context;
use crate::stdevents::{Message, MessageReceived};

/// Delivers `me`'s message to itself on the local loopback (see the module docs).
pub(crate) fn loopback(
    cx: &mut Context<'_>,
    stats: &TransportStats,
    me: NodeId,
    message: &Message,
) {
    if !cx.has_module(&message.dest_module) {
        stats.rejected.fetch_add(1, Relaxed);
        tracing::warn!(node = %me, module = %message.dest_module, "loopback: message to itself for a module this node does not have; dropped");
        return;
    }
    let dest = message.dest_module.clone();
    cx.emit(Event::new(
        crate::id::ModuleId::node(),
        dest,
        MessageReceived { from: me, message: message.clone() },
    ));
}

/// Counters of a transport, readable while it runs.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages handed to the network (one per destination).
    pub sent: AtomicU64,
    /// Messages dropped because the destination node is not connected (or unknown).
    pub not_connected: AtomicU64,
    /// Messages dropped because the destination's queue was full (overflow).
    pub overflow: AtomicU64,
    /// Messages dropped at the receiver: for a module it does not have, or malformed.
    pub rejected: AtomicU64,
}

impl TransportStats {
    /// A plain copy of the counters: (sent, not_connected, overflow, rejected).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.sent.load(Relaxed),
            self.not_connected.load(Relaxed),
            self.overflow.load(Relaxed),
            self.rejected.load(Relaxed),
        )
    }
}
