//! The simulated network's faults: partitions, lossy and duplicating links, crash and restart,
//! all scripted in simulated time and reproducible from the seed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{id, FnModule};
use mir_runtime::sim::{Fault, LinkConfig, SimConfig, SimError, Simulation};
use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage, TestString, TestUint64};
use mir_runtime::stdmodules::{Timer, TimerHandle};
use mir_runtime::{Event, ModuleError, Node, NodeBuilder, NodeId, Outbox};

const PERIOD_MS: u64 = 100;

/// (receiver, sender, tick the sender sent it at); ticks are every 100 ms from t = 100 ms.
type Log = Arc<Mutex<Vec<(usize, usize, u64)>>>;

/// A node that sends `TestUint64(tick)` to every other node at every tick, and logs what it gets
/// (and each Init, as tick 0 from itself).
fn node(me: usize, n: usize, log: Log) -> NodeBuilder {
    let timer = TimerHandle::new(id("timer"));
    let mut tick = 0u64;
    let app = FnModule(move |ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            log.lock().unwrap().push((me, me, 0));
            let t = Event::new("app", "app", TestString("tick".into()));
            timer.repeat(out, None, Duration::from_millis(PERIOD_MS), 0, vec![t]);
        } else if ev.is::<TestString>() {
            tick += 1;
            let destinations = (0..n).filter(|i| *i != me).map(NodeId::from_index).collect();
            out.send(
                &id("net"),
                SendMessage { destinations, message: Message::new("app", TestUint64(tick)) },
            );
        } else if ev.is::<MessageReceived>() {
            let m = ev.into_payload::<MessageReceived>().map_err(ModuleError::new)?;
            let TestUint64(t) = m.message.payload.into_typed().map_err(ModuleError::new)?;
            let from: usize = m.from.as_str().parse().unwrap();
            log.lock().unwrap().push((me, from, t));
        }
        Ok(())
    });
    Node::builder(NodeId::from_index(me)).passive("app", app).active("timer", Timer::new())
}

fn cluster(seed: u64, n: usize) -> (Simulation, Log) {
    let log = Log::default();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    for me in 0..n {
        let l = log.clone();
        sim.add_restartable_node(move || node(me, n, l.clone())).unwrap();
    }
    (sim, log)
}

fn ids(v: &[usize]) -> Vec<NodeId> {
    v.iter().map(|i| NodeId::from_index(*i)).collect()
}

#[test]
fn partition_from_2s_to_5s_cuts_exactly_the_messages_sent_across_meanwhile() {
    for seed in 0..10 {
        let (mut sim, log) = cluster(seed, 4);
        sim.schedule_fault(
            Duration::from_secs(2),
            Fault::Partition(vec![ids(&[0, 1]), ids(&[2, 3])]),
        );
        sim.schedule_fault(Duration::from_secs(5), Fault::Heal);
        let s = sim.run_for(Duration::from_millis(7000)).unwrap();
        let log = log.lock().unwrap();
        let side = |i: usize| i / 2;
        let across: Vec<_> = log
            .iter()
            .filter(|(to, from, t)| to != from && side(*to) != side(*from) && *t > 0)
            .collect();
        // Ticks 20..=49 are sent in [2 s, 5 s): none of them crosses.
        assert!(across.iter().all(|(_, _, t)| *t < 20 || *t >= 50), "seed {seed}");
        assert!(across.iter().any(|(_, _, t)| *t < 20) && across.iter().any(|(_, _, t)| *t >= 50));
        // Within a side, everything arrives.
        let within = log
            .iter()
            .filter(|(to, from, t)| to != from && side(*to) == side(*from) && (20..50).contains(t))
            .count();
        assert_eq!(within, 4 * 30, "seed {seed}");
        assert_eq!(s.messages_lost, 4 * 2 * 30, "4 nodes × 2 peers across × 30 ticks");
    }
}

#[test]
fn lossy_and_duplicating_links() {
    let (mut sim, log) = cluster(3, 3);
    let always = |drop, duplicate| LinkConfig { drop, duplicate, ..LinkConfig::default() };
    sim.apply_fault(Fault::Link {
        from: NodeId::from_index(0),
        to: NodeId::from_index(1),
        config: always(1.0, 0.0),
    })
    .unwrap();
    sim.apply_fault(Fault::Link {
        from: NodeId::from_index(0),
        to: NodeId::from_index(2),
        config: always(0.0, 1.0),
    })
    .unwrap();
    let s = sim.run_for(Duration::from_millis(1050)).unwrap();
    let log = log.lock().unwrap();
    let count = |to, from| log.iter().filter(|(t, f, k)| *t == to && *f == from && *k > 0).count();
    assert_eq!(count(1, 0), 0, "the link 0→1 drops everything");
    assert_eq!(count(2, 0), 20, "the link 0→2 duplicates everything: ticks 1..=10, twice");
    assert_eq!(count(0, 1), 10, "other links are untouched");
    assert_eq!((s.messages_lost, s.messages_duplicated), (10, 10));
}

