//! The pingpong example's modules, in the simulator: every ping is answered, deterministically.

use std::sync::mpsc;
use std::time::Duration;

use examples::pingpong::{Peer, Pinger, Ponger};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdmodules::{Timer, TimerHandle};
use mir_runtime::{ModuleId, Node, NodeId};

fn run(seed: u64) -> (Vec<String>, String) {
    let (tx, rx) = mpsc::channel();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    let net = ModuleId::new("net");
    let pinger = Pinger::new(
        Peer::Remote {
            node: NodeId::new("1"),
            module: ModuleId::new("pong"),
            net: net.clone(),
        },
        TimerHandle::new(ModuleId::new("timer")),
        Duration::from_millis(100),
        10,
        tx,
    );
    sim.add_node(
        Node::builder("0")
            .passive("ping", pinger)
            .active("timer", Timer::new()),
    )
    .unwrap();
    sim.add_node(Node::builder("1").passive(
        "pong",
        Ponger {
            local_reply: None,
            net,
            remote_pinger: ModuleId::new("ping"),
        },
    ))
    .unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    (rx.try_iter().collect(), sim.digest().to_string())
}

#[test]
fn every_ping_is_answered_and_runs_repeat() {
    let (lines, digest) = run(3);
    assert_eq!(
        lines,
        (1..=10)
            .map(|n| format!("pong {n} from node 1"))
            .collect::<Vec<_>>()
    );
    assert_eq!(run(3).1, digest);
    assert_ne!(run(4).1, digest, "another seed, other latencies");
}
