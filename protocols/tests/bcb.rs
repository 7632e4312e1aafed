//! BCB in the deterministic simulator: 4 nodes, simulated network, test crypto.
//!
//! Validity with a correct leader; consistency with an equivocating leader; forged, duplicated,
//! repeated-signer and non-member FINALs rejected; a non-leader request refused, not a crash.
//! 200 seeds per property by default; `BCB_SEEDS=10000 cargo test -p protocols --test bcb --
//! --ignored` for the long sweep.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
use mir_dsl::mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage};
use mir_dsl::mir_runtime::stdmodules::TestCrypto;
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
use mir_dsl::{DslModule, DslStats, Voters};
use protocols::bcb::{Bcb, BcbModules, BroadcastRefused, BroadcastRequest, Deliver, Echo, Final};

const SEED: u64 = 99;
const INSTANCE: &[u8] = b"bcb-test-1";

fn id(s: &str) -> ModuleId {
    ModuleId::new(s)
}

fn nodes() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

fn modules() -> BcbModules {
    BcbModules { net: id("net"), crypto: id("crypto"), consumer: id("app") }
}

#[derive(Default, Clone)]
struct Outcome {
    delivered: Arc<Mutex<BTreeMap<NodeId, Vec<Vec<u8>>>>>,
    refused: Arc<Mutex<Vec<String>>>,
}

/// The application: asks for a broadcast at start (if `data` is set) and records what is
/// delivered or refused.
struct App {
    me: NodeId,
    data: Option<Vec<u8>>,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                if let Some(d) = self.data.take() {
                    out.send(&id("bcb"), BroadcastRequest { data: d });
                }
            } else if let Some(d) = ev.get::<Deliver>() {
                assert_eq!(d.instance, INSTANCE);
                self.outcome
                    .delivered
                    .lock()
                    .unwrap()
                    .entry(self.me.clone())
                    .or_default()
                    .push(d.data.clone());
            } else if let Some(r) = ev.get::<BroadcastRefused>() {
                self.outcome.refused.lock().unwrap().push(r.reason.clone());
            }
        }
        Ok(())
    }
}

struct Cluster {
    sim: Simulation,
    outcome: Outcome,
    stats: BTreeMap<NodeId, Arc<DslStats>>,
}

/// Four nodes, leader 0. `leader_module` replaces node 0's BCB when given (a Byzantine leader);
/// `requests` says which nodes' apps ask for a broadcast at start.
fn cluster(
    seed: u64,
    byzantine_leader: Option<Box<dyn PassiveModule>>,
    requests: &[(usize, &[u8])],
) -> Cluster {
    cluster_with(seed, byzantine_leader, requests, false)
}

/// `ecdsa`: real k256 signatures instead of the test crypto.
fn cluster_with(
    seed: u64,
    byzantine_leader: Option<Box<dyn PassiveModule>>,
    requests: &[(usize, &[u8])],
    ecdsa: bool,
) -> Cluster {
    let (keys, registry) = mir_dsl::mir_runtime::stdmodules::ecdsa::test_keys(SEED, &nodes());
    let outcome = Outcome::default();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    let mut stats = BTreeMap::new();
    let mut byz = byzantine_leader;
    for (i, me) in nodes().into_iter().enumerate() {
        let data = requests.iter().find(|(n, _)| *n == i).map(|(_, d)| d.to_vec());
        let app = App { me: me.clone(), data, outcome: outcome.clone() };
        let b = Node::builder(me.clone()).passive("app", app);
        let b = if ecdsa {
            let crypto = mir_dsl::mir_runtime::stdmodules::EcdsaCrypto::new(
                keys[&me].clone(),
                registry.clone(),
            );
            b.passive("crypto", crypto)
        } else {
            b.passive("crypto", TestCrypto::new(me.clone(), SEED))
        };
        let b = match (i, byz.take()) {
            (0, Some(m)) => b.passive("bcb", m),
            (_, other) => {
                byz = other;
                let m = DslModule::new(Bcb::new(
                    modules(),
                    INSTANCE.to_vec(),
                    Voters::equal(nodes()),
                    nodes()[0].clone(),
                    me.clone(),
                ));
                stats.insert(me.clone(), m.stats());
                b.passive("bcb", m)
            }
        };
        sim.add_node(b).unwrap();
    }
    Cluster { sim, outcome, stats }
}

