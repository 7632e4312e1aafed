//! BCB against Byzantine nodes made with the adversary layer (`mir_runtime::adversary`), no
//! hand-written evil module: an equivocating leader that also replays, duplicates, delays and
//! flips bits; a follower that forges echoes signed with its own key and mutates what it sends.
//! Safety (consistency, integrity) holds for every seed; with a Byzantine follower, validity too.
//!
//! 1,000 seeds each in the default suite; more with
//! `BYZANTINE_SEEDS=10000 cargo test --release -p protocols --test bcb_byzantine`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::adversary::{
    Adversary, Delay, Duplicate, Equivocate, Forge, Mutate, Outgoing, Replay, StrategyExt, Targets,
};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::Message;
use mir_runtime::stdmodules::TestCrypto;
use mir_runtime::{Batch, ModuleResult, Node, Outbox, PassiveModule};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest, Deliver, Echo, Send};

const INSTANCE: &[u8] = b"byzantine";

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

/// Deliveries per node.
type Delivered = Arc<Mutex<BTreeMap<NodeId, Vec<Vec<u8>>>>>;

/// Asks for a broadcast at start (on the leader) and records deliveries.
struct App {
    me: NodeId,
    broadcast: bool,
    delivered: Delivered,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() && self.broadcast {
                out.send(&ModuleId::new("bcb"), BroadcastRequest { data: b"true value".to_vec() });
            } else if let Ok(Some(d)) = ev.payload.decode::<Deliver>() {
                self.delivered.lock().unwrap().entry(self.me.clone()).or_default().push(d.data);
            }
        }
        Ok(())
    }
}

