//! The stock strategies. Each is documented with what a Byzantine node doing it looks like.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{AdversaryCtx, Outgoing, Strategy};
use crate::event::{EventPayload, Payload};
use crate::id::{ModuleId, NodeId};
use crate::sim::SimRng;
use crate::stdevents::Message;

/// Sends nothing: a crash-stop node that still receives (its modules keep running).
#[derive(Debug, Clone, Copy, Default)]
pub struct Silence;

impl Strategy for Silence {
    fn apply(&mut self, _: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        out.clear();
    }
}

/// Sends nothing to some peers (omission).
#[derive(Debug, Clone, Default)]
pub struct Omit(pub BTreeSet<NodeId>);

impl Omit {
    /// Omits every message to `peers`.
    pub fn to(peers: impl IntoIterator<Item = NodeId>) -> Self {
        Omit(peers.into_iter().collect())
    }
}

impl Strategy for Omit {
    fn apply(&mut self, _: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        out.retain(|o| !self.0.contains(&o.to));
    }
}

/// Which peers an equivocating node lies to.
#[derive(Debug, Clone)]
pub enum Targets {
    /// These peers.
    Nodes(BTreeSet<NodeId>),
    /// A half of the peers (rounded up) drawn from the seed once, then always the same.
    Half,
    /// Every peer.
    All,
}

type Rewrite = Box<dyn FnMut(&Message, &NodeId, &mut SimRng) -> Option<Payload> + Send>;

/// Sends another version of a message to the [`Targets`]: the closure gets the message and the
/// peer, and returns the payload that peer gets instead (`None`: the true one). Together with the
/// true version to the others, that is equivocation.
pub struct Equivocate {
    targets: Targets,
    chosen: Option<BTreeSet<NodeId>>,
    rewrite: Rewrite,
}

impl Equivocate {
    /// Rewrites any message for the targets with `rewrite`.
    pub fn new(
        targets: Targets,
        rewrite: impl FnMut(&Message, &NodeId, &mut SimRng) -> Option<Payload> + Send + 'static,
    ) -> Self {
        Equivocate { targets, chosen: None, rewrite: Box::new(rewrite) }
    }

    /// Rewrites messages of type `M` for the targets: `other(m, peer)` is what `peer` gets.
    /// Other types pass unchanged.
    pub fn typed<M: EventPayload>(
        targets: Targets,
        mut other: impl FnMut(&M, &NodeId) -> M + Send + 'static,
    ) -> Self {
        Equivocate::new(targets, move |msg, to, _| {
            let m = msg.payload.decode::<M>().ok().flatten()?;
            Some(Payload::from(other(&m, to)))
        })
    }
}

impl Strategy for Equivocate {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        if self.chosen.is_none() {
            let mut peers: Vec<NodeId> = ctx.peers().cloned().collect();
            self.chosen = Some(match &self.targets {
                Targets::Nodes(n) => n.clone(),
                Targets::All => peers.into_iter().collect(),
                Targets::Half => {
                    let k = peers.len().div_ceil(2);
                    let mut set = BTreeSet::new();
                    while set.len() < k {
                        let i = ctx.rng().below(peers.len() as u64) as usize;
                        set.insert(peers.swap_remove(i));
                    }
                    set
                }
            });
        }
        let chosen = self.chosen.as_ref().expect("chosen above");
        for o in out.iter_mut().filter(|o| chosen.contains(&o.to)) {
            if let Some(p) = (self.rewrite)(&o.message, &o.to, ctx.rng()) {
                o.message.payload = p;
            }
        }
    }
}

type Change = Box<dyn FnMut(&mut Message, &mut SimRng) -> bool + Send>;

/// Rewrites messages with probability `p` each: typed (a closure over the decoded message) or
/// untyped (bit flips, truncation of the encoding). The receivers see well-formed or malformed
/// messages that the node's modules never sent.
pub struct Mutate {
    p: f64,
    change: Change,
}

impl Mutate {
    /// With probability `p`, messages of type `M` are changed by `change` (other types pass).
    pub fn typed<M: EventPayload>(
        p: f64,
        mut change: impl FnMut(&mut M, &mut SimRng) + Send + 'static,
    ) -> Self {
        Mutate {
            p,
            change: Box::new(move |msg, rng| match msg.payload.decode::<M>() {
                Ok(Some(mut m)) => {
                    change(&mut m, rng);
                    msg.payload = Payload::from(m);
                    true
                }
                _ => false,
            }),
        }
    }

