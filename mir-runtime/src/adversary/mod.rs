//! Byzantine nodes for any protocol: an adversary layer between a node's protocol modules and its
//! transport, driven by the seed.
//!
//! A node marked Byzantine ([`Simulation::make_byzantine`](crate::sim::Simulation::make_byzantine)
//! in the simulator; [`ByzantineTransport`] around a real transport on the production executor)
//! runs its normal modules; every message they send passes through a [`Strategy`] that may drop,
//! rewrite, split, delay, duplicate or add to it before the network sees it. Strategies see one
//! `SendMessage` at a time, fanned out into one [`Outgoing`] per destination, so equivocation
//! ("one version to these peers, another to those") is a rewrite of some of them. What a
//! strategy may do is what a real Byzantine node can do: it sees its own traffic, chooses what to
//! send, and signs with **its own** key ([`AdversaryCtx::sign`]); it never gets another node's
//! signature. Its randomness comes from the simulation's seed, so a failing run replays exactly.
//!
//! | strategy | what the node does |
//! |---|---|
//! | [`Silence`] | sends nothing (crash-stop that still receives) |
//! | [`Omit`] | sends nothing to chosen peers |
//! | [`Equivocate`] | sends another version of a message to some peers (a closure, typed or not) |
//! | [`Mutate`] | rewrites messages: typed (a closure over the decoded message) or untyped (bit flips, truncation) |
//! | [`Replay`] | sends an earlier message again, to any peer, optionally to another instance |
//! | [`Forge`] | adds messages of its own making, signed with its own key |
//! | [`Delay`], [`Duplicate`] | delays or duplicates messages |
//!
//! Strategies combine with [`StrategyExt::then`] (applied in order), and any closure
//! `FnMut(&mut AdversaryCtx, &mut Vec<Outgoing>)` is a strategy, so a protocol adds its own in a
//! few lines.
//!
//! ```
//! use std::time::Duration;
//! use mir_runtime::adversary::{Adversary, Equivocate, Omit, StrategyExt, Targets};
//! use mir_runtime::sim::{SimConfig, Simulation};
//! use mir_runtime::stdevents::TestUint64;
//! use mir_runtime::{Node, NodeId, stdmodules::NullModule};
//! let mut sim = Simulation::new(SimConfig::with_seed(1));
//! for i in 0..4 {
//!     sim.add_node(Node::builder(NodeId::from_index(i)).passive("app", NullModule)).unwrap();
//! }
//! // Node 0 tells half of its peers n + 1 instead of n, and never talks to node 3.
//! let lie = Equivocate::typed(Targets::Half, |n: &TestUint64, _to: &NodeId| TestUint64(n.0 + 1));
//! let strategy = lie.then(Omit::to([NodeId::from_index(3)]));
//! sim.make_byzantine(&NodeId::from_index(0), Adversary::new(strategy)).unwrap();
//! sim.run_for(Duration::from_secs(1)).unwrap();
//! ```

//!
//! Every stock strategy, each configured as a test would (see `mir-runtime/tests/adversary.rs`
//! for each one at work):
//!
//! ```
//! use std::time::Duration;
//! use mir_runtime::adversary::*;
//! use mir_runtime::stdevents::{Message, TestString, TestUint64};
//! use mir_runtime::{ModuleId, NodeId};
//! let quiet = Silence;                                              // sends nothing
//! let shun = Omit::to([NodeId::from_index(3)]);                     // nothing to node 3
//! let lie = Equivocate::typed(Targets::Half, |n: &TestUint64, _to: &NodeId| TestUint64(n.0 + 1));
//! let garble = Mutate::typed(0.1, |n: &mut TestUint64, _rng| n.0 = 0);   // typed rewrite, 10 %
//! let flip = Mutate::flip_bits(0.01);                               // untyped: one bit, 1 %
//! let cut = Mutate::truncate(0.01);                                 // untyped: a cut encoding
//! let again = Replay::new(0.05)                                     // old messages, 5 % per send,
//!     .retarget(|m: &ModuleId, _rng| ModuleId::new("bcb/9"));      // into another instance
//! let forge = Forge::new(0.1, |ctx, _out: &[Outgoing]| {            // messages of its own making,
//!     let sig = ctx.sign(&ModuleId::new("app"), &[b"mine".to_vec()]); // signed with its own key
//!     let to = ctx.peers().next().cloned();
//!     to.map(|to| Outgoing { to, message: Message::new("app", TestString(format!("{sig:?}"))), delay: Duration::ZERO })
//!         .into_iter()
//!         .collect()
//! });
//! let slow = Delay { p: 0.5, max: Duration::from_millis(200) };
//! let twice = Duplicate { p: 0.1 };
//! let all = lie.then(shun).then(garble).then(flip).then(cut).then(again).then(forge).then(slow).then(twice);
//! let _adversary = Adversary::new(all).signer(|_domain, _data| vec![0; 32]);
//! let _silent = Adversary::new(quiet);
//! ```

mod strategies;
mod transport;

use std::collections::VecDeque;
use std::time::Duration;

use crate::id::{ModuleId, NodeId};
use crate::sim::SimRng;
use crate::stdevents::{Message, SendMessage};

pub use strategies::{Delay, Duplicate, Equivocate, Forge, Mutate, Omit, Replay, Silence, Targets};
pub use transport::ByzantineTransport;