fn delivered(c: &Cluster) -> BTreeMap<NodeId, Vec<Vec<u8>>> {
    c.outcome.delivered.lock().unwrap().clone()
}

fn validity(seed: u64) {
    let mut c = cluster(seed, None, &[(0, b"hello")]);
    c.sim.run_until_idle(Duration::from_secs(10)).unwrap();
    let d = delivered(&c);
    for n in nodes() {
        assert_eq!(
            d.get(&n),
            Some(&vec![b"hello".to_vec()]),
            "seed {seed}: node {n} must deliver exactly once"
        );
    }
    assert!(
        c.stats.values().all(|s| s.ignored() == 0),
        "seed {seed}: no input should be ignored in a correct run"
    );
}

#[test]
fn all_correct_nodes_deliver_the_leaders_message() {
    for seed in 0..200 {
        validity(seed);
    }
}

#[test]
fn with_real_ecdsa_signatures_too() {
    for seed in 0..5 {
        let mut c = cluster_with(seed, None, &[(0, b"signed for real")], true);
        c.sim.run_until_idle(Duration::from_secs(10)).unwrap();
        let d = delivered(&c);
        assert_eq!(d.len(), 4, "seed {seed}");
        assert!(d.values().all(|v| v == &vec![b"signed for real".to_vec()]));
    }
}

#[test]
fn runs_are_deterministic() {
    let digest = |seed| {
        let mut c = cluster(seed, None, &[(0, b"hello")]);
        c.sim.run_until_idle(Duration::from_secs(10)).unwrap();
        c.sim.digest()
    };
    assert_eq!(digest(7), digest(7));
    assert_ne!(digest(7), digest(8));
}

#[test]
fn a_broadcast_request_to_a_non_leader_is_refused_not_a_crash() {
    let mut c = cluster(1, None, &[(0, b"hello"), (2, b"usurper")]);
    c.sim.run_until_idle(Duration::from_secs(10)).unwrap();
    assert_eq!(c.outcome.refused.lock().unwrap().len(), 1);
    assert!(c.outcome.refused.lock().unwrap()[0].contains("not the leader"));
    assert!(delivered(&c).values().all(|v| v == &vec![b"hello".to_vec()]));
}

/// A Byzantine leader: sends `a` to nodes 1 and 2 and `b` to node 3, gathers their echoes, and
/// then tries every trick: a FINAL for `a` with a strong quorum to node 1 only; for `b`, FINALs
/// with a repeated signer, a non-member signer, a forged signature and too few signers.
struct Equivocator {
    crypto: TestCrypto,
    echoes: BTreeMap<NodeId, Vec<u8>>,
    sent_finals: bool,
}

fn echo_data(m: &[u8]) -> Vec<Vec<u8>> {
    vec![INSTANCE.to_vec(), b"ECHO".to_vec(), m.to_vec()]
}

fn send(out: &mut Outbox, to: &[usize], payload: impl Into<mir_dsl::mir_runtime::Payload>) {
    let destinations = to.iter().map(|i| NodeId::from_index(*i)).collect();
    out.send(
        &id("net"),
        SendMessage {
            destinations,
            message: Message { dest_module: id("bcb"), payload: payload.into() },
        },
    );
}

