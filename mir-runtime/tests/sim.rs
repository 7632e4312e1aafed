//! The deterministic simulator: determinism, the simulated network and clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{id, Collector, FnModule};
use mir_runtime::sim::{SimConfig, SimError, Simulation};
use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage, TestString, TestUint64};
use mir_runtime::{Event, ModuleError, Node, NodeError, NodeId, Outbox, Time};

/// A ping-pong between nodes: on Init every node sends `rounds` pings to every other node; each
/// received ping is answered with a pong; everything received is logged with the time.
fn pinger(
    me: NodeId,
    peers: Vec<NodeId>,
    rounds: u64,
    log: Arc<Mutex<Vec<String>>>,
) -> FnModule<impl FnMut(Event, &mut Outbox) -> mir_runtime::ModuleResult + Send> {
    FnModule(move |ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            for r in 0..rounds {
                let dests = peers.iter().filter(|p| **p != me).cloned().collect();
                out.send(
                    &id("net"),
                    SendMessage { destinations: dests, message: Message::new("pp", TestUint64(r)) },
                );
            }
        } else if ev.is::<MessageReceived>() {
            let m = ev.into_payload::<MessageReceived>().map_err(ModuleError::new)?;
            let from = m.from.clone();
            match m.message.payload.into_typed::<TestUint64>() {
                Ok(TestUint64(n)) => {
                    log.lock().unwrap().push(format!("{me}<-{from} ping {n}"));
                    out.send(
                        &id("net"),
                        SendMessage {
                            destinations: vec![from],
                            message: Message::new("pp", TestString(format!("pong {n}"))),
                        },
                    );
                }
                Err(mir_runtime::PayloadError::OtherType(p)) => {
                    let TestString(s) = p.into_typed::<TestString>().map_err(ModuleError::new)?;
                    log.lock().unwrap().push(format!("{me}<-{from} {s}"));
                }
                Err(e) => return Err(ModuleError::new(e)),
            }
        }
        Ok(())
    })
}

fn cluster(seed: u64, n: usize, rounds: u64) -> (Simulation, Arc<Mutex<Vec<String>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    let ids: Vec<NodeId> = (0..n).map(NodeId::from_index).collect();
    for me in &ids {
        sim.add_node(
            Node::builder(me.clone())
                .passive("pp", pinger(me.clone(), ids.clone(), rounds, log.clone()))
                .active("timer", mir_runtime::stdmodules::Timer::new()),
        )
        .unwrap();
    }
    (sim, log)
}

#[test]
fn messages_cross_the_simulated_network_encoded() {
    let (mut sim, log) = cluster(1, 3, 2);
    let summary = sim.run_until_idle(Duration::from_secs(10)).unwrap();
    let log = log.lock().unwrap();
    // 3 nodes × 2 peers × 2 rounds pings, as many pongs.
    assert_eq!(log.iter().filter(|l| l.contains("ping")).count(), 12);
    assert_eq!(log.iter().filter(|l| l.contains("pong")).count(), 12);
    assert_eq!(summary.messages_delivered, 24);
    assert_eq!(summary.messages_dropped, 0);
    // Latency 1–10 ms each way: everything is over within 20 ms of simulated time.
    assert!(
        summary.time > Time::ZERO && summary.time <= Time::from_duration(Duration::from_millis(20)),
        "{summary:?}"
    );
}

#[test]
fn same_seed_same_run_bit_for_bit() {
    for seed in [0, 1, 42, u64::MAX] {
        let (mut a, la) = cluster(seed, 4, 5);
        let (mut b, lb) = cluster(seed, 4, 5);
        let sa = a.run_until_idle(Duration::from_secs(10)).unwrap();
        let sb = b.run_until_idle(Duration::from_secs(10)).unwrap();
        assert_eq!(sa, sb);
        assert_eq!(a.digest(), b.digest(), "seed {seed}");
        assert_eq!(*la.lock().unwrap(), *lb.lock().unwrap());
    }
}

#[test]
fn different_seeds_usually_differ() {
    let digests: std::collections::BTreeSet<String> = (0..20)
        .map(|seed| {
            let (mut s, _) = cluster(seed, 4, 5);
            s.run_until_idle(Duration::from_secs(10)).unwrap();
            s.digest().to_string()
        })
        .collect();
    assert!(digests.len() >= 19, "only {} distinct digests of 20", digests.len());
}

#[test]
fn step_by_step_and_run_until() {
    let (mut sim, log) = cluster(3, 2, 1);
    let mut steps = 0;
    while sim.step().unwrap() {
        steps += 1;
    }
    assert_eq!(sim.summary().steps, steps);
    assert_eq!(log.lock().unwrap().len(), 4);

    let (mut sim, log) = cluster(3, 2, 3);
    let reached =
        sim.run_until(Duration::from_secs(1), |_| log.lock().unwrap().len() >= 2).unwrap();
    assert!(reached);
    assert!(log.lock().unwrap().len() < 12);
}

#[test]
fn a_message_for_a_missing_module_or_node_is_dropped_and_counted() {
    let mut sim = Simulation::new(SimConfig::with_seed(5));
    let rec = Collector::default();
    sim.add_node(Node::builder("0").passive(
        "app",
        FnModule(|ev: Event, out: &mut Outbox| {
            if ev.is::<Init>() {
                out.send(
                    &id("net"),
                    SendMessage {
                        destinations: vec!["1".into(), "9".into()],
                        message: Message::new("nosuch", TestUint64(1)),
                    },
                );
                out.send(
                    &id("net"),
                    SendMessage {
                        destinations: vec!["1".into()],
                        message: Message::new("app/x", TestUint64(2)),
                    },
                );
            }
            Ok(())
        }),
    ))
    .unwrap();
    sim.add_node(Node::builder("1").passive("app", rec.clone())).unwrap();
    let s = sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(s.messages_dropped, 2, "unknown node 9 and unknown module nosuch");
    assert_eq!(s.messages_delivered, 1);
    let evs = rec.events();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[1].dest.as_str(), "app/x");
    let m = evs[1].get::<MessageReceived>().unwrap();
    assert!(m.message.payload.is_encoded(), "payloads cross the network encoded");
    assert_eq!(m.from.as_str(), "0");
}