/// One message about to leave a Byzantine node: to one peer, after an extra delay.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The destination node.
    pub to: NodeId,
    /// The message (destination module and payload).
    pub message: Message,
    /// Held back this long before it enters the network (on top of the link's latency).
    pub delay: Duration,
}

/// Signs `data` in the signature domain `domain` (a module ID, as the crypto module does for a
/// request from that module) with the Byzantine node's own key.
pub type OwnSigner = Box<dyn Fn(&ModuleId, &[Vec<u8>]) -> Vec<u8> + Send>;

/// What a strategy can see and use.
pub struct AdversaryCtx<'a> {
    me: &'a NodeId,
    nodes: &'a [NodeId],
    rng: &'a mut SimRng,
    history: &'a VecDeque<Outgoing>,
    signer: Option<&'a OwnSigner>,
}

impl AdversaryCtx<'_> {
    /// The Byzantine node.
    pub fn me(&self) -> &NodeId {
        self.me
    }

    /// The other nodes, in order.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes.iter().filter(move |n| *n != self.me)
    }

    /// The node's randomness (from the simulation's seed).
    pub fn rng(&mut self) -> &mut SimRng {
        self.rng
    }

    /// What this node sent before (the most recent [`HISTORY`] messages, oldest first).
    pub fn earlier(&self) -> &VecDeque<Outgoing> {
        self.history
    }

    /// `data` signed with this node's own key in domain `domain`, if the adversary was given its
    /// key ([`Adversary::signer`]).
    pub fn sign(&self, domain: &ModuleId, data: &[Vec<u8>]) -> Option<Vec<u8>> {
        self.signer.map(|s| s(domain, data))
    }
}

/// How many sent messages an adversary remembers for [`Replay`].
pub const HISTORY: usize = 1024;

/// Rewrites what a Byzantine node sends. `out` holds the messages of one `SendMessage`, one per
/// destination (the node itself excluded: its messages to itself stay honest); the strategy
/// removes, rewrites or adds entries.
pub trait Strategy: Send + 'static {
    /// Rewrites `out`.
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>);
}

impl<F> Strategy for F
where
    F: FnMut(&mut AdversaryCtx<'_>, &mut Vec<Outgoing>) + Send + 'static,
{
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        self(ctx, out)
    }
}

/// Combining strategies.
pub trait StrategyExt: Strategy + Sized {
    /// This strategy, then `next` on what it produced.
    fn then(self, next: impl Strategy) -> Chain {
        Chain(vec![Box::new(self), Box::new(next)])
    }
}

impl<S: Strategy> StrategyExt for S {}

/// Strategies applied in order (see [`StrategyExt::then`]).
pub struct Chain(pub Vec<Box<dyn Strategy>>);

impl Strategy for Chain {
    fn apply(&mut self, ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>) {
        for s in &mut self.0 {
            s.apply(ctx, out);
        }
    }
}

/// The adversary of one Byzantine node: its strategy, its randomness, what it sent, its key.
pub struct Adversary {
    strategy: Box<dyn Strategy>,
    signer: Option<OwnSigner>,
    history: VecDeque<Outgoing>,
    rng: Option<SimRng>,
    /// Messages rewritten so far (sent, dropped or added by the strategy).
    pub(crate) stats: AdversaryStats,
}

/// What an adversary did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdversaryStats {
    /// Messages its modules wanted to send (one per destination).
    pub intended: u64,
    /// Messages that left (after the strategy).
    pub sent: u64,
}

impl Adversary {
    /// An adversary following `strategy`.
    pub fn new(strategy: impl Strategy) -> Self {
        Adversary {
            strategy: Box::new(strategy),
            signer: None,
            history: VecDeque::new(),
            rng: None,
            stats: AdversaryStats::default(),
        }
    }

    /// Gives the adversary its node's own signing key, for [`AdversaryCtx::sign`] (e.g.
    /// `move |domain, data| crypto.sign_as(&me, domain, data)` with the node's test crypto).
    pub fn signer(
        mut self,
        sign: impl Fn(&ModuleId, &[Vec<u8>]) -> Vec<u8> + Send + 'static,
    ) -> Self {
        self.signer = Some(Box::new(sign));
        self
    }

    /// What it did so far.
    pub fn stats(&self) -> AdversaryStats {
        self.stats
    }

    /// Seeds its randomness (the simulator does, from its seed and the node).
    pub(crate) fn seed(&mut self, seed: u64) {
        self.rng = Some(SimRng::new(seed));
    }

    /// What node `me` (among `nodes`) really sends for `send`: one entry per destination other
    /// than `me`, after the strategy.
    pub fn rewrite(&mut self, me: &NodeId, nodes: &[NodeId], send: &SendMessage) -> Vec<Outgoing> {
        let mut out: Vec<Outgoing> = send
            .destinations
            .iter()
            .filter(|d| *d != me)
            .map(|d| Outgoing {
                to: d.clone(),
                message: send.message.clone(),
                delay: Duration::ZERO,
            })
            .collect();
        self.stats.intended += out.len() as u64;
        let rng = self.rng.get_or_insert_with(|| SimRng::new(0));
        let mut ctx =
            AdversaryCtx { me, nodes, rng, history: &self.history, signer: self.signer.as_ref() };
        self.strategy.apply(&mut ctx, &mut out);
        self.stats.sent += out.len() as u64;
        for o in &out {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(o.clone());
        }
        out
    }
}

impl std::fmt::Debug for Adversary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adversary").field("stats", &self.stats).finish_non_exhaustive()
    }
}
