//! What a BCB signature is good for, and what repeating one costs.
//!
//! Two BCB factories (`bcb` and `bcb2`) run instance 1 side by side on 4 simulated nodes. Echo
//! signatures are bound to the full module ID of the instance they were made for, so a FINAL
//! whose signatures are valid for `bcb/1` is useless for `bcb2/1`, though both instances carry the
//! same instance number (and so the same signed data). And a member resending one FINAL 10,000
//! times costs its target one check per signature, not 10,000.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
use mir_dsl::mir_runtime::stdevents::{Message, MessageReceived, NewSubmodule};
use mir_dsl::mir_runtime::stdmodules::{CryptoCounters, TestCrypto};
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule, Payload,
};
use mir_dsl::Voters;
use protocols::bcb::{factory, BcbInstance, BcbModules, Deliver, Final};

const SEED: u64 = 7;

fn n(i: usize) -> NodeId {
    NodeId::from_index(i)
}

fn nodes() -> Vec<NodeId> {
    (0..4).map(n).collect()
}

/// (instance module, data) of one delivery.
type Delivery = (ModuleId, Vec<u8>);

/// Records every delivery.
#[derive(Clone, Default)]
struct App(Arc<Mutex<Vec<Delivery>>>);

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(d) = ev.get::<Deliver>() {
                self.0.lock().unwrap().push((ev.src.clone(), d.data.clone()));
            }
        }
        Ok(())
    }
}

struct Cluster {
    sim: Simulation,
    delivered: Vec<App>,
    crypto: Vec<CryptoCounters>,
}

/// Four nodes, each with factories `bcb` and `bcb2` and instance 1 (leader 0) in both.
fn cluster() -> Cluster {
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    let (mut delivered, mut crypto) = (Vec::new(), Vec::new());
    let modules = BcbModules { net: "net".into(), crypto: "crypto".into(), consumer: "app".into() };
    for me in nodes() {
        let app = App::default();
        let c = TestCrypto::new(me.clone(), SEED);
        delivered.push(app.clone());
        crypto.push(c.counters());
        let membership = Voters::equal(nodes());
        let b = Node::builder(me.clone())
            .passive("app", app)
            .passive("crypto", c)
            .passive("bcb", factory(modules.clone(), membership.clone(), me.clone()))
            .passive("bcb2", factory(modules.clone(), membership, me.clone()));
        sim.add_node(b).unwrap();
    }
    for me in nodes() {
        let create = |f: &str| {
            Event::new(
                "@node",
                f,
                NewSubmodule {
                    id: format!("{f}/1").as_str().into(),
                    params: Payload::new(BcbInstance { leader: n(0), instance: 1 }),
                    retention_index: 0,
                },
            )
        };
        sim.inject(&me, vec![create("bcb"), create("bcb2")]).unwrap();
    }
    Cluster { sim, delivered, crypto }
}

/// Instance 1's echo data for `m` (the BCB rule: sign(bcb‖ECHO‖m), bcb = 1 in little-endian).
fn echo_data(m: &[u8]) -> Vec<Vec<u8>> {
    vec![1u64.to_le_bytes().to_vec(), b"ECHO".to_vec(), m.to_vec()]
}

/// A FINAL for `m` whose signatures nodes 0–2 made in `domain`, as received by `to` from node 3.
fn final_from_3(to: &str, domain: &str, m: &[u8]) -> Event {
    let c = TestCrypto::new(n(0), SEED);
    let signers = vec![n(0), n(1), n(2)];
    let signatures = signers.iter().map(|s| c.sign_as(s, &domain.into(), &echo_data(m))).collect();
    Event::new(
        "net",
        to,
        MessageReceived {
            from: n(3),
            message: Message::new(to, Final { data: m.to_vec(), signers, signatures }),
        },
    )
}

#[test]
fn an_echo_for_one_factorys_instance_is_useless_in_anothers() {
    let mut c = cluster();
    // Valid for bcb/1, shown to bcb2/1 (same instance number, same signed data): rejected.
    c.sim.inject(&n(1), vec![final_from_3("bcb2/1", "bcb/1", b"x")]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert!(c.delivered[1].0.lock().unwrap().is_empty());
    // The same FINAL where it belongs: delivered.
    c.sim.inject(&n(1), vec![final_from_3("bcb/1", "bcb/1", b"x")]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(*c.delivered[1].0.lock().unwrap(), vec![(ModuleId::new("bcb/1"), b"x".to_vec())]);
    // And signatures from another deployment (another seed's keys would differ too; here the
    // same keys with another deployment ID) are useless everywhere.
    let other = TestCrypto::new(n(0), SEED).deployment(b"another deployment".to_vec());
    let signers = vec![n(0), n(1), n(2)];
    let fin = Final {
        data: b"y".to_vec(),
        signatures: signers
            .iter()
            .map(|s| other.sign_as(s, &"bcb2/1".into(), &echo_data(b"y")))
            .collect(),
        signers,
    };
    let ev = Event::new(
        "net",
        "bcb2/1",
        MessageReceived { from: n(3), message: Message::new("bcb2/1", fin) },
    );
    c.sim.inject(&n(1), vec![ev]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(c.delivered[1].0.lock().unwrap().len(), 1);
}

#[test]
fn one_final_resent_10000_times_is_verified_once() {
    let mut c = cluster();
    let before = c.crypto[1].snapshot();
    // A FINAL with one forged signature, 10,000 times: never delivered, checked once.
    let mut bad = final_from_3("bcb/1", "bcb/1", b"x");
    let mut r = bad.get::<MessageReceived>().unwrap().clone();
    let mut f: Final = r.message.payload.decode().unwrap().unwrap();
    f.signatures[2][0] ^= 1;
    r.message = Message::new("bcb/1", f);
    bad = Event::new("net", "bcb/1", r);
    for _ in 0..10 {
        c.sim.inject(&n(1), vec![bad.clone(); 1000]).unwrap();
        c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    }
    assert!(c.delivered[1].0.lock().unwrap().is_empty());
    let after = c.crypto[1].snapshot();
    assert_eq!(after.verified - before.verified, 3, "three signatures, once each");
    assert_eq!(after.cached - before.cached, 3 * 9_999);

    // The valid FINAL, 10,000 times in one burst: delivered once; its signatures checked once.
    let good = final_from_3("bcb/1", "bcb/1", b"x");
    c.sim.inject(&n(1), vec![good; 10_000]).unwrap();
    c.sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(c.delivered[1].0.lock().unwrap().len(), 1);
    let last = c.crypto[1].snapshot();
    // Two of its three signatures were already checked as parts of the forged FINAL.
    assert_eq!(last.verified - after.verified, 1);
}
