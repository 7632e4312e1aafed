//! BCB with Twins: the leader's identity runs twice ("0" and its twin "0b", same ID, same keys),
//! each instance honest and broadcasting its own value, while generated partitions decide who
//! hears which twin. No two correct nodes deliver different values in any scenario.
//!
//! 3 rounds of 5 ms over 5 instances, symmetric duplicates removed; up to 1,000 scenarios by
//! default, all of them with `TWINS_BUDGET=100000 cargo test --release -p protocols --test bcb_twins`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::sim::twins::scenarios;
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_runtime::stdmodules::TestCrypto;
use mir_runtime::{Batch, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest, Deliver};

type Delivered = Arc<Mutex<BTreeMap<NodeId, Vec<Vec<u8>>>>>;

struct App {
    me: NodeId,
    value: Option<&'static [u8]>,
    delivered: Delivered,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                if let Some(v) = self.value {
                    out.send(&ModuleId::new("bcb"), BroadcastRequest { data: v.to_vec() });
                }
            } else if let Ok(Some(d)) = ev.payload.decode::<Deliver>() {
                self.delivered.lock().unwrap().entry(self.me.clone()).or_default().push(d.data);
            }
        }
        Ok(())
    }
}

const ROUND: Duration = Duration::from_millis(5);

fn node(me: &NodeId, value: Option<&'static [u8]>, delivered: &Delivered) -> NodeBuilder {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let modules = BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let bcb = Bcb::new(
        modules,
        b"twins".to_vec(),
        Voters::equal(ids.clone()),
        ids[0].clone(),
        me.clone(),
    );
    // A twin records its deliveries under its own name, apart from the correct nodes'.
    let app = App {
        me: if value == Some(b"B") { NodeId::new("0b") } else { me.clone() },
        value,
        delivered: delivered.clone(),
    };
    Node::builder(me.clone())
        .passive("app", app)
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .passive("bcb", DslModule::new(bcb))
}

#[test]
fn bcb_keeps_agreement_under_twins() {
    let budget = std::env::var("TWINS_BUDGET").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let instances: Vec<NodeId> =
        ["0", "0b", "1", "2", "3"].iter().map(|s| NodeId::new(s)).collect();
    let all = scenarios(&instances, &[(instances[0].clone(), instances[1].clone())], 3, budget);
    let mut split_deliveries = 0;
    for (k, scenario) in all.iter().enumerate() {
        let delivered: Delivered = Arc::default();
        let mut sim =
            Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(k as u64) });
        sim.add_node(node(&NodeId::new("0"), Some(b"A"), &delivered)).unwrap();
        for i in 1..4 {
            sim.add_node(node(&NodeId::from_index(i), None, &delivered)).unwrap();
        }
        sim.add_twin(node(&NodeId::new("0"), Some(b"B"), &delivered), NodeId::new("0b")).unwrap();
        for (r, round) in scenario.iter().enumerate() {
            let fault = match round {
                Some([a, b]) => Fault::Partition(vec![a.clone(), b.clone()]),
                None => Fault::EndPartition,
            };
            sim.schedule_fault(ROUND * r as u32, fault);
        }
        sim.schedule_fault(ROUND * scenario.len() as u32, Fault::Heal);
        sim.run_until_idle(Duration::from_secs(10)).unwrap();
        let d = delivered.lock().unwrap();
        let mut values = Vec::new();
        for i in 1..4 {
            let got = d.get(&NodeId::from_index(i)).cloned().unwrap_or_default();
            assert!(got.len() <= 1, "scenario {k} {scenario:?}: node {i} delivered {got:?}");
            values.extend(got);
        }
        values.dedup();
        assert!(values.len() <= 1, "scenario {k} {scenario:?}: correct nodes delivered {values:?}");
        // Not vacuous: the two twins' values do get delivered, in different scenarios.
        if values == [b"B".to_vec()] {
            split_deliveries += 1;
        }
    }
    eprintln!("{} scenarios; the twin's value won in {split_deliveries}", all.len());
    assert!(split_deliveries > 0, "some scenario lets the twin's value through");
}
