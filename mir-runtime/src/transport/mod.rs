//! Transports: modules that carry [`SendMessage`](crate::stdevents::SendMessage) to other nodes
//! and hand what arrives to the destination module as
//! [`MessageReceived`](crate::stdevents::MessageReceived). A protocol never changes when its
//! transport does.
//!
//! | transport | where |
//! |---|---|
//! | in-process: many production nodes in one process | [`inprocess`] |
//! | simulated, with faults | built into the [simulator](crate::sim) |
//! | gRPC between processes and machines, with authenticated peers | [`grpc`] |
//!
//! Every transport delivers payloads in **encoded** form, so a protocol that works in one process
//! also works across the network, and drops (and counts) what it cannot deliver rather than
//! stopping the node: a peer's bad input is never this node's bug.

pub mod grpc;
pub mod inprocess;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
