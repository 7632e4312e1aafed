//! Perfect links: a retransmitting link module that turns a lossy, duplicating, reordering (or
//! reconnecting) network into reliable links, under any protocol and in both executors.
//!
//! Protocols send their `SendMessage`s to the link (say `link`) instead of the transport. For each
//! destination the link numbers the message, sends it through the transport to the peer's link
//! as a [`LinkData`], and keeps it until the peer acknowledges it ([`LinkAck`]), resending it on
//! its timer's ticks with exponential back-off (1, 2, 4 … up to `max_backoff` ticks). The peer's
//! link acknowledges every copy, hands each message to its destination module **once** (as a
//! [`MessageReceived`] from the sender), and forgets duplicates. So, between correct nodes:
//!
//! * **reliable delivery**: a message to a correct peer is delivered as long as the network
//!   eventually lets copies through (a partition that heals, a connection that comes back);
//! * **no duplication**: each message is handed over at most once;
//! * **no creation**: only messages the sender's link numbered are delivered, from their sender
//!   (the transport authenticates who sent what).
//!
//! Order is not promised (the protocols here do not need FIFO links).
//!
//! Memory is bounded: at most `max_pending_bytes` of unacknowledged messages per peer (a send
//! beyond that is refused: logged, counted, dropped, as a transport does when full); a receiver
//! keeps, per sender, a watermark and the numbers received above it, at most `window` of them (a
//! message further ahead is dropped unacknowledged and comes again). [`LinkForget`] drops the
//! pending messages to an instance that was garbage-collected (module IDs under a prefix).
//! Each link instance has a `session` number; a receiver that sees a new session from a sender
//! (the sender restarted) starts its duplicate filter afresh, so a restarted node must pick a new
//! session (e.g. a restart counter).
//!
//! ```
//! use std::time::Duration;
//! use mir_runtime::sim::{Fault, LinkConfig, SimConfig, Simulation};
//! use mir_runtime::stdmodules::{PerfectLink, Timer};
//! use mir_runtime::{Node, NodeId, stdmodules::NullModule};
//! let mut sim = Simulation::new(SimConfig::with_seed(1));
//! for i in 0..2 {
//!     let me = NodeId::from_index(i);
//!     sim.add_node(Node::builder(me.clone())
//!         .passive("app", NullModule)
//!         .passive("link", PerfectLink::new(me, 0))   // protocols send to "link", not "net"
//!         .active("timer", Timer::new()))
//!     .unwrap();
//! }
//! sim.apply_fault(Fault::AllLinks(LinkConfig { drop: 0.5, ..LinkConfig::default() })).unwrap();
//! sim.run_for(Duration::from_secs(1)).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::module::{Batch, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::{Init, Message, MessageReceived, SendMessage, TimerRepeat};

/// Link → peer link: message number `seq` of session `session`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkData {
    /// The sender link's session.
    pub session: u64,
    /// The message's number on this link.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// Peer link → link: message `seq` of `session` arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkAck {
    /// The session acknowledged.
    pub session: u64,
    /// The message number acknowledged.
    pub seq: u64,
}

/// The link's clock: one tick per period (from its timer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTick;

/// Drops the unacknowledged messages to modules under `prefix` (a garbage-collected instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkForget {
    /// Messages to this module and its submodules are forgotten.
    pub prefix: ModuleId,
}

crate::payload!(
    LinkData = "link.Data",
    LinkAck = "link.Ack",
    LinkTick = "link.Tick",
    LinkForget = "link.Forget"
);

/// One unacknowledged message.
struct Pending {
    message: Message,
    bytes: usize,
    next_tick: u64,
    backoff: u64,
}

#[derive(Default)]
struct ToPeer {
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    bytes: usize,
}

#[derive(Default)]
struct FromPeer {
    session: u64,
    /// Every number below it was delivered.
    below: u64,
    /// Numbers at or above `below` delivered.
    above: BTreeSet<u64>,
}