#[test]
fn a_crashed_node_is_silent_and_a_restarted_one_starts_from_init() {
    let (mut sim, log) = cluster(5, 3);
    sim.schedule_fault(Duration::from_millis(1050), Fault::Crash(NodeId::from_index(2)));
    sim.schedule_fault(Duration::from_millis(3050), Fault::Restart(NodeId::from_index(2)));
    sim.run_until(Duration::from_millis(2000), |s| {
        s.is_crashed(&NodeId::from_index(2)) == Some(true)
    })
    .unwrap();
    sim.run_for(Duration::from_millis(5000)).unwrap();
    let log = log.lock().unwrap();
    let inits = log.iter().filter(|(to, from, t)| *to == 2 && *from == 2 && *t == 0).count();
    assert_eq!(inits, 2, "Init at start and after the restart");
    // Node 0's ticks 11..=30 are sent while 2 is down: none reaches it.
    let got: Vec<u64> =
        log.iter().filter(|(to, from, _)| *to == 2 && *from == 0).map(|(_, _, t)| *t).collect();
    assert!(got.iter().all(|t| *t <= 10 || *t > 30), "{got:?}");
    assert!(got.iter().any(|t| *t > 30), "node 2 hears again after the restart");
    // Node 2 sends nothing while down; after the restart its tick count starts again at 1.
    let sent: Vec<u64> =
        log.iter().filter(|(to, from, _)| *to == 0 && *from == 2).map(|(_, _, t)| *t).collect();
    // Ticks 1..=10 before the crash at 1.05 s; after the restart at 3.05 s its state starts over.
    let k = sent.len() - 10;
    let expected: Vec<u64> = (1..=10).chain(1..=k as u64).collect();
    assert_eq!(sent, expected, "its state was lost in the crash");
    assert!((28..=30).contains(&k), "{k} ticks after the restart");
}

#[test]
fn runs_with_faults_repeat_bit_for_bit() {
    let run = |seed| {
        let (mut sim, _) = cluster(seed, 4);
        let lossy = LinkConfig { drop: 0.2, duplicate: 0.2, ..LinkConfig::default() };
        sim.apply_fault(Fault::AllLinks(lossy)).unwrap();
        sim.schedule_fault(Duration::from_millis(500), Fault::Crash(NodeId::from_index(1)));
        sim.schedule_fault(Duration::from_millis(900), Fault::Restart(NodeId::from_index(1)));
        sim.run_for(Duration::from_secs(2)).unwrap();
        (sim.digest(), sim.summary())
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11).0, run(12).0);
}

#[test]
fn fault_errors_are_reported() {
    let mut sim = Simulation::new(SimConfig::default());
    sim.add_node(Node::builder("0").passive("app", mir_runtime::stdmodules::NullModule)).unwrap();
    assert_eq!(sim.apply_fault(Fault::Restart("0".into())), Err(SimError::NotCrashed("0".into())));
    sim.apply_fault(Fault::Crash("0".into())).unwrap();
    assert_eq!(
        sim.apply_fault(Fault::Restart("0".into())),
        Err(SimError::NotRestartable("0".into()))
    );
    assert_eq!(sim.apply_fault(Fault::Crash("7".into())), Err(SimError::UnknownNode("7".into())));
}

/// A node's messages to itself take the local loopback: at once, in order, never lost, even when
/// every link drops everything and the node is partitioned alone.
#[test]
fn messages_to_itself_are_never_lost_to_faults() {
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    let (app, got) = common::self_sender("0", 1000);
    sim.add_node(Node::builder("0").passive("app", app)).unwrap();
    sim.add_node(Node::builder("1").passive("app", mir_runtime::stdmodules::NullModule)).unwrap();
    sim.apply_fault(Fault::AllLinks(LinkConfig { drop: 1.0, ..LinkConfig::default() })).unwrap();
    sim.apply_fault(Fault::Partition(vec![ids(&[0]), ids(&[1])])).unwrap();
    let summary = sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(*got.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(summary.messages_local, 1000);
    assert_eq!(summary.messages_lost, 0);
}

/// Messages node 1 got from node 0, by tick.
fn from_0_to_1(log: &Log) -> Vec<u64> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(to, from, t)| *to == 1 && *from == 0 && *t > 0)
        .map(|x| x.2)
        .collect()
}