fn seeds() -> u64 {
    std::env::var("BYZANTINE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

/// Four nodes, node 0 leading; `byzantine` gets the adversary `make(crypto of that node)`.
fn run(
    seed: u64,
    byzantine: usize,
    make: impl Fn(TestCrypto) -> Adversary,
) -> (Delivered, Simulation) {
    run_with(seed, byzantine, make, |_| {})
}

/// [`run`], with `before` applied to the simulation before it runs.
fn run_with(
    seed: u64,
    byzantine: usize,
    make: impl Fn(TestCrypto) -> Adversary,
    before: impl FnOnce(&mut Simulation),
) -> (Delivered, Simulation) {
    let delivered: Delivered = Arc::default();
    let modules = BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in ids() {
        let bcb = Bcb::new(
            modules.clone(),
            INSTANCE.to_vec(),
            Voters::equal(ids()),
            ids()[0].clone(),
            me.clone(),
        );
        let app = App { me: me.clone(), broadcast: me == ids()[0], delivered: delivered.clone() };
        let node = Node::builder(me.clone())
            .passive("app", app)
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .passive("bcb", DslModule::new(bcb));
        sim.add_node(node).unwrap();
    }
    let bad = ids()[byzantine].clone();
    sim.make_byzantine(&bad, make(TestCrypto::new(bad.clone(), 1))).unwrap();
    before(&mut sim);
    sim.run_until_idle(Duration::from_secs(60)).unwrap();
    (delivered, sim)
}

/// Consistency and integrity among the correct nodes.
fn check_safety(seed: u64, delivered: &Delivered, byzantine: usize) -> Option<Vec<u8>> {
    let d = delivered.lock().unwrap();
    let mut value: Option<Vec<u8>> = None;
    for (node, got) in d.iter().filter(|(n, _)| **n != ids()[byzantine]) {
        assert!(got.len() <= 1, "seed {seed}: node {node} delivered {} times", got.len());
        if let Some(v) = got.first() {
            match &value {
                None => value = Some(v.clone()),
                Some(w) => {
                    assert_eq!(v, w, "seed {seed}: correct nodes delivered different values")
                }
            }
        }
    }
    value
}

#[test]
fn an_equivocating_leader_cannot_make_correct_nodes_disagree() {
    let mut delivered_some = 0;
    for seed in 0..seeds() {
        let (d, sim) = run(seed, 0, |_| {
            // One follower (even seeds) or a seed-drawn half of them (odd seeds) get another
            // value; all traffic is also replayed (into other instances too), duplicated,
            // delayed and occasionally bit-flipped.
            let targets = match seed % 2 {
                0 => Targets::Nodes([NodeId::from_index(3)].into()),
                _ => Targets::Half,
            };
            let lie =
                Equivocate::typed(targets, |_: &Send, _: &NodeId| Send { data: b"a lie".to_vec() });
            let other_instance = |m: &ModuleId, _: &mut mir_runtime::sim::SimRng| {
                ModuleId::try_new(&format!("{m}x")).unwrap()
            };
            Adversary::new(
                lie.then(Replay::new(0.3).retarget(other_instance))
                    .then(Duplicate { p: 0.2 })
                    .then(Delay { p: 0.3, max: Duration::from_millis(50) })
                    .then(Mutate::flip_bits(0.05)),
            )
        });
        if check_safety(seed, &d, 0).is_some() {
            delivered_some += 1;
        }
        let stats = sim.adversary_stats(&ids()[0]).unwrap();
        assert!(stats.intended > 0, "seed {seed}: the leader sent nothing");
    }
    // Not vacuous: lying to one follower leaves a strong quorum for the true value, which is then
    // delivered (and agreed on); lying to half leaves none.
    eprintln!("{delivered_some} of {} seeds delivered", seeds());
    assert!(delivered_some >= seeds() / 4, "{delivered_some} of {} seeds delivered", seeds());
}

#[test]
fn a_forging_follower_cannot_stop_or_split_the_broadcast() {
    for seed in 0..seeds() {
        let (d, _) = run(seed, 2, |crypto| {
            let me = NodeId::from_index(2);
            let signer =
                move |domain: &ModuleId, data: &[Vec<u8>]| crypto.sign_as(&me, domain, data);
            // Echoes for a value of its own choosing, signed with its own (real) key, to
            // everyone; its real echo is mutated; a tenth of its messages are truncated.
            let forge = Forge::new(0.5, |ctx, out: &[Outgoing]| {
                let Some(first) = out.first() else { return vec![] };
                let domain = first.message.dest_module.clone();
                let data = vec![INSTANCE.to_vec(), b"ECHO".to_vec(), b"forged".to_vec()];
                let Some(signature) = ctx.sign(&domain, &data) else { return vec![] };
                let peers: Vec<NodeId> = ctx.peers().cloned().collect();
                peers
                    .into_iter()
                    .map(|to| Outgoing {
                        to,
                        message: Message::new(
                            domain.clone(),
                            Echo { signature: signature.clone() },
                        ),
                        delay: Duration::ZERO,
                    })
                    .collect()
            });
            let garble = Mutate::typed(0.5, |e: &mut Echo, rng| {
                if !e.signature.is_empty() {
                    let i = rng.below(e.signature.len() as u64) as usize;
                    e.signature[i] ^= 1;
                }
            });
            Adversary::new(forge.then(garble).then(Mutate::truncate(0.1))).signer(signer)
        });
        let value = check_safety(seed, &d, 2);
        assert_eq!(value.as_deref(), Some(&b"true value"[..]), "seed {seed}: validity");
        let delivered = d.lock().unwrap();
        for n in [0, 1, 3] {
            assert_eq!(
                delivered.get(&ids()[n]).map(Vec::len),
                Some(1),
                "seed {seed}: node {n} delivers"
            );
        }
    }
}

/// The agreement monitor that checks recorded logs also checks a live simulation: it watches an
/// equivocating leader's runs without complaint, and stops a run at the first disagreement,
/// naming both deliveries.
#[test]
fn the_agreement_monitor_runs_online() {
    use mir_runtime::sim::SimError;
    use protocols::monitors::AgreementMonitor;
    for seed in 0..50 {
        let lie = || {
            let t = Targets::Nodes([NodeId::from_index(3)].into());
            Adversary::new(Equivocate::typed(t, |_: &Send, _: &NodeId| Send {
                data: b"no".to_vec(),
            }))
        };
        run_with(seed, 0, |_| lie(), |sim| sim.add_monitor(AgreementMonitor::default()));
    }
    // Two nodes whose applications are handed different deliveries of one instance.
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    for i in 0..2u8 {
        let deliver = Deliver { instance: b"i".to_vec(), data: vec![i] };
        let app = move |ev: mir_runtime::Event| ev.is::<Init>().then(|| deliver.clone());
        struct Emit<F>(F);
        impl<F: FnMut(mir_runtime::Event) -> Option<Deliver> + std::marker::Send + 'static>
            PassiveModule for Emit<F>
        {
            fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
                for ev in events {
                    if let Some(d) = (self.0)(ev) {
                        out.send(&ModuleId::new("sink"), d);
                    }
                }
                Ok(())
            }
        }
        let node = Node::builder(NodeId::from_index(i as usize))
            .passive("app", Emit(app))
            .passive("sink", mir_runtime::stdmodules::NullModule);
        sim.add_node(node).unwrap();
    }
    sim.add_monitor(AgreementMonitor::default());
    let err = sim.run_until_idle(Duration::from_secs(1)).unwrap_err();
    let SimError::Violation { violation, .. } = &err else { panic!("{err}") };
    assert!(violation.message.contains("delivered different data"), "{err}");
    assert_eq!(violation.events.len(), 2, "both deliveries are named: {err}");
}