#[test]
fn module_errors_name_node_and_time() {
    let mut sim = Simulation::new(SimConfig::with_seed(5));
    sim.add_node(Node::builder("7").passive(
        "app",
        FnModule(|ev: Event, _out: &mut Outbox| {
            if ev.is::<Init>() {
                return Err(ModuleError::new("no"));
            }
            Ok(())
        }),
    ))
    .unwrap();
    let err = sim.run_until_idle(Duration::from_secs(1)).unwrap_err();
    let SimError::Node { error, .. } = &err else { panic!("{err:?}") };
    let NodeError::ModuleFailed { node, module, .. } = &**error else { panic!("{err:?}") };
    assert_eq!((node.as_str(), module.as_str()), ("7", "app"));
    assert!(err.to_string().starts_with("at t+0ns"), "{err}");
}

#[test]
fn bad_setup_is_reported() {
    let mut sim = Simulation::new(SimConfig::default());
    sim.add_node(Node::builder("0").passive("a", Collector::default())).unwrap();
    assert_eq!(
        sim.add_node(Node::builder("0").passive("a", Collector::default())),
        Err(SimError::DuplicateNode("0".into()))
    );
    assert!(matches!(
        sim.add_node(Node::builder("1").passive("net", Collector::default())),
        Err(SimError::Build(_))
    ));
    assert_eq!(sim.inject(&"5".into(), vec![]), Err(SimError::UnknownNode("5".into())));
    assert!(matches!(
        sim.inject(&"0".into(), vec![Event::new("@node", "zz", TestUint64(1))]),
        Err(SimError::UnknownDestination { .. })
    ));
    sim.step().unwrap();
    let late = sim.add_node(Node::builder("2").passive("a", Collector::default()));
    assert_eq!(late, Err(SimError::AlreadyStarted("2".into())));
}

#[test]
fn injected_events_and_stats() {
    let mut sim = Simulation::new(SimConfig::with_seed(9));
    let rec = Collector::default();
    sim.add_node(Node::builder("0").passive("a", rec.clone())).unwrap();
    sim.inject(&"0".into(), (0..10).map(|i| Event::new("@node", "a", TestUint64(i))).collect())
        .unwrap();
    sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(rec.count(), 11);
    let st = sim.stats(&"0".into()).unwrap();
    assert_eq!(st.module("a").unwrap().events_handled, 11);
    assert_eq!(st.module("net").unwrap().events_handled, 1);
}

/// The long sweep: `MIR_SEEDS` seeds (default 1000), each run twice, digests compared.
/// `cargo test -p mir-runtime --test sim -- --ignored`
#[test]
#[ignore]
fn determinism_over_many_seeds() {
    let n: u64 = std::env::var("MIR_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    for seed in 0..n {
        let (mut a, _) = cluster(seed, 4, 3);
        let (mut b, _) = cluster(seed, 4, 3);
        a.run_until_idle(Duration::from_secs(10)).unwrap();
        b.run_until_idle(Duration::from_secs(10)).unwrap();
        assert_eq!(a.digest(), b.digest(), "seed {seed} diverged");
        if seed % 100 == 99 {
            eprintln!("{} seeds checked", seed + 1);
        }
    }
}

#[test]
fn the_determinism_check_passes_deterministic_runs() {
    let digest = mir_runtime::sim::check_determinism(
        SimConfig::with_seed(21),
        |sim| {
            for me in 0..3 {
                let ids: Vec<NodeId> = (0..3).map(NodeId::from_index).collect();
                let log = Arc::new(Mutex::new(Vec::new()));
                sim.add_node(
                    Node::builder(NodeId::from_index(me))
                        .passive("pp", pinger(NodeId::from_index(me), ids, 2, log)),
                )?;
            }
            Ok(())
        },
        |sim| sim.run_until_idle(Duration::from_secs(10)).map(|_| ()),
    )
    .unwrap();
    assert_ne!(digest.to_string(), "");
}

/// A module that iterates a `HashSet` into its output: the order changes from run to run.
fn nondeterministic() -> FnModule<impl FnMut(Event, &mut Outbox) -> mir_runtime::ModuleResult + Send>
{
    FnModule(|ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            let set: std::collections::HashSet<u64> = (0..32).collect();
            for n in set {
                out.send(&id("sink"), TestUint64(n));
            }
        }
        Ok(())
    })
}

#[test]
fn the_determinism_check_finds_where_a_nondeterministic_module_diverges() {
    let err = mir_runtime::sim::check_determinism(
        SimConfig::with_seed(1),
        |sim| {
            sim.add_node(
                Node::builder("0")
                    .passive("bad", nondeterministic())
                    .passive("sink", Collector::default()),
            )?;
            Ok(())
        },
        |sim| sim.run_until_idle(Duration::from_secs(1)).map(|_| ()),
    )
    .unwrap_err();
    let mir_runtime::sim::DeterminismError::Diverged(d) = &err else { panic!("{err}") };
    let (a, b) = (d.first.as_ref().unwrap(), d.second.as_ref().unwrap());
    assert_eq!(
        (a.node.as_str(), a.module.as_str()),
        ("0", "sink"),
        "the divergence shows up where the output lands"
    );
    assert_ne!(a.events, b.events);
    assert!(err.to_string().starts_with("runs diverge at batch #"), "{err}");
}