#[test]
fn heal_ends_link_faults_too_and_end_partition_keeps_them() {
    // All links lose everything until 1 s; Heal then restores them.
    let (mut sim, log) = cluster(1, 2);
    sim.apply_fault(Fault::AllLinks(LinkConfig { drop: 1.0, ..LinkConfig::default() })).unwrap();
    sim.schedule_fault(Duration::from_secs(1), Fault::Heal);
    sim.run_for(Duration::from_millis(2000)).unwrap();
    let got = from_0_to_1(&log);
    assert!(got.iter().all(|t| *t >= 10) && got.len() >= 9, "{got:?}");
    // EndPartition ends the partition only: the lossy link stays lossy.
    let (mut sim, log) = cluster(1, 2);
    sim.apply_fault(Fault::Partition(vec![ids(&[0]), ids(&[1])])).unwrap();
    sim.apply_fault(Fault::Link {
        from: NodeId::from_index(0),
        to: NodeId::from_index(1),
        config: LinkConfig { drop: 1.0, ..LinkConfig::default() },
    })
    .unwrap();
    sim.schedule_fault(Duration::from_secs(1), Fault::EndPartition);
    sim.run_for(Duration::from_millis(2000)).unwrap();
    assert!(from_0_to_1(&log).is_empty());
}

#[test]
fn a_link_setting_keeps_the_simulation_latency_and_can_be_removed() {
    // A link set with `..LinkConfig::default()` keeps SimConfig::latency (here exactly 40 ms).
    let log = Log::default();
    let cfg = SimConfig {
        latency: (Duration::from_millis(40), Duration::from_millis(40)),
        ..SimConfig::with_seed(2)
    };
    let mut sim = Simulation::new(cfg);
    for me in 0..2 {
        let l = log.clone();
        sim.add_restartable_node(move || node(me, 2, l.clone())).unwrap();
    }
    let (a, b) = (NodeId::from_index(0), NodeId::from_index(1));
    sim.apply_fault(Fault::Link {
        from: a.clone(),
        to: b.clone(),
        config: LinkConfig { duplicate: 0.0, ..LinkConfig::default() },
    })
    .unwrap();
    sim.run_for(Duration::from_millis(139)).unwrap();
    assert!(from_0_to_1(&log).is_empty(), "tick 1 leaves at 100 ms and arrives at 140 ms");
    sim.run_for(Duration::from_millis(2)).unwrap();
    assert_eq!(from_0_to_1(&log), vec![1]);
    // A lossy override, then ResetLink: the link behaves like the others again.
    sim.apply_fault(Fault::Link {
        from: a.clone(),
        to: b.clone(),
        config: LinkConfig { drop: 1.0, ..LinkConfig::default() },
    })
    .unwrap();
    sim.run_for(Duration::from_millis(500)).unwrap();
    let before = from_0_to_1(&log).len();
    sim.apply_fault(Fault::ResetLink { from: a, to: b }).unwrap();
    sim.run_for(Duration::from_millis(500)).unwrap();
    assert!(from_0_to_1(&log).len() >= before + 4, "{:?}", from_0_to_1(&log));
}

#[test]
fn fault_plans_are_drawn_from_the_seed_and_heal_at_the_end() {
    use mir_runtime::sim::{FaultPlan, FaultProfile};
    let nodes = ids(&[0, 1, 2, 3]);
    let profile = FaultProfile { crashes: 2, protect: ids(&[0]), ..FaultProfile::default() };
    let a = FaultPlan::draw(5, &nodes, &profile);
    assert_eq!(a, FaultPlan::draw(5, &nodes, &profile), "same seed, same plan");
    assert_ne!(a, FaultPlan::draw(6, &nodes, &profile));
    assert_eq!(a.crashed_nodes().len(), 2);
    assert!(!a.crashed_nodes().contains(&NodeId::from_index(0)), "protected");
    let last = &a.faults.iter().rfind(|(_, f)| matches!(f, Fault::Heal)).unwrap().0;
    assert_eq!(*last, a.healed_at());
    assert!(a.faults.iter().all(|(t, _)| *t <= a.healed_at()));
    // It applies cleanly to a cluster of restartable nodes, and messages flow again after it.
    let (mut sim, log) = cluster(5, 4);
    a.schedule(&mut sim);
    sim.run_for(a.healed_at()).unwrap();
    let before = log.lock().unwrap().len();
    sim.run_for(Duration::from_secs(1)).unwrap();
    let after: Vec<_> = log.lock().unwrap()[before..].to_vec();
    assert!(
        after.len() >= 4 * 3 * 9,
        "every node hears every other after healing: {}",
        after.len()
    );
}

