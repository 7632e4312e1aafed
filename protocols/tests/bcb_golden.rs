//! A golden trace: one short BCB run (4 nodes, seed 1, test crypto), every event handed to every
//! module, in order, with its simulated time. The test fails when the sequence changes, and shows
//! the first difference: a change to the protocol, the DSL, the runtime or the simulator that
//! alters behaviour is then a reviewed decision, not an accident.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test -p protocols --test bcb_golden`, and
//! review the diff of `tests/golden/bcb_seed1.trace`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::eventlog::Interceptor;
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::{MessageReceived, SendMessage};
use mir_runtime::stdmodules::TestCrypto;
use mir_runtime::{Batch, Event, ModuleResult, Node, Outbox, PassiveModule, Time};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest};

const GOLDEN: &str = "tests/golden/bcb_seed1.trace";

/// Node 0's application asks for a broadcast at start; the others only receive.
struct App {
    broadcast: bool,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() && self.broadcast {
                out.send(&ModuleId::new("bcb"), BroadcastRequest { data: b"golden".to_vec() });
            }
        }
        Ok(())
    }
}

/// Writes one line per event handed to a module.
struct Trace(Arc<Mutex<Vec<String>>>);

impl Interceptor for Trace {
    fn intercept(
        &mut self,
        node: &NodeId,
        module: &ModuleId,
        time: Time,
        _: u64,
        events: &[Event],
    ) {
        let mut t = self.0.lock().unwrap();
        for e in events {
            let at = time.since_start().as_micros();
            let name = match (e.get::<MessageReceived>(), e.get::<SendMessage>()) {
                (Some(m), _) => format!("{}({})", e.name(), m.message.payload.name()),
                (_, Some(m)) => format!("{}({})", e.name(), m.message.payload.name()),
                _ => e.name().to_owned(),
            };
            t.push(format!("{at:>6}µs {node} {:<6} {name:<40} from {}", module.as_str(), e.src));
        }
    }
}

fn run() -> Vec<String> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let modules = BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    for me in &ids {
        let bcb = Bcb::new(
            modules.clone(),
            b"golden".to_vec(),
            Voters::equal(ids.clone()),
            ids[0].clone(),
            me.clone(),
        );
        let node = Node::builder(me.clone())
            .passive("app", App { broadcast: me == &ids[0] })
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .passive("bcb", DslModule::new(bcb))
            .interceptor(Trace(lines.clone()));
        sim.add_node(node).unwrap();
    }
    sim.run_until_idle(Duration::from_secs(10)).unwrap();
    let t = lines.lock().unwrap().clone();
    t
}

#[test]
fn bcb_seed_1_follows_its_golden_trace() {
    let actual = run();
    assert!(
        actual.iter().filter(|l| l.contains("bcb.Deliver")).count() == 4,
        "every node delivers"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    let text = actual.join("\n") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", path.display()));
    if expected != text {
        let exp: Vec<&str> = expected.lines().collect();
        let first = exp
            .iter()
            .zip(&actual)
            .position(|(a, b)| a != b)
            .unwrap_or(exp.len().min(actual.len()));
        panic!(
            "the run of seed 1 left its golden trace at line {} of {}:\n  expected: {}\n  actual:   {}\n\
             ({} lines expected, {} now). If the change is intended: UPDATE_GOLDEN=1 cargo test -p protocols \
             --test bcb_golden, and review the diff.",
            first + 1,
            GOLDEN,
            exp.get(first).unwrap_or(&"<end>"),
            actual.get(first).map_or("<end>", |s| s.as_str()),
            exp.len(),
            actual.len()
        );
    }
}