/// Counters of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages accepted for sending (one per destination).
    pub sent: u64,
    /// Copies sent again.
    pub resent: u64,
    /// Messages handed to local modules.
    pub delivered: u64,
    /// Copies received twice (dropped).
    pub duplicates: u64,
    /// Sends refused because the peer's budget was full.
    pub refused: u64,
    /// Messages for modules this node does not have (dropped).
    pub dropped: u64,
}

/// The perfect-link module. See the [module docs](self).
pub struct PerfectLink {
    me: NodeId,
    session: u64,
    net: ModuleId,
    timer: ModuleId,
    period: Duration,
    max_backoff: u64,
    max_pending_bytes: usize,
    window: u64,
    tick: u64,
    to: BTreeMap<NodeId, ToPeer>,
    from: BTreeMap<NodeId, FromPeer>,
    stats: LinkStats,
    self_id: Option<ModuleId>,
}

impl PerfectLink {
    /// The link of node `me`, session `session`, over the transport `net` with the timer `timer`;
    /// ticks every 50 ms, backs off up to 32 ticks, keeps 16 MiB per peer, a window of 65,536.
    pub fn new(me: NodeId, session: u64) -> Self {
        PerfectLink {
            me,
            session,
            net: ModuleId::new("net"),
            timer: ModuleId::new("timer"),
            period: Duration::from_millis(50),
            max_backoff: 32,
            max_pending_bytes: 16 << 20,
            window: 1 << 16,
            tick: 0,
            to: BTreeMap::new(),
            from: BTreeMap::new(),
            stats: LinkStats::default(),
            self_id: None,
        }
    }

    /// Uses transport `net` and timer `timer` (default `net`, `timer`).
    pub fn modules(mut self, net: impl Into<ModuleId>, timer: impl Into<ModuleId>) -> Self {
        self.net = net.into();
        self.timer = timer.into();
        self
    }

    /// Resends after `period`, doubling up to `max_backoff` periods.
    pub fn retransmission(mut self, period: Duration, max_backoff: u64) -> Self {
        self.period = period;
        self.max_backoff = max_backoff.max(1);
        self
    }