#[test]
fn drifting_timers_fire_early_or_late() {
    let (mut sim, log) = cluster(1, 2);
    sim.apply_fault(Fault::ClockRate { node: NodeId::from_index(0), rate: 2.0 }).unwrap();
    sim.run_for(Duration::from_millis(1050)).unwrap();
    let sent_by =
        |n: usize| log.lock().unwrap().iter().filter(|(_, from, t)| *from == n && *t > 0).count();
    // Node 0's 100 ms ticks come every 50 ms: about twice as many messages.
    assert!(sent_by(0) >= 2 * sent_by(1) - 2, "{} vs {}", sent_by(0), sent_by(1));
    assert!(sim.apply_fault(Fault::ClockRate { node: NodeId::from_index(0), rate: 0.0 }).is_err());
}

#[test]
fn a_failing_seed_prints_the_command_that_reproduces_it() {
    let err = std::panic::catch_unwind(|| {
        mir_runtime::sim::sweep(0..5, "cargo test -p x --test y", |seed| {
            if seed == 3 {
                Err("boom".into())
            } else {
                Ok(())
            }
        })
    })
    .unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("seed 3 failed: boom")
            && msg.contains("reproduce: MIR_SEED=3 cargo test -p x --test y"),
        "{msg}"
    );
}

#[test]
fn twins_scenarios_count_each_split_once() {
    use mir_runtime::sim::twins::scenarios;
    let ids: Vec<NodeId> = ["0", "0b", "1", "2", "3"].iter().map(|s| NodeId::new(s)).collect();
    // Without twin symmetry: every unordered split of 5 instances once (2^4 = 16, "no split"
    // included), per round.
    assert_eq!(scenarios(&ids, &[], 1, usize::MAX).len(), 16);
    assert_eq!(scenarios(&ids, &[], 2, usize::MAX).len(), 256);
    // Exchanging the twins ("0" <-> "0b") maps splits onto each other: fewer scenarios, and no
    // two of them are the same up to that exchange and mirroring.
    let pairs = [(ids[0].clone(), ids[1].clone())];
    let one = scenarios(&ids, &pairs, 1, usize::MAX);
    assert_eq!(one.len(), 12, "{one:?}");
    let two = scenarios(&ids, &pairs, 2, usize::MAX);
    assert!(two.len() < 256 && two.len() > 128, "{}", two.len());
    assert_eq!(scenarios(&ids, &pairs, 2, 10).len(), 10, "the budget");
    for s in &one {
        if let Some([a, b]) = &s[0] {
            assert!(a.contains(&ids[0]) && !a.is_empty() && !b.is_empty());
        }
    }
}

#[test]
fn a_twin_speaks_with_the_shared_identity_and_partitions_choose_who_hears_it() {
    // Node "1" has a twin "1b"; in a partition {0, 1} | {1b, 2}, node 0's messages to "1" reach
    // only instance "1", node 2's only "1b", and both instances send as "1".
    let log = Log::default();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    for me in 0..3 {
        sim.add_node(node(me, 3, log.clone())).unwrap();
    }
    let twin_log = Log::default();
    sim.add_twin(node(1, 3, twin_log.clone()), NodeId::new("1b")).unwrap();
    assert!(
        sim.add_twin(node(1, 3, twin_log.clone()), NodeId::new("1b")).is_err(),
        "aliases are unique"
    );
    assert!(
        sim.add_twin(node(7, 8, twin_log.clone()), NodeId::new("7b")).is_err(),
        "twins of existing nodes only"
    );
    sim.apply_fault(Fault::Partition(vec![
        ids(&[0, 1]),
        vec![NodeId::new("1b"), NodeId::from_index(2)],
    ]))
    .unwrap();
    sim.run_for(Duration::from_millis(550)).unwrap();
    let heard = |l: &Log, from: usize| {
        l.lock().unwrap().iter().filter(|(_, f, t)| *f == from && *t > 0).count()
    };
    assert!(heard(&log, 0) > 0 && heard(&twin_log, 2) > 0);
    assert_eq!(heard(&twin_log, 0), 0, "the twin is cut from node 0");
    // Node 2 hears "1" (the twin) and node 0 hears "1" (the original): both as node 1.
    let from_1: Vec<usize> =
        log.lock().unwrap().iter().filter(|(_, f, t)| *f == 1 && *t > 0).map(|x| x.0).collect();
    assert!(from_1.contains(&0) && from_1.contains(&2), "{from_1:?}");
}
