//! Each stock strategy of the adversary layer, on a 4-node simulation where node 0 sends numbers
//! to everyone (itself included): what the other nodes receive is what the strategy promises,
//! and node 0's messages to itself stay honest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_runtime::adversary::{
    Adversary, Delay, Duplicate, Equivocate, Forge, Mutate, Omit, Outgoing, Replay, Silence,
    StrategyExt, Targets,
};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage, TestString, TestUint64};
use mir_runtime::stdmodules::TestCrypto;
use mir_runtime::{Batch, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule};

/// What each node received: (time in µs, value or "malformed").
type Got = Arc<Mutex<BTreeMap<NodeId, Vec<(u128, String)>>>>;

struct App {
    me: NodeId,
    got: Got,
    now: Arc<Mutex<u128>>,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() && self.me == NodeId::from_index(0) {
                for n in 0..3 {
                    let all: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
                    let message = Message::new("app", TestUint64(n));
                    out.send(&ModuleId::new("net"), SendMessage { destinations: all, message });
                }
            } else if let Ok(Some(m)) = ev.payload.decode::<MessageReceived>() {
                let v = match (
                    m.message.payload.decode::<TestUint64>(),
                    m.message.payload.decode::<TestString>(),
                ) {
                    (Ok(Some(n)), _) => n.0.to_string(),
                    (_, Ok(Some(s))) => s.0,
                    _ => "malformed".to_owned(),
                };
                let t = *self.now.lock().unwrap();
                self.got.lock().unwrap().entry(self.me.clone()).or_default().push((t, v));
            }
        }
        Ok(())
    }

    fn accepts_messages(&self) -> bool {
        true
    }
}

fn run(seed: u64, adversary: Adversary) -> BTreeMap<NodeId, Vec<String>> {
    let got: Got = Arc::default();
    let now = Arc::new(Mutex::new(0));
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    for i in 0..4 {
        let me = NodeId::from_index(i);
        sim.add_node(
            Node::builder(me.clone())
                .passive("app", App { me, got: got.clone(), now: now.clone() }),
        )
        .unwrap();
    }
    sim.make_byzantine(&NodeId::from_index(0), adversary).unwrap();
    while sim.step().unwrap() {
        *now.lock().unwrap() = sim.now().since_start().as_micros();
    }
    let g = got.lock().unwrap();
    g.iter().map(|(n, v)| (n.clone(), v.iter().map(|(_, s)| s.clone()).collect())).collect()
}

fn node(i: usize) -> NodeId {
    NodeId::from_index(i)
}

fn honest() -> Vec<String> {
    vec!["0".into(), "1".into(), "2".into()]
}

#[test]
fn silence_sends_nothing_but_its_own_messages_stay_honest() {
    let got = run(1, Adversary::new(Silence));
    assert_eq!(got.get(&node(0)), Some(&honest()), "messages to itself");
    assert!((1..4).all(|i| !got.contains_key(&node(i))), "{got:?}");
}

#[test]
fn omit_cuts_the_chosen_peers_only() {
    let got = run(1, Adversary::new(Omit::to([node(3)])));
    assert!(!got.contains_key(&node(3)));
    for i in 0..3 {
        let mut v = got[&node(i)].clone();
        v.sort();
        assert_eq!(v, honest(), "node {i}");
    }
}

#[test]
fn equivocation_lies_to_a_seed_drawn_half() {
    for seed in 0..20 {
        let lie =
            Equivocate::typed(Targets::Half, |n: &TestUint64, _: &NodeId| TestUint64(n.0 + 100));
        let got = run(seed, Adversary::new(lie));
        let lied: Vec<usize> = (1..4)
            .filter(|i| got[&node(*i)].iter().all(|v| v.parse::<u64>().unwrap() >= 100))
            .collect();
        let told_truth = (1..4)
            .filter(|i| got[&node(*i)].iter().all(|v| v.parse::<u64>().unwrap() < 100))
            .count();
        assert_eq!((lied.len(), told_truth), (2, 1), "seed {seed}: {got:?}");
    }
}

#[test]
fn typed_and_untyped_mutation() {
    let typed = Mutate::typed(1.0, |n: &mut TestUint64, _| n.0 = 7);
    let got = run(1, Adversary::new(typed));
    assert!((1..4).all(|i| got[&node(i)] == vec!["7", "7", "7"]), "{got:?}");
    // A TestUint64 is one varint byte here: truncation leaves nothing decodable.
    let got = run(1, Adversary::new(Mutate::truncate(1.0)));
    assert!((1..4).all(|i| got[&node(i)].iter().all(|v| v == "malformed")), "{got:?}");
    let got = run(1, Adversary::new(Mutate::flip_bits(1.0)));
    assert!((1..4).all(|i| got[&node(i)].len() == 3 && got[&node(i)] != honest()), "{got:?}");
    assert_eq!(got[&node(0)], honest());
}

#[test]
fn replay_resends_earlier_messages() {
    let got = run(3, Adversary::new(Replay::new(1.0)));
    let total: usize = (1..4).map(|i| got[&node(i)].len()).sum();
    assert!(total > 9, "replays come on top of the 9 messages: {got:?}");
    assert!((1..4).all(|i| got[&node(i)].iter().all(|v| ["0", "1", "2"].contains(&v.as_str()))));
}