impl PassiveModule for Equivocator {
    fn accepts_messages(&self) -> bool {
        true
    }
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                send(out, &[1, 2], protocols::bcb::Send { data: b"a".to_vec() });
                send(out, &[3], protocols::bcb::Send { data: b"b".to_vec() });
            } else if let Some(m) = ev.get::<MessageReceived>() {
                if let Ok(Some(e)) = m.message.payload.decode::<Echo>() {
                    self.echoes.insert(m.from.clone(), e.signature);
                }
            }
        }
        if self.echoes.len() == 3 && !self.sent_finals {
            self.sent_finals = true;
            let me = NodeId::from_index(0);
            let n = |i: usize| NodeId::from_index(i);
            let sig_a0 = self.crypto.sign_as(&me, &id("bcb"), &echo_data(b"a"));
            let sig_b0 = self.crypto.sign_as(&me, &id("bcb"), &echo_data(b"b"));
            let (s1, s2, s3) = (
                self.echoes[&n(1)].clone(),
                self.echoes[&n(2)].clone(),
                self.echoes[&n(3)].clone(),
            );
            // A valid FINAL for `a`, to node 1 only.
            send(
                out,
                &[1],
                Final {
                    data: b"a".to_vec(),
                    signers: vec![me.clone(), n(1), n(2)],
                    signatures: vec![sig_a0, s1, s2],
                },
            );
            let bad_finals = [
                // Repeated signer: node 3's one valid echo for `b`, three times (Mir accepted this).
                Final {
                    data: b"b".to_vec(),
                    signers: vec![n(3), n(3), n(3)],
                    signatures: vec![s3.clone(), s3.clone(), s3.clone()],
                },
                // A non-member signer.
                Final {
                    data: b"b".to_vec(),
                    signers: vec![me.clone(), n(3), NodeId::new("9")],
                    signatures: vec![sig_b0.clone(), s3.clone(), vec![1]],
                },
                // A forged signature for node 2.
                Final {
                    data: b"b".to_vec(),
                    signers: vec![me.clone(), n(2), n(3)],
                    signatures: vec![sig_b0.clone(), vec![7; 32], s3.clone()],
                },
                // Too few signers.
                Final {
                    data: b"b".to_vec(),
                    signers: vec![me.clone(), n(3)],
                    signatures: vec![sig_b0, s3],
                },
            ];
            for f in bad_finals {
                send(out, &[2, 3], f);
            }
        }
        Ok(())
    }
}

fn consistency(seed: u64) {
    let byz = Equivocator {
        crypto: TestCrypto::new(NodeId::from_index(0), SEED),
        echoes: BTreeMap::new(),
        sent_finals: false,
    };
    let mut c = cluster(seed, Some(Box::new(byz)), &[]);
    c.sim.run_until_idle(Duration::from_secs(10)).unwrap();
    let d = delivered(&c);
    // Only node 1 got a valid FINAL; nobody delivers `b`; no node delivers twice.
    assert_eq!(d.get(&NodeId::from_index(1)), Some(&vec![b"a".to_vec()]), "seed {seed}");
    let all: Vec<&Vec<u8>> = d.values().flatten().collect();
    assert!(
        all.iter().all(|m| m.as_slice() == b"a"),
        "seed {seed}: correct nodes delivered different data: {d:?}"
    );
    assert!(d.values().all(|v| v.len() == 1));
    // Nodes 2 and 3 each rejected the four bad FINALs.
    for n in [2, 3] {
        assert_eq!(c.stats[&NodeId::from_index(n)].ignored(), 4, "seed {seed}: node {n}");
    }
}

#[test]
fn an_equivocating_leader_cannot_make_correct_nodes_disagree() {
    for seed in 0..200 {
        consistency(seed);
    }
}

