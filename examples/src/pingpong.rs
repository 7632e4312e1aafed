//! Ping-pong, written against the runtime directly (no DSL).
//!
//! A [`Pinger`] sends `Ping(n)` every period (through the timer) until it has sent `count`; a
//! [`Ponger`] answers each `Ping(n)` with `Pong(n)`. Run locally, the two are modules of one node;
//! in the simulator they are on two nodes and the messages cross the simulated network.

use std::sync::mpsc;
use std::time::Duration;

use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage};
use mir_runtime::stdmodules::TimerHandle;
use mir_runtime::{
    Batch, Event, ModuleError, ModuleId, ModuleResult, NodeId, Outbox, PassiveModule, Payload,
    PayloadError,
};
use serde::{Deserialize, Serialize};

/// The ping message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping(pub u64);
/// The pong message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong(pub u64);
/// The pinger's own tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick;

mir_runtime::payload!(Ping = "pingpong.Ping", Pong = "pingpong.Pong", Tick = "pingpong.Tick");

/// Where the other side is: a module of this node, or a module on another node (through the
/// transport module `net`).
#[derive(Debug, Clone)]
pub enum Peer {
    /// A module of the same node.
    Local(ModuleId),
    /// A module on another node.
    Remote {
        /// The other node.
        node: NodeId,
        /// The module on it.
        module: ModuleId,
        /// The transport module of this node.
        net: ModuleId,
    },
}

impl Peer {
    fn send(&self, out: &mut Outbox, payload: impl Into<Payload>) {
        match self {
            Peer::Local(m) => out.send(m, payload),
            Peer::Remote { node, module, net } => out.send(
                net,
                SendMessage {
                    destinations: vec![node.clone()],
                    message: Message { dest_module: module.clone(), payload: payload.into() },
                },
            ),
        }
    }
}

/// Takes the payload out of an event that is either local or a received message (with its
/// sender). The transport hands over well-formed `MessageReceived` events only, so failing to
/// unwrap one is a bug of this node; the payload inside may still be malformed (checked by the
/// caller, and dropped if so).
fn payload_of(ev: Event) -> Result<(Payload, Option<NodeId>), ModuleError> {
    if ev.is::<MessageReceived>() {
        let m = ev.into_payload::<MessageReceived>().map_err(ModuleError::new)?;
        return Ok((m.message.payload, Some(m.from)));
    }
    Ok((ev.payload, None))
}

/// Sends pings and reports pongs.
pub struct Pinger {
    /// Where pongs are answered from.
    pub peer: Peer,
    /// The timer.
    pub timer: TimerHandle,
    /// Ping period.
    pub period: Duration,
    /// How many pings.
    pub count: u64,
    /// Where to report each pong (the program prints them).
    pub report: mpsc::Sender<String>,
    sent: u64,
}

impl Pinger {
    /// A pinger.
    pub fn new(
        peer: Peer,
        timer: TimerHandle,
        period: Duration,
        count: u64,
        report: mpsc::Sender<String>,
    ) -> Self {
        Pinger { peer, timer, period, count, report, sent: 0 }
    }
}

impl PassiveModule for Pinger {
    /// Takes its peer's messages (modules refuse them unless they say so).
    fn accepts_messages(&self) -> bool {
        true
    }

    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                let tick = Event::new(out.me().clone(), out.me().clone(), Tick);
                self.timer.repeat(out, None, self.period, 0, vec![tick]);
                continue;
            }
            let (payload, from) = payload_of(ev)?;
            if payload.is::<Tick>() {
                if self.sent < self.count {
                    self.sent += 1;
                    self.peer.send(out, Ping(self.sent));
                }
                continue;
            }
            match payload.into_typed::<Pong>() {
                Ok(Pong(n)) => {
                    let from = from.map(|f| format!(" from node {f}")).unwrap_or_default();
                    let _ = self.report.send(format!("pong {n}{from}"));
                }
                Err(PayloadError::Malformed(e)) => {
                    tracing::warn!(error = %e, "malformed pong dropped")
                }
                Err(PayloadError::OtherType(p)) => {
                    tracing::warn!(kind = p.name(), "unexpected message dropped")
                }
            }
        }
        Ok(())
    }
}

/// Answers pings.
pub struct Ponger {
    /// Where to answer when the ping is local.
    pub local_reply: Option<ModuleId>,
    /// This node's transport, for pings from other nodes.
    pub net: ModuleId,
    /// The module that pings on the other nodes.
    pub remote_pinger: ModuleId,
}

impl PassiveModule for Ponger {
    /// Takes its peer's messages (modules refuse them unless they say so).
    fn accepts_messages(&self) -> bool {
        true
    }

    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                continue;
            }
            let (payload, from) = payload_of(ev)?;
            match payload.into_typed::<Ping>() {
                Ok(Ping(n)) => match (from, &self.local_reply) {
                    (Some(node), _) => Peer::Remote {
                        node,
                        module: self.remote_pinger.clone(),
                        net: self.net.clone(),
                    }
                    .send(out, Pong(n)),
                    (None, Some(m)) => out.send(m, Pong(n)),
                    (None, None) => {
                        return Err(ModuleError::new("local ping but no local pinger configured"))
                    }
                },
                Err(PayloadError::Malformed(e)) => {
                    tracing::warn!(error = %e, "malformed ping dropped")
                }
                Err(PayloadError::OtherType(p)) => {
                    tracing::warn!(kind = p.name(), "unexpected message dropped")
                }
            }
        }
        Ok(())
    }
}

/// The two nodes of the simulated ping-pong: node 0 pings node 1 `count` times, every `period`.
/// `dsl` picks the modules written in the DSL ([`crate::pingpong_dsl`]) instead of these; both
/// produce the same events, so a seed gives the same run (and digest) with either.
pub fn two_nodes(
    period: Duration,
    count: u64,
    report: mpsc::Sender<String>,
    dsl: bool,
) -> (mir_runtime::NodeBuilder, mir_runtime::NodeBuilder) {
    use mir_runtime::stdmodules::Timer;
    use mir_runtime::Node;
    let net = ModuleId::new("net");
    let timer = TimerHandle::new(ModuleId::new("timer"));
    let n0 = Node::builder("0").active("timer", Timer::new());
    let n1 = Node::builder("1");
    if dsl {
        use crate::pingpong_dsl as d;
        let pinger = d::Pinger {
            peer: NodeId::new("1"),
            net: net.clone(),
            timer,
            period,
            count,
            report,
            sent: 0,
        };
        (
            n0.passive("ping", mir_dsl::DslModule::new(pinger)),
            n1.passive("pong", mir_dsl::DslModule::new(d::Ponger { net })),
        )
    } else {
        let peer = Peer::Remote {
            node: NodeId::new("1"),
            module: ModuleId::new("pong"),
            net: net.clone(),
        };
        let pinger = Pinger::new(peer, timer, period, count, report);
        let ponger = Ponger { local_reply: None, net, remote_pinger: ModuleId::new("ping") };
        (n0.passive("ping", pinger), n1.passive("pong", ponger))
    }
}