#[test]
fn delay_and_duplicate() {
    let got = run(1, Adversary::new(Duplicate { p: 1.0 }));
    assert!((1..4).all(|i| got[&node(i)].len() == 6), "{got:?}");
    // With every message held back by up to 10 s, the last arrival is far later than the
    // network's 10 ms.
    let late = Adversary::new(Delay { p: 1.0, max: Duration::from_secs(10) });
    let got: Got = Arc::default();
    let now = Arc::new(Mutex::new(0));
    let mut sim = Simulation::new(SimConfig::with_seed(5));
    for i in 0..4 {
        let me = NodeId::from_index(i);
        sim.add_node(
            Node::builder(me.clone())
                .passive("app", App { me, got: got.clone(), now: now.clone() }),
        )
        .unwrap();
    }
    sim.make_byzantine(&node(0), late).unwrap();
    sim.run_until_idle(Duration::from_secs(60)).unwrap();
    assert!(sim.now().since_start() > Duration::from_millis(100), "{}", sim.now());
}

#[test]
fn forgery_signs_with_its_own_key_only() {
    let crypto = TestCrypto::new(node(0), 1);
    let check = TestCrypto::new(node(0), 1);
    let forge = Forge::new(1.0, |ctx, _out: &[Outgoing]| {
        let sig = ctx.sign(&ModuleId::new("app"), &[b"mine".to_vec()]).expect("a signer");
        let to = ctx.peers().next().unwrap().clone();
        vec![Outgoing {
            to,
            message: Message::new("app", TestString(format!("{sig:?}"))),
            delay: Duration::ZERO,
        }]
    });
    let me = node(0);
    let adversary =
        Adversary::new(forge).signer(move |domain, data| crypto.sign_as(&me, domain, data));
    let got = run(1, adversary);
    let expected =
        format!("{:?}", check.sign_as(&node(0), &ModuleId::new("app"), &[b"mine".to_vec()]));
    assert_eq!(got[&node(1)].iter().filter(|v| **v == expected).count(), 3, "{got:?}");
    // Without a key, nothing can be signed.
    let unsigned = Forge::new(1.0, |ctx, _: &[Outgoing]| {
        assert!(ctx.sign(&ModuleId::new("app"), &[]).is_none());
        vec![]
    });
    run(1, Adversary::new(unsigned.then(Silence)));
}

#[test]
fn a_strategy_is_a_closure_and_the_same_seed_gives_the_same_lies() {
    // Swap the first two messages' destinations: a protocol-specific strategy in a few lines.
    let swap = |_: &mut mir_runtime::adversary::AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
        if out.len() >= 2 {
            let (a, b) = (out[0].to.clone(), out[1].to.clone());
            out[0].to = b;
            out[1].to = a;
        }
    };
    let got = run(1, Adversary::new(swap));
    assert!((1..4).all(|i| got[&node(i)].len() == 3));
    let lies = |seed| run(seed, Adversary::new(Mutate::flip_bits(0.5).then(Duplicate { p: 0.5 })));
    assert_eq!(lies(9), lies(9));
}

/// On the production executor: node 0's in-process transport wrapped in a
/// [`ByzantineTransport`]; it lies to half of its peers and delays everything (through alarms).
#[tokio::test(flavor = "current_thread")]
async fn a_byzantine_transport_runs_on_the_production_executor() {
    use mir_runtime::adversary::ByzantineTransport;
    use mir_runtime::transport::inprocess::InProcessNetwork;
    let net = InProcessNetwork::new();
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let got: Got = Arc::default();
    let now = Arc::new(Mutex::new(0));
    let lie = Equivocate::typed(Targets::Half, |n: &TestUint64, _: &NodeId| TestUint64(n.0 + 100));
    let mut strategy = Some(lie.then(Delay { p: 1.0, max: Duration::from_millis(30) }));
    let mut nodes = Vec::new();
    for me in &ids {
        let app = App { me: me.clone(), got: got.clone(), now: now.clone() };
        let b = Node::builder(me.clone()).passive("app", app);
        let b = if *me == ids[0] {
            let t = net.transport(me.clone());
            b.active(
                "net",
                ByzantineTransport::new(
                    t,
                    Adversary::new(strategy.take().unwrap()),
                    me.clone(),
                    ids.clone(),
                    7,
                ),
            )
        } else {
            b.active("net", net.transport(me.clone()))
        };
        let node = b.build().unwrap();
        net.connect(me.clone(), node.handle().sink());
        nodes.push(node);
    }
    let handles: Vec<_> = nodes.iter().map(|n| n.handle()).collect();
    let runs: Vec<_> = nodes.into_iter().map(|n| tokio::spawn(n.run())).collect();
    for _ in 0..400 {
        if (1..4).all(|i| got.lock().unwrap().get(&node(i)).is_some_and(|v| v.len() == 3)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for h in &handles {
        h.stop();
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let got = got.lock().unwrap();
    let lied = (1..4)
        .filter(|i| got[&node(*i)].iter().all(|(_, v)| v.parse::<u64>().unwrap() >= 100))
        .count();
    assert_eq!(lied, 2, "{got:?}");
    assert!((1..4).all(|i| got[&node(i)].len() == 3), "delayed messages arrive: {got:?}");
    let own: Vec<&str> = got[&node(0)].iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(own, ["0", "1", "2"], "its messages to itself stay honest");
}