/// FINALs injected into node 1 as if sent by node 3, in a run where nothing else happens.
#[test]
fn forged_duplicated_and_repeated_signer_finals_are_rejected() {
    let crypto = TestCrypto::new(NodeId::from_index(0), SEED);
    let sig =
        |i: usize, m: &[u8]| crypto.sign_as(&NodeId::from_index(i), &id("bcb"), &echo_data(m));
    let n = NodeId::from_index;
    let fin = |signers: Vec<NodeId>, signatures: Vec<Vec<u8>>| {
        let m = Final { data: b"x".to_vec(), signers, signatures };
        Event::new("net", "bcb", MessageReceived { from: n(3), message: Message::new("bcb", m) })
    };
    let mut c = cluster(5, None, &[]);
    let node1 = n(1);
    c.sim
        .inject(
            &node1,
            vec![
                fin(vec![n(2), n(2), n(2)], vec![sig(2, b"x"), sig(2, b"x"), sig(2, b"x")]),
                fin(vec![n(0), n(1), n(2)], vec![sig(0, b"x"), sig(1, b"x"), sig(2, b"y")]),
                fin(vec![n(0), n(1)], vec![sig(0, b"x")]),
            ],
        )
        .unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert!(delivered(&c).is_empty(), "nothing valid was sent");
    assert_eq!(c.stats[&node1].ignored(), 3);

    // A valid FINAL, duplicated: delivered once.
    let valid = fin(vec![n(0), n(1), n(2)], vec![sig(0, b"x"), sig(1, b"x"), sig(2, b"x")]);
    c.sim.inject(&node1, vec![valid.clone(), valid.clone()]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    c.sim.inject(&node1, vec![valid]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(delivered(&c).get(&node1), Some(&vec![b"x".to_vec()]));
    assert_eq!(c.stats[&node1].ignored(), 3, "late duplicates are not errors either");
}

#[test]
#[ignore]
fn long_sweep() {
    let n: u64 = std::env::var("BCB_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    for seed in 0..n {
        validity(seed);
        consistency(seed);
        if seed % 1000 == 999 {
            eprintln!("{} seeds", seed + 1);
        }
    }
}

/// A recorded run of the correct cluster, replayed: each node's BCB module, fresh, emits exactly
/// what the recording shows (the replay would catch a nondeterministic protocol).
#[test]
fn a_recorded_bcb_run_replays_to_the_same_outputs() {
    use mir_dsl::mir_runtime::eventlog::{read_log, replay, Recorder, RecorderConfig};
    let dir = std::env::temp_dir().join(format!("mir-bcb-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = Outcome::default();
    let mut sim = Simulation::new(SimConfig::with_seed(17));
    let mut files = Vec::new();
    let bcb = |me: &NodeId| {
        DslModule::new(Bcb::new(
            modules(),
            INSTANCE.to_vec(),
            Voters::equal(nodes()),
            nodes()[0].clone(),
            me.clone(),
        ))
    };
    for (i, me) in nodes().into_iter().enumerate() {
        let rec = Recorder::new(RecorderConfig::new(&dir), &me).unwrap();
        files.push(rec.files());
        let app = App {
            me: me.clone(),
            data: (i == 0).then(|| b"replayed".to_vec()),
            outcome: outcome.clone(),
        };
        let b = Node::builder(me.clone())
            .passive("app", app)
            .passive("crypto", TestCrypto::new(me.clone(), SEED))
            .passive("bcb", bcb(&me))
            .interceptor(rec);
        sim.add_node(b).unwrap();
    }
    sim.run_until_idle(Duration::from_secs(10)).unwrap();
    drop(sim);
    assert_eq!(outcome.delivered.lock().unwrap().len(), 4);
    for (me, f) in nodes().iter().zip(&files) {
        let entries: Vec<_> = f.lock().unwrap().iter().flat_map(|p| read_log(p).unwrap()).collect();
        let mut fresh: BTreeMap<ModuleId, Box<dyn PassiveModule>> = BTreeMap::new();
        fresh.insert(id("bcb"), Box::new(bcb(me)));
        fresh.insert(id("crypto"), Box::new(TestCrypto::new(me.clone(), SEED)));
        let report = replay(&entries, me, fresh, |_| {}).unwrap();
        assert!(report.inputs > 0 && report.confirmed > 0, "node {me}: {report:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A violation built by hand: two nodes deliver different data in one instance; a third delivers
/// twice. The monitor names the events.
#[test]
fn the_agreement_monitor_flags_a_violation() {
    use mir_dsl::mir_runtime::eventlog::{check, Entry};
    let deliver = |node: usize, t: u64, data: &[u8]| Entry {
        node: NodeId::from_index(node),
        module: id("app"),
        time_ns: t,
        index: 7,
        events: vec![Event::new(
            "bcb",
            "app",
            Deliver { instance: b"i".to_vec(), data: data.to_vec() },
        )],
    };
    let err = check(
        &[deliver(1, 10, b"a"), deliver(2, 20, b"b")],
        &mut protocols::monitors::AgreementMonitor::default(),
    )
    .unwrap_err();
    assert_eq!(err.message, "nodes 1 and 2 delivered different data in instance [105]");
    assert_eq!(
        err.events.iter().map(|o| (o.node.to_string(), o.time_ns)).collect::<Vec<_>>(),
        [("1".into(), 10), ("2".into(), 20)]
    );
    assert!(err.to_string().contains("node 2 #7 at 0.000 ms"), "{err}");
    let twice = check(
        &[deliver(3, 1, b"a"), deliver(3, 2, b"a")],
        &mut protocols::monitors::AgreementMonitor::default(),
    )
    .unwrap_err();
    assert!(twice.message.starts_with("node 3 delivered twice"));
    check(
        &[deliver(0, 1, b"a"), deliver(1, 2, b"a")],
        &mut protocols::monitors::AgreementMonitor::default(),
    )
    .unwrap();
}