    /// At most `bytes` of unacknowledged messages per peer.
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }

    /// The counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    fn send_copy(&self, out: &mut Outbox, to: &NodeId, seq: u64, message: &Message) {
        let me = self.self_id.clone().unwrap_or_else(|| ModuleId::new("link"));
        let data = LinkData { session: self.session, seq, message: message.clone() };
        out.send(
            &self.net,
            SendMessage { destinations: vec![to.clone()], message: Message::new(me, data) },
        );
    }

    fn on_send(&mut self, send: SendMessage, out: &mut Outbox) {
        for to in send.destinations {
            if to == self.me {
                // Messages to itself are local and lossless.
                if !out.has_module(&send.message.dest_module) {
                    self.stats.dropped += 1;
                    continue;
                }
                let received =
                    MessageReceived { from: self.me.clone(), message: send.message.clone() };
                out.send(&send.message.dest_module.clone(), received);
                self.stats.delivered += 1;
                continue;
            }
            let bytes = send.message.payload.encode_value().len() + 64;
            let peer = self.to.entry(to.clone()).or_default();
            if peer.bytes + bytes > self.max_pending_bytes {
                self.stats.refused += 1;
                tracing::warn!(node = %self.me, peer = %to, pending = peer.bytes, "perfect link: the peer's budget is full; message refused");
                continue;
            }
            let seq = peer.next_seq;
            peer.next_seq += 1;
            peer.bytes += bytes;
            let pending = Pending {
                message: send.message.clone(),
                bytes,
                next_tick: self.tick + 1,
                backoff: 1,
            };
            peer.pending.insert(seq, pending);
            self.stats.sent += 1;
            self.send_copy(out, &to, seq, &send.message);
        }
    }

    fn on_data(&mut self, from: NodeId, d: LinkData, out: &mut Outbox) {
        let peer = self.from.entry(from.clone()).or_default();
        if peer.session != d.session {
            *peer = FromPeer { session: d.session, ..FromPeer::default() };
        }
        if d.seq >= peer.below.saturating_add(self.window) {
            return; // too far ahead: it comes again
        }
        let me = self.self_id.clone().unwrap_or_else(|| ModuleId::new("link"));
        let ack = LinkAck { session: d.session, seq: d.seq };
        out.send(
            &self.net,
            SendMessage { destinations: vec![from.clone()], message: Message::new(me, ack) },
        );
        if d.seq < peer.below || !peer.above.insert(d.seq) {
            self.stats.duplicates += 1;
            return;
        }
        while peer.above.remove(&peer.below) {
            peer.below += 1;
        }
        let dest = d.message.dest_module.clone();
        if !out.has_module(&dest) {
            // A peer named a module this node does not have: dropped, as a transport does.
            self.stats.dropped += 1;
            tracing::debug!(from = %from, dest = %crate::ratelog::escaped(dest.as_str()), "perfect link: message for a module this node does not have; dropped");
            return;
        }
        self.stats.delivered += 1;
        out.send(&dest, MessageReceived { from, message: d.message });
    }

    fn on_ack(&mut self, from: &NodeId, a: LinkAck) {
        if a.session != self.session {
            return;
        }
        if let Some(peer) = self.to.get_mut(from) {
            if let Some(p) = peer.pending.remove(&a.seq) {
                peer.bytes -= p.bytes;
            }
        }
    }

    fn on_tick(&mut self, out: &mut Outbox) {
        self.tick += 1;
        let tick = self.tick;
        let mut copies = Vec::new();
        for (to, peer) in &mut self.to {
            for (seq, p) in peer.pending.iter_mut().filter(|(_, p)| p.next_tick <= tick) {
                p.backoff = (p.backoff * 2).min(self.max_backoff);
                p.next_tick = tick + p.backoff;
                copies.push((to.clone(), *seq, p.message.clone()));
            }
        }
        self.stats.resent += copies.len() as u64;
        for (to, seq, m) in copies {
            self.send_copy(out, &to, seq, &m);
        }
    }
}

impl PassiveModule for PerfectLink {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                let me = out.me().clone();
                self.self_id = Some(me.clone());
                let tick = Event::new(me.clone(), me, LinkTick);
                out.send(
                    &self.timer.clone(),
                    TimerRepeat {
                        id: None,
                        period: self.period,
                        retention_index: u64::MAX,
                        events: vec![tick],
                    },
                );
            } else if ev.is::<LinkTick>() {
                self.on_tick(out);
            } else if ev.is::<SendMessage>() {
                let send = ev.into_payload::<SendMessage>().map_err(ModuleError::new)?;
                self.on_send(send, out);
            } else if ev.is::<LinkForget>() {
                let f = ev.into_payload::<LinkForget>().map_err(ModuleError::new)?;
                for peer in self.to.values_mut() {
                    let bytes = &mut peer.bytes;
                    peer.pending.retain(|_, p| {
                        let keep = !p.message.dest_module.is_under(&f.prefix);
                        if !keep {
                            *bytes -= p.bytes;
                        }
                        keep
                    });
                }
            } else if ev.is::<MessageReceived>() {
                let m = ev.into_payload::<MessageReceived>().map_err(ModuleError::new)?;
                // From peers: malformed input is dropped, never fatal.
                if let Ok(Some(d)) = m.message.payload.decode::<LinkData>() {
                    self.on_data(m.from, d, out);
                } else if let Ok(Some(a)) = m.message.payload.decode::<LinkAck>() {
                    self.on_ack(&m.from, a);
                } else {
                    tracing::debug!(from = %m.from, payload = m.message.payload.name(), "perfect link: not a link message; dropped");
                }
            } else {
                return Err(ModuleError::new(format!(
                    "the perfect link does not handle {}",
                    ev.name()
                )));
            }
        }
        Ok(())
    }

    fn accepts_messages(&self) -> bool {
        true
    }
}
