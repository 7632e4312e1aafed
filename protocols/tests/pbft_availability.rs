//! PBFT ordering availability certificates: the leader's proposals come from the availability
//! layer (`RequestCert`), followers check them with it (`VerifyCert`) before preparing. A
//! Byzantine leader that proposes forged certificates gets ⊥ for them and is suspected.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::adversary::{Adversary, Mutate};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_runtime::{Batch, Event, ModuleResult, Node, Outbox, PassiveModule};
use protocols::availability::mempool::{MempoolParams, NewTransactions};
use protocols::availability::{self, new_epoch_instance, BatchCert, Cert, Config, Tx};
use protocols::ordering::pbft::{Pbft, PbftConfig, PbftModules, Preprepare};
use protocols::ordering::{SbDeliver, Segment, Source, Suspect, Validator};

type Outcome = Arc<Mutex<BTreeMap<NodeId, (BTreeMap<u64, Option<Vec<u8>>>, Vec<Suspect>)>>>;

struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(d) = ev.get::<SbDeliver>() {
                seen.0.insert(d.sn, d.value.clone());
            } else if let Some(s) = ev.get::<Suspect>() {
                seen.1.push(s.clone());
            }
        }
        Ok(())
    }
}

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

const SNS: u64 = 6;

fn run(seed: u64, before: impl FnOnce(&mut Simulation)) -> Outcome {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    let membership: Vec<(NodeId, Weight)> = ids().into_iter().map(|n| (n, 1)).collect();
    let config = Config {
        mempool: MempoolParams {
            batch_timeout: Duration::from_millis(20),
            ..MempoolParams::default()
        },
        ..Config::default()
    };
    for me in ids() {
        let id = ModuleId::new;
        let modules = PbftModules {
            wal: None,
            net: id("net"),
            crypto: id("crypto"),
            timer: id("timer"),
            consumer: id("app"),
            source: Source::Availability(id("availability/0")),
            validator: Validator::Availability(id("availability/0")),
        };
        let segment = Segment::new(ids()[0].clone(), membership.clone(), (0..SNS).collect());
        let pbft_config = PbftConfig {
            propose_delay: Duration::from_millis(30),
            sn_timeout: Duration::from_millis(500),
            segment_timeout: Some(Duration::from_secs(2)),
            ..PbftConfig::default()
        };
        let pbft = Pbft::new(modules, pbft_config, me.clone(), segment).unwrap();
        let b = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .active("timer", Timer::new());
        let b = availability::add_to(b, me.clone(), &config)
            .unwrap()
            .passive("pbft", DslModule::new(pbft));
        sim.add_node(b).unwrap();
    }
    for me in ids() {
        let txs: Vec<Tx> =
            (0..20).map(|i| Tx::new(format!("client-{me}").as_str(), i, vec![1; 100])).collect();
        let events = vec![
            Event::new("app", "availability", new_epoch_instance(0, &membership)),
            Event::new("app", "mempool", NewTransactions { txs }),
        ];
        sim.inject(&me, events).unwrap();
    }
    before(&mut sim);
    let done = sim
        .run_until(Duration::from_secs(60), |_| {
            let all = outcome.lock().unwrap();
            ids()[1..].iter().all(|n| all.get(n).is_some_and(|s| s.0.len() == SNS as usize))
        })
        .unwrap();
    assert!(done, "seed {seed}: {:?}", outcome.lock().unwrap());
    outcome
}

/// The values delivered by nodes 1..3 (the same at each), decoded as certificates (`None`: ⊥).
fn agreed(outcome: &Outcome) -> Vec<Option<Cert>> {
    let all = outcome.lock().unwrap();
    let first = &all[&ids()[1]].0;
    for n in &ids()[1..] {
        assert_eq!(&all[n].0, first, "{n} disagrees");
    }
    first.values().map(|v| v.as_ref().map(|b| Cert::from_bytes(b).unwrap())).collect()
}

#[test]
fn pbft_orders_availability_certificates() {
    for seed in 0..10 {
        let certs = agreed(&run(seed, |_| {}));
        // Every sn gets a certificate (an empty one when the mempool had nothing), and the
        // leader's 20 transactions are in them.
        assert!(certs.iter().all(Option::is_some), "seed {seed}: {certs:?}");
        let batches: usize = certs.iter().flatten().map(|c| c.batches.len()).sum();
        assert!(batches >= 1, "seed {seed}: {certs:?}");
    }
}

#[test]
fn a_leader_proposing_forged_certificates_gets_bottom_for_them_and_is_suspected() {
    let mut bottoms = 0;
    for seed in 0..10 {
        // Half the leader's pre-prepares carry a certificate of a batch nobody stored, with
        // made-up signatures.
        let forge = Mutate::typed(0.5, |pp: &mut Preprepare, _| {
            let signers = ids()[..2].to_vec();
            let cert = Cert {
                batches: vec![BatchCert {
                    buckets: None,
                    batch_id: vec![7; 32],
                    signers,
                    signatures: vec![vec![1; 64]; 2],
                }],
            };
            pp.value = Some(cert.to_bytes());
        });
        let outcome = run(seed, |sim| {
            sim.make_byzantine(&ids()[0], Adversary::new(forge)).unwrap();
        });
        let certs = agreed(&outcome);
        let forged = |c: &Cert| c.batches.iter().any(|b| b.batch_id == vec![7; 32]);
        assert!(
            !certs.iter().flatten().any(forged),
            "seed {seed}: a forged certificate was ordered"
        );
        let all = outcome.lock().unwrap();
        if certs.iter().any(Option::is_none) {
            bottoms += 1;
            // Some forged proposal reached the followers: they suspect the leader.
            assert!(
                ids()[1..].iter().any(|n| all[n].1.iter().any(|s| s.node == ids()[0])),
                "seed {seed}"
            );
        }
    }
    assert!(bottoms > 0, "no forged proposal ever reached the followers");
}