    /// With probability `p`, one random bit of a message's encoding is flipped.
    pub fn flip_bits(p: f64) -> Self {
        Mutate {
            p,
            change: Box::new(|msg, rng| {
                let mut bytes = msg.payload.encode_value();
                if bytes.is_empty() {
                    return false;
                }
                let bit = rng.below(bytes.len() as u64 * 8);
                bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
                msg.payload = Payload::encoded(msg.payload.name(), bytes);
                true
            }),
        }
    }

    /// With probability `p`, a message's encoding is cut at a random length.
    pub fn truncate(p: f64) -> Self {
        Mutate {
            p,
            change: Box::new(|msg, rng| {
                let mut bytes = msg.payload.encode_value();
                if bytes.is_empty() {
                    return false;
                }
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
                msg.payload = Payload::encoded(msg.payload.name(), bytes);
                true
            }),
        }
    }
}

impl Strategy for Mutate {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        for o in out.iter_mut() {
            if ctx.rng().chance(self.p) {
                (self.change)(&mut o.message, ctx.rng());
            }
        }
    }
}

type Retarget = Box<dyn FnMut(&ModuleId, &mut SimRng) -> ModuleId + Send>;

/// With probability `p` per message sent, also sends one of its earlier messages again, to a
/// random peer; with [`Replay::retarget`], to another module (another instance) too.
pub struct Replay {
    p: f64,
    retarget: Option<Retarget>,
}

impl Replay {
    /// Replays earlier messages with probability `p` per message sent.
    pub fn new(p: f64) -> Self {
        Replay { p, retarget: None }
    }

    /// Sends replayed messages to `to(original module)` instead (e.g. another instance's ID).
    pub fn retarget(
        mut self,
        to: impl FnMut(&ModuleId, &mut SimRng) -> ModuleId + Send + 'static,
    ) -> Self {
        self.retarget = Some(Box::new(to));
        self
    }
}

impl Strategy for Replay {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        let mut extra = Vec::new();
        for _ in 0..out.len() {
            if ctx.earlier().is_empty() || !ctx.rng().chance(self.p) {
                continue;
            }
            let len = ctx.earlier().len() as u64;
            let i = ctx.rng().below(len) as usize;
            let mut old = ctx.earlier()[i].clone();
            let peers: Vec<NodeId> = ctx.peers().cloned().collect();
            if peers.is_empty() {
                continue;
            }
            old.to = peers[ctx.rng().below(peers.len() as u64) as usize].clone();
            if let Some(r) = &mut self.retarget {
                old.message.dest_module = r(&old.message.dest_module, ctx.rng());
            }
            old.delay = Duration::ZERO;
            extra.push(old);
        }
        out.extend(extra);
    }
}

type Make = Box<dyn FnMut(&mut AdversaryCtx<'_>, &[Outgoing]) -> Vec<Outgoing> + Send>;

/// Adds messages of the node's own making, with probability `p` per `SendMessage`: the closure
/// sees what is about to go and returns what to add. It can sign with the node's own key
/// ([`AdversaryCtx::sign`]) — never with another node's.
pub struct Forge {
    p: f64,
    make: Make,
}

impl Forge {
    /// Adds `make(ctx, outgoing)` with probability `p` per `SendMessage`.
    pub fn new(
        p: f64,
        make: impl FnMut(&mut AdversaryCtx<'_>, &[Outgoing]) -> Vec<Outgoing> + Send + 'static,
    ) -> Self {
        Forge { p, make: Box::new(make) }
    }
}

impl Strategy for Forge {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        if ctx.rng().chance(self.p) {
            let extra = (self.make)(ctx, out);
            out.extend(extra);
        }
    }
}

/// Holds messages back, with probability `p` each, by up to `max` (uniform).
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    /// Probability per message.
    pub p: f64,
    /// The longest delay.
    pub max: Duration,
}

impl Strategy for Delay {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        for o in out.iter_mut() {
            if ctx.rng().chance(self.p) {
                o.delay += Duration::from_nanos(ctx.rng().between(0, self.max.as_nanos() as u64));
            }
        }
    }
}

/// Sends messages twice, with probability `p` each.
#[derive(Debug, Clone, Copy)]
pub struct Duplicate {
    /// Probability per message.
    pub p: f64,
}

impl Strategy for Duplicate {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        let copies: Vec<Outgoing> =
            out.iter().filter(|_| ctx.rng().chance(self.p)).cloned().collect();
        out.extend(copies);
    }
}
