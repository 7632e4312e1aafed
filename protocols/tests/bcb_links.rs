//! BCB assumes reliable links; over a lossy, duplicating network it stalls after a single loss.
//! With the perfect link (`mir_runtime::stdmodules::PerfectLink`) under it, it delivers on every
//! node over every seed, and after a partition heals.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::sim::{Fault, LinkConfig, SimConfig, Simulation};
use mir_runtime::stdmodules::{PerfectLink, TestCrypto, Timer};
use mir_runtime::{Batch, ModuleResult, Node, Outbox, PassiveModule};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest, Deliver};

type Delivered = Arc<Mutex<BTreeMap<NodeId, Vec<u8>>>>;

struct App {
    me: NodeId,
    leader: bool,
    delivered: Delivered,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() && self.leader {
                out.send(
                    &ModuleId::new("bcb"),
                    BroadcastRequest { data: b"over lossy links".to_vec() },
                );
            } else if let Ok(Some(d)) = ev.payload.decode::<Deliver>() {
                self.delivered.lock().unwrap().insert(self.me.clone(), d.data);
            }
        }
        Ok(())
    }
}

/// Four nodes; BCB sends through `link` (perfect links) or straight to `net`.
fn cluster(seed: u64, perfect: bool) -> (Simulation, Delivered) {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let delivered: Delivered = Arc::default();
    let net = if perfect { "link" } else { "net" };
    let modules = BcbModules {
        net: ModuleId::new(net),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    for me in &ids {
        let bcb = Bcb::new(
            modules.clone(),
            b"links".to_vec(),
            Voters::equal(ids.clone()),
            ids[0].clone(),
            me.clone(),
        );
        let mut b = Node::builder(me.clone())
            .passive(
                "app",
                App { me: me.clone(), leader: me == &ids[0], delivered: delivered.clone() },
            )
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .passive("bcb", DslModule::new(bcb))
            .active("timer", Timer::new());
        if perfect {
            b = b.passive("link", PerfectLink::new(me.clone(), 0));
        }
        sim.add_node(b).unwrap();
    }
    let lossy = LinkConfig { drop: 0.3, duplicate: 0.2, ..LinkConfig::default() };
    sim.apply_fault(Fault::AllLinks(lossy)).unwrap();
    (sim, delivered)
}

#[test]
fn bcb_over_perfect_links_delivers_everywhere_despite_loss_and_duplication() {
    let (mut without, mut with) = (0, 0);
    for seed in 0..200 {
        for perfect in [false, true] {
            let (mut sim, delivered) = cluster(seed, perfect);
            sim.run_for(Duration::from_secs(30)).unwrap();
            let all = delivered.lock().unwrap().len() == 4;
            if perfect {
                assert!(all, "seed {seed}: {:?}", delivered.lock().unwrap());
                with += 1;
            } else {
                without += all as u32;
            }
        }
    }
    eprintln!("all 4 delivered: {with} of 200 seeds with perfect links, {without} without");
    assert!(without < 150, "the lossy network must matter: {without} of 200 without links");
}

#[test]
fn perfect_links_deliver_after_a_partition_heals() {
    for seed in 0..20 {
        let (mut sim, delivered) = cluster(seed, true);
        let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
        sim.apply_fault(Fault::Partition(vec![vec![ids[0].clone()], ids[1..].to_vec()])).unwrap();
        sim.schedule_fault(Duration::from_secs(2), Fault::EndPartition);
        sim.run_for(Duration::from_secs(1)).unwrap();
        assert!(delivered.lock().unwrap().len() <= 1, "seed {seed}: only the leader could deliver");
        sim.run_for(Duration::from_secs(30)).unwrap();
        assert_eq!(delivered.lock().unwrap().len(), 4, "seed {seed}");
    }
}
