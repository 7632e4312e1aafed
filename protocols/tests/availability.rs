//! The availability layer in the deterministic simulator: 4 nodes, simulated network, test
//! crypto, real hasher and timer.
//!
//! Certificates are created and verify on every node; bad certificates (repeated signer,
//! non-member, too little weight, bad signature, other epoch) are rejected; a node that missed a
//! batch reconstructs it from the signers, also when the signer it asks first is crashed;
//! duplicate transactions submitted to all nodes are delivered once; ordered output keeps the
//! certificates' order when payloads arrive out of order; the mempool's bounds hold under a flood.
//! `AVAILABILITY_SEEDS=2000 cargo test --release -p protocols --test availability -- --ignored`
//! for the long sweep.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_dsl::mir_runtime::stdevents::crypto::Origin;
use mir_dsl::mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
use mir_dsl::Weight;
use protocols::availability::batchfetcher::{DeliverCert, EpochStart, NewOrderedBatch};
use protocols::availability::mempool::{
    MempoolParams, NewBatch, NewEpoch, NewTransactions, RequestBatch, TransactionsRejected,
};
use protocols::availability::msc::{
    CertVerified, MscParams, NewCert, ProvideTransactions, RequestCert, RequestTransactions,
    VerifyCert,
};
use protocols::availability::{
    self, new_epoch_instance, BatchCert, Cert, ClientProgress, Config, Tx,
};

const SEED: u64 = 7;

fn nodes() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

fn membership() -> Vec<(NodeId, Weight)> {
    nodes().into_iter().map(|n| (n, 1)).collect()
}

/// What each node's application saw.
#[derive(Default, Debug)]
struct Seen {
    certs: Vec<Cert>,
    verified: Vec<CertVerified>,
    provided: Vec<Vec<Tx>>,
    ordered: Vec<NewOrderedBatch>,
    rejected: Vec<TransactionsRejected>,
    batches: Vec<NewBatch>,
    epochs: Vec<u64>,
    /// Ordered batches and epochs as they came: "batch <sn>", "epoch <e>".
    order: Vec<String>,
}

type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The application: records everything the availability layer tells it.
struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(c) = ev.get::<NewCert>() {
                seen.certs.push(c.cert.clone());
            } else if let Some(v) = ev.get::<CertVerified>() {
                seen.verified.push(v.clone());
            } else if let Some(p) = ev.get::<ProvideTransactions>() {
                seen.provided.push(p.txs.clone());
            } else if let Some(b) = ev.get::<NewOrderedBatch>() {
                seen.order.push(format!("batch {}", b.sn));
                seen.ordered.push(b.clone());
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                seen.rejected.push(r.clone());
            } else if let Some(b) = ev.get::<NewBatch>() {
                seen.batches.push(b.clone());
            } else if let Some(e) = ev.get::<EpochStart>() {
                seen.order.push(format!("epoch {}", e.epoch));
                seen.epochs.push(e.epoch);
            }
        }
        Ok(())
    }
}

struct Cluster {
    sim: Simulation,
    outcome: Outcome,
    next_origin: u64,
}

fn config() -> Config {
    Config {
        mempool: MempoolParams {
            batch_timeout: Duration::from_millis(50),
            ..MempoolParams::default()
        },
        msc: MscParams { fetch_timeout: Duration::from_millis(200), ..MscParams::default() },
        destination: None,
        checkpoint: None,
    }
}

fn cluster(seed: u64, cfg: Config) -> Cluster {
    let outcome = Outcome::default();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    for me in nodes() {
        let b = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), SEED))
            .active("timer", Timer::new());
        let b = availability::add_to(b, me.clone(), &cfg).unwrap();
        sim.add_node(b).unwrap();
    }
    for me in nodes() {
        sim.inject(
            &me,
            vec![Event::new("app", "availability", new_epoch_instance(0, &membership()))],
        )
        .unwrap();
    }
    Cluster { sim, outcome, next_origin: 0 }
}

impl Cluster {
    fn origin(&mut self) -> Origin {
        self.next_origin += 1;
        Origin { module: ModuleId::new("app"), id: self.next_origin }
    }

    fn inject(
        &mut self,
        node: usize,
        dest: &str,
        payload: impl Into<mir_dsl::mir_runtime::Payload>,
    ) {
        self.sim.inject(&nodes()[node], vec![Event::new("app", dest, payload)]).unwrap();
    }

    fn submit(&mut self, node: usize, txs: Vec<Tx>) {
        self.inject(node, "mempool", NewTransactions { txs });
    }

    fn request_cert(&mut self, node: usize) {
        let origin = self.origin();
        self.inject(node, "availability/0", RequestCert { origin });
    }

    /// Asks node `node` to verify `cert` in `epoch`; returns the request's origin number.
    fn verify(&mut self, node: usize, epoch: u64, cert: Cert) -> u64 {
        let origin = self.origin();
        let id = origin.id;
        self.inject(node, &format!("availability/{epoch}"), VerifyCert { cert, origin });
        id
    }

    fn request_txs(&mut self, node: usize, cert: Cert) {
        let origin = self.origin();
        self.inject(node, "availability/0", RequestTransactions { cert, origin });
    }

    fn run(&mut self) {
        self.sim.run_until_idle(Duration::from_secs(30)).unwrap();
    }

    fn seen<T>(&self, node: usize, f: impl FnOnce(&Seen) -> T) -> T {
        let all = self.outcome.lock().unwrap();
        let empty = Seen::default();
        f(all.get(&nodes()[node]).unwrap_or(&empty))
    }
}

fn txs(client: &str, range: std::ops::Range<u64>) -> Vec<Tx> {
    range.map(|i| Tx::new(client, i, format!("{client}-{i}").into_bytes())).collect()
}

/// Node `node` makes a certificate of `batch`; returns it.
fn make_cert(c: &mut Cluster, node: usize, batch: Vec<Tx>) -> Cert {
    let before = c.seen(node, |s| s.certs.len());
    c.submit(node, batch);
    c.request_cert(node);
    c.run();
    c.seen(node, |s| {
        assert_eq!(s.certs.len(), before + 1, "node {node} must answer with a certificate");
        s.certs.last().unwrap().clone()
    })
}

#[test]
fn certificates_are_created_and_verify_on_every_node() {
    for seed in 0..40 {
        let mut c = cluster(seed, config());
        let batch = txs("alice", 0..10);
        let cert = make_cert(&mut c, 0, batch.clone());
        assert_eq!(cert.batches.len(), 1, "seed {seed}");
        let b = &cert.batches[0];
        assert_eq!(b.signers.len(), 2, "seed {seed}: f + 1 = 2 signatures");
        assert_eq!(b.signers.len(), b.signatures.len());
        for n in 0..4 {
            c.verify(n, 0, cert.clone());
        }
        c.run();
        for n in 0..4 {
            let v = c.seen(n, |s| s.verified.clone());
            assert_eq!(v.len(), 1, "seed {seed} node {n}");
            assert!(v[0].valid, "seed {seed} node {n}: {:?}", v[0].error);
            // Every node can read the batch back from the certificate.
            c.request_txs(n, cert.clone());
        }
        c.run();
        for n in 0..4 {
            assert_eq!(
                c.seen(n, |s| s.provided.clone()),
                vec![batch.clone()],
                "seed {seed} node {n}"
            );
        }
    }
}

#[test]
fn an_empty_mempool_gives_the_empty_certificate_which_is_valid() {
    let mut c = cluster(1, config());
    c.request_cert(2);
    c.run();
    let cert = c.seen(2, |s| s.certs.clone());
    assert_eq!(cert, vec![Cert::default()]);
    c.verify(1, 0, Cert::default());
    c.request_txs(1, Cert::default());
    c.run();
    assert!(c.seen(1, |s| s.verified[0].valid));
    assert_eq!(c.seen(1, |s| s.provided.clone()), vec![Vec::<Tx>::new()]);
}

#[test]
fn bad_certificates_are_rejected() {
    let mut c = cluster(3, config());
    let cert = make_cert(&mut c, 0, txs("bob", 0..3));
    let good = cert.batches[0].clone();
    let with = |f: &dyn Fn(&mut BatchCert)| {
        let mut b = good.clone();
        f(&mut b);
        Cert { batches: vec![b] }
    };
    let cases: Vec<(&str, Cert, &str)> = vec![
        (
            "repeated signer",
            with(&|b| {
                b.signers[1] = b.signers[0].clone();
                b.signatures[1] = b.signatures[0].clone();
            }),
            "more than once",
        ),
        ("non-member signer", with(&|b| b.signers[1] = NodeId::new("9")), "not a member"),
        (
            "too little weight",
            with(&|b| {
                b.signers.truncate(1);
                b.signatures.truncate(1);
            }),
            "less than a weak quorum",
        ),
        ("bad signature", with(&|b| b.signatures[1][0] ^= 1), "signature 1"),
        ("signature of another signer", with(&|b| b.signatures.swap(0, 1)), "signature 0"),
        ("other batch", with(&|b| b.batch_id[0] ^= 1), "signature 0"),
        (
            "signers and signatures differ in number",
            with(&|b| {
                b.signatures.pop();
            }),
            "2 signers but 1 signatures",
        ),
        (
            "two batches (the same one twice)",
            Cert { batches: vec![good.clone(), good.clone()] },
            "at most one",
        ),
    ];
    let asked: Vec<u64> = cases.iter().map(|(_, cert, _)| c.verify(1, 0, cert.clone())).collect();
    c.run();
    let verified = c.seen(1, |s| s.verified.clone());
    assert_eq!(verified.len(), cases.len());
    for ((name, _, why), id) in cases.iter().zip(asked) {
        // Answers come in the order the checks finish: match them by request.
        let v = verified.iter().find(|v| v.origin.id == id).unwrap();
        assert!(!v.valid, "{name} must be rejected");
        let e = v.error.as_deref().unwrap_or("");
        assert!(e.contains(why), "{name}: error {e:?} should say {why:?}");
    }

    // A certificate of epoch 0 does not verify in epoch 1 (the instance is part of what is signed).
    c.inject(1, "availability", new_epoch_instance(1, &membership()));
    c.verify(1, 1, cert.clone());
    c.verify(1, 0, cert);
    c.run();
    let v = c.seen(1, |s| s.verified.clone());
    assert!(!v[cases.len()].valid, "epoch 0's certificate must not verify in epoch 1");
    assert!(v[cases.len() + 1].valid, "and still verifies in epoch 0");
}

/// Node 3 is cut off while node 0 makes a certificate, so it never stores the batch.
fn cert_node3_missed(seed: u64, batch: Vec<Tx>) -> (Cluster, Cert) {
    let mut c = cluster(seed, config());
    let n = nodes();
    c.sim
        .apply_fault(Fault::Partition(vec![
            vec![n[0].clone(), n[1].clone(), n[2].clone()],
            vec![n[3].clone()],
        ]))
        .unwrap();
    let cert = make_cert(&mut c, 0, batch);
    c.sim.apply_fault(Fault::Heal).unwrap();
    assert!(!cert.batches[0].signers.contains(&n[3]));
    (c, cert)
}

#[test]
fn a_node_that_missed_the_batch_reconstructs_it_from_the_signers() {
    for seed in 0..40 {
        let batch = txs("carol", 0..25);
        let (mut c, cert) = cert_node3_missed(seed, batch.clone());
        c.verify(3, 0, cert.clone());
        c.request_txs(3, cert);
        c.run();
        assert!(c.seen(3, |s| s.verified[0].valid), "seed {seed}");
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

#[test]
fn reconstruction_moves_to_the_next_signer_when_one_is_crashed() {
    for seed in 0..40 {
        let batch = txs("dave", 0..5);
        let (mut c, cert) = cert_node3_missed(seed, batch.clone());
        // Node 3 asks the signer at its own position (3) modulo the number of signers first:
        // crash that one, so only the retry after the timeout can succeed.
        let signers = &cert.batches[0].signers;
        let first = signers[3 % signers.len()].clone();
        c.sim.apply_fault(Fault::Crash(first.clone())).unwrap();
        let start = c.sim.now();
        c.request_txs(3, cert.clone());
        c.run();
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
        // It needed the retry: at least one fetch timeout passed.
        let took = c.sim.now().saturating_since(start);
        assert!(
            took >= config().msc.fetch_timeout,
            "seed {seed}: reconstructed after {took:?}, before any timeout (crashed {first})"
        );
    }
}

#[test]
fn reconstruction_retries_over_a_lossy_network() {
    use mir_dsl::mir_runtime::sim::LinkConfig;
    for seed in 0..20 {
        let batch = txs("erin", 0..5);
        let (mut c, cert) = cert_node3_missed(seed, batch.clone());
        // Half of everything to and from node 3 is lost.
        for other in 0..3 {
            for (from, to) in [(3, other), (other, 3)] {
                c.sim
                    .apply_fault(Fault::Link {
                        from: nodes()[from].clone(),
                        to: nodes()[to].clone(),
                        config: LinkConfig { drop: 0.5, ..LinkConfig::default() },
                    })
                    .unwrap();
            }
        }
        c.request_txs(3, cert);
        c.run();
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

#[test]
fn ordered_batches_keep_the_certificates_order_when_payloads_arrive_out_of_order() {
    for seed in 0..20 {
        let first = txs("frank", 0..4);
        let (mut c, cert0) = cert_node3_missed(seed, first.clone());
        // The second batch is stored everywhere, node 3 included.
        let second = txs("grace", 0..3);
        let cert1 = make_cert(&mut c, 1, second.clone());
        // Node 3 finds cert1's batch locally at once but must fetch cert0's over the network.
        c.inject(3, "batchfetcher", DeliverCert { sn: 0, cert: cert0 });
        c.inject(3, "batchfetcher", DeliverCert { sn: 1, cert: Cert::default() });
        c.inject(3, "batchfetcher", DeliverCert { sn: 2, cert: cert1 });
        c.run();
        let ordered = c.seen(3, |s| s.ordered.clone());
        let sns: Vec<u64> = ordered.iter().map(|b| b.sn).collect();
        assert_eq!(sns, [0, 1, 2], "seed {seed}");
        assert_eq!(ordered[0].txs, first);
        assert!(ordered[1].txs.is_empty());
        assert_eq!(ordered[2].txs, second);
    }
}

/// A malformed certificate that reaches reconstruction (a faulty orderer) is answered as invalid,
/// and the batch fetcher outputs an empty batch in its place instead of waiting for ever.
#[test]
fn an_invalid_certificate_is_answered_and_does_not_stall_the_fetcher() {
    let mut c = cluster(4, config());
    let good = make_cert(&mut c, 0, txs("heidi", 0..2));
    let mut bad = good.clone();
    bad.batches[0].signers[1] = bad.batches[0].signers[0].clone();
    c.request_txs(2, bad.clone());
    c.run();
    assert_eq!(c.seen(2, |s| s.provided.clone()), vec![Vec::<Tx>::new()]);
    c.inject(2, "batchfetcher", DeliverCert { sn: 0, cert: bad });
    c.inject(2, "batchfetcher", DeliverCert { sn: 1, cert: good });
    c.run();
    let ordered = c.seen(2, |s| s.ordered.clone());
    let sns: Vec<u64> = ordered.iter().map(|b| b.sn).collect();
    assert_eq!(sns, [0, 1]);
    assert!(ordered[0].txs.is_empty(), "the invalid certificate: an empty batch");
    assert_eq!(ordered[1].txs, txs("heidi", 0..2));
}

#[test]
fn duplicate_transactions_submitted_to_all_nodes_are_delivered_once() {
    for seed in 0..20 {
        let mut c = cluster(seed, config());
        let batch = txs("heidi", 0..20);
        for n in 0..4 {
            c.submit(n, batch.clone());
            c.request_cert(n);
        }
        c.run();
        let certs: Vec<Cert> = (0..4).map(|n| c.seen(n, |s| s.certs[0].clone())).collect();
        assert!(certs.iter().all(|c| !c.is_empty()), "seed {seed}");
        // Every node orders the same four certificates, in the same order.
        for n in 0..4 {
            for (sn, cert) in certs.iter().enumerate() {
                c.inject(n, "batchfetcher", DeliverCert { sn: sn as u64, cert: cert.clone() });
            }
        }
        c.run();
        let reference = c.seen(0, |s| s.ordered.clone());
        let delivered: Vec<Tx> = reference.iter().flat_map(|b| b.txs.clone()).collect();
        assert_eq!(delivered, batch, "seed {seed}: each transaction exactly once, in order");
        assert_eq!(reference.len(), 4);
        for n in 1..4 {
            assert_eq!(c.seen(n, |s| s.ordered.clone()), reference, "seed {seed} node {n}");
        }
    }
}

#[test]
fn the_mempool_bounds_hold_under_a_flood() {
    let mut cfg = config();
    cfg.mempool = MempoolParams {
        max_txs_in_batch: 50,
        max_payload_in_batch: 4096,
        batch_timeout: Duration::from_millis(10),
        capacity_txs: 120,
        capacity_bytes: 1 << 20,
        client_window: 100,
    };
    let mut c = cluster(5, cfg);
    // Client "flood" sends 1000 transactions at once: only its window (0..100) gets in.
    c.submit(0, txs("flood", 0..1000));
    // Client "late" finds the mempool nearly full: 20 of its 50 fit.
    c.submit(0, txs("late", 0..50));
    // Too large, and a repeat.
    c.submit(0, vec![Tx::new("big", 0, vec![0u8; 5000]), Tx::new("flood", 3, "again")]);
    c.run();
    let rejected = c.seen(0, |s| s.rejected.clone());
    assert_eq!(rejected.len(), 3, "each submission with rejections gets one answer");
    assert_eq!(rejected[0].rejected.len(), 900);
    assert!(rejected[0]
        .rejected
        .iter()
        .all(|r| r.tx_no >= 100 && r.reason.contains("outside the client's window [0, 100)")));
    assert_eq!(rejected[1].rejected.len(), 30);
    assert!(rejected[1].rejected.iter().all(|r| r.reason.contains("mempool full")));
    assert!(rejected[2].rejected[0].reason.contains("more than a batch may hold"));
    assert_eq!(rejected[2].rejected[1].reason, "already in the mempool");

    // Draining it by batch requests gives exactly the 120 admitted, each once, in batches of ≤ 50.
    let drain = |c: &mut Cluster, epoch: u64| -> Vec<NewBatch> {
        let before = c.seen(0, |s| s.batches.len());
        for _ in 0..5 {
            let origin = c.origin();
            c.inject(0, "mempool", RequestBatch { epoch, origin });
        }
        c.run();
        c.seen(0, |s| s.batches[before..].to_vec())
    };
    let batches = drain(&mut c, 0);
    let sizes: Vec<usize> = batches.iter().map(|b| b.txs.len()).collect();
    assert_eq!(sizes, [50, 50, 20, 0, 0]);
    let all: Vec<Tx> = batches.iter().flat_map(|b| b.txs.clone()).collect();
    let mut expect = txs("flood", 0..100);
    expect.extend(txs("late", 0..20));
    assert_eq!(all, expect);

    // A new epoch in which flood's 0..100 were delivered: they are pruned, flood's window moves
    // to 100..200, late's 20 are proposed again.
    let mut progress = ClientProgress::default();
    for i in 0..100 {
        progress.add(&"flood".into(), i);
    }
    progress.garbage_collect();
    c.inject(0, "mempool", NewEpoch { epoch: 1, client_progress: progress });
    c.submit(0, txs("flood", 50..300));
    c.run();
    let r = c.seen(0, |s| s.rejected[3].rejected.clone());
    assert_eq!(r.iter().filter(|r| r.reason.contains("already delivered")).count(), 50);
    assert_eq!(
        r.iter().filter(|r| r.reason.contains("outside the client's window [100, 200)")).count(),
        100
    );
    assert_eq!(r.len(), 150);
    let batches = drain(&mut c, 1);
    let all: Vec<Tx> = batches.iter().flat_map(|b| b.txs.clone()).collect();
    let mut expect = txs("late", 0..20);
    expect.extend(txs("flood", 100..200));
    assert_eq!(all, expect, "late's unordered 20 first (re-proposed), then flood's new window");
}

#[test]
fn batches_form_by_count_by_bytes_and_by_timeout() {
    let mut cfg = config();
    cfg.mempool.max_txs_in_batch = 4;
    cfg.mempool.max_payload_in_batch = 50;
    cfg.mempool.batch_timeout = Duration::from_millis(100);
    let mut c = cluster(2, cfg);
    // Sizes count the client ID and the 8-byte number: ten(_) is 1 + 8 + 10 = 19 bytes, one(_)
    // is 10. Two tens fill the bytes of a batch (a third would make 57 > 50).
    let ten = |i: u64| Tx::new("x", i, vec![b'a'; 10]);
    let one = |i: u64| Tx::new("y", i, vec![b'b'; 1]);
    c.submit(0, vec![ten(0), ten(1), ten(2)]);
    c.submit(0, (0..6).map(one).collect());
    c.run();
    let ask = |c: &mut Cluster| {
        let origin = c.origin();
        c.inject(0, "mempool", RequestBatch { epoch: 0, origin });
    };
    // By bytes: answered at once, well before the timeout.
    ask(&mut c);
    c.sim.run_for(Duration::from_millis(1)).unwrap();
    assert_eq!(c.seen(0, |s| s.batches.len()), 1, "a full batch is answered at once");
    // 19 + 19 = 38 bytes, and a third ten does not fit: full.
    assert_eq!(c.seen(0, |s| s.batches[0].txs.clone()), vec![ten(0), ten(1)]);
    // By count: 19 + 10 + 10 + 10 = 49 bytes, 4 transactions: also at once.
    ask(&mut c);
    c.sim.run_for(Duration::from_millis(1)).unwrap();
    assert_eq!(c.seen(0, |s| s.batches.len()), 2, "a full batch is answered at once");
    assert_eq!(c.seen(0, |s| s.batches[1].txs.clone()), vec![ten(2), one(0), one(1), one(2)]);
    // By timeout: 3 left, not a full batch: answered after batch_timeout.
    let t1 = c.sim.now();
    ask(&mut c);
    c.run();
    assert_eq!(c.seen(0, |s| s.batches[2].txs.clone()), vec![one(3), one(4), one(5)]);
    assert!(c.sim.now().saturating_since(t1) >= Duration::from_millis(100));
}

#[test]
fn epochs_reach_the_application_and_the_mempool_in_order() {
    let mut c = cluster(4, config());
    let cert0 = make_cert(&mut c, 0, txs("ivan", 0..3));
    let cert1 = make_cert(&mut c, 0, txs("ivan", 3..5));
    // The instance of epoch 1 exists before the epoch starts (see the batch fetcher's docs).
    c.inject(0, "availability", new_epoch_instance(1, &membership()));
    c.inject(0, "batchfetcher", DeliverCert { sn: 0, cert: cert0 });
    c.inject(0, "batchfetcher", EpochStart { epoch: 1 });
    // Certificates after the EpochStart are read from epoch 1's instance: cert1 (of epoch 0)
    // does not verify there, but reconstruction only needs its batch, which node 0 stores.
    c.inject(0, "batchfetcher", DeliverCert { sn: 1, cert: cert1 });
    c.run();
    assert_eq!(c.seen(0, |s| s.order.clone()), ["batch 0", "epoch 1", "batch 1"]);
    // The mempool got the progress as of the epoch's start: ivan's 0..3 are refused as
    // delivered; 3..5 were delivered after it, so the mempool still holds them (it learns at
    // the next epoch); 5 is new.
    c.submit(0, txs("ivan", 0..6));
    c.run();
    let r = c.seen(0, |s| s.rejected.clone());
    assert_eq!(r.len(), 1);
    let reasons: Vec<&str> = r[0].rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "already delivered",
            "already delivered",
            "already delivered",
            "already in the mempool",
            "already in the mempool"
        ]
    );
}

#[test]
fn runs_are_deterministic() {
    let run = |seed| {
        let (mut c, cert) = cert_node3_missed(seed, txs("judy", 0..8));
        c.request_txs(3, cert);
        c.run();
        c.sim.digest()
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
#[ignore = "long sweep: AVAILABILITY_SEEDS=2000 cargo test --release -p protocols --test availability -- --ignored"]
fn long_sweep() {
    let seeds: u64 =
        std::env::var("AVAILABILITY_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    for seed in 0..seeds {
        let batch = txs("sweep", 0..(1 + seed % 30));
        let (mut c, cert) = cert_node3_missed(seed, batch.clone());
        let signers = &cert.batches[0].signers;
        c.sim.apply_fault(Fault::Crash(signers[(seed as usize) % signers.len()].clone())).unwrap();
        c.verify(3, 0, cert.clone());
        c.request_txs(3, cert);
        c.run();
        assert!(c.seen(3, |s| s.verified[0].valid), "seed {seed}");
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

/// A message from `from` as the transport would hand it to `module`.
fn received(from: usize, module: &str, msg: impl Into<mir_dsl::mir_runtime::Payload>) -> Event {
    use mir_dsl::mir_runtime::stdevents::{Message, MessageReceived};
    Event::new(
        "net",
        module,
        MessageReceived { from: nodes()[from].clone(), message: Message::new(module, msg) },
    )
}

#[test]
fn a_forged_batch_is_dropped_and_the_real_one_fetched() {
    use protocols::availability::msc::ProvideBatchMessage;
    for seed in 0..20 {
        let batch = txs("mallory", 0..6);
        let (mut c, cert) = cert_node3_missed(seed, batch.clone());
        c.request_txs(3, cert.clone());
        // The lookup misses and a signer is asked; no answer can be back yet (latency ≥ 1 ms).
        c.sim.run_for(Duration::from_micros(500)).unwrap();
        let mut forged = batch.clone();
        forged[2].data = b"forged".to_vec();
        c.sim
            .inject(
                &nodes()[3],
                vec![received(
                    1,
                    "availability/0",
                    ProvideBatchMessage { batch_id: cert.batches[0].batch_id.clone(), txs: forged },
                )],
            )
            .unwrap();
        c.run();
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

#[test]
fn a_signer_stores_and_signs_at_most_max_requests_batches_per_source() {
    use protocols::availability::msc::RequestSigMessage;
    let mut cfg = config();
    cfg.msc.max_requests = 3;
    let mut c = cluster(8, cfg);
    c.run();
    let before = c.sim.summary().messages_delivered;
    // "Node 1" floods node 0 with five requests to store and sign.
    let flood = (0..5)
        .map(|i| {
            received(
                1,
                "availability/0",
                RequestSigMessage { req_id: i, txs: txs("flood", i * 10..i * 10 + 10) },
            )
        })
        .collect();
    c.sim.inject(&nodes()[0], flood).unwrap();
    c.run();
    // Only three signatures go back to node 1.
    assert_eq!(c.sim.summary().messages_delivered - before, 3);
}

#[test]
fn a_signer_stores_at_most_max_bytes_per_source() {
    use protocols::availability::msc::RequestSigMessage;
    let mut cfg = config();
    cfg.mempool.max_payload_in_batch = 1024;
    cfg.msc.max_payload_in_batch = 1024;
    cfg.msc.max_bytes_per_source = 2048;
    let mut c = cluster(8, cfg);
    c.run();
    let before = c.sim.summary().messages_delivered;
    // Five one-transaction batches of 5 + 8 + 500 = 513 bytes each: three fit in 2048.
    let flood = (0..5)
        .map(|i| {
            let tx = Tx::new("flood", i, vec![0u8; 500]);
            received(1, "availability/0", RequestSigMessage { req_id: i, txs: vec![tx] })
        })
        .collect();
    c.sim.inject(&nodes()[0], flood).unwrap();
    c.run();
    assert_eq!(c.sim.summary().messages_delivered - before, 3);
}

/// `req` as `ctx.request` sends it: with an origin (module `x`), so the batch DB answers.
fn asked(
    mut req: protocols::availability::batchdb::StoreBatch,
) -> protocols::availability::batchdb::StoreBatch {
    use mir_runtime::stdevents::crypto::{Origin, Request};
    req.set_origin(Origin { module: ModuleId::new("x"), id: 0 });
    req
}

#[test]
fn the_batch_db_holds_at_most_its_capacity() {
    use mir_dsl::mir_runtime::stdevents::GarbageCollect;
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchdb::{BatchDb, BatchStored, StoreBatch};
    let mut db = mir_dsl::DslModule::new(BatchDb::new().with_capacity_bytes(100));
    let me = ModuleId::new("batchdb");
    type Db = mir_dsl::DslModule<BatchDb>;
    let store = |db: &mut Db, i: u8, n: u64, r: u64| {
        // n transactions of 1 + 8 + 30 = 39 bytes.
        let txs = (0..n).map(|k| Tx::new("c", k, vec![0u8; 30])).collect();
        let out = apply(
            db,
            me.clone(),
            vec![Event::new("x", "batchdb", asked(StoreBatch::new(vec![i; 32], vec![], txs, r)))],
        )
        .unwrap();
        out[0].get::<BatchStored>().unwrap().error.clone()
    };
    assert_eq!(store(&mut db, 1, 2, 1), None, "78 bytes");
    let full = store(&mut db, 2, 1, 1).expect("117 > 100");
    assert!(full.contains("the batch DB is full (78 of 100 bytes held"), "{full}");
    assert_eq!(store(&mut db, 1, 2, 2), None, "stored again: no new bytes");
    apply(
        &mut db,
        me.clone(),
        vec![Event::new("x", "batchdb", GarbageCollect { retention_index: 3 })],
    )
    .unwrap();
    assert_eq!(db.protocol().bytes(), 0);
    assert_eq!(store(&mut db, 2, 1, 3), None, "room again after garbage collection");
}

#[test]
fn bad_configuration_gets_a_clear_error() {
    let b = || Node::builder(nodes()[0].clone());
    let mut cfg = config();
    cfg.mempool.capacity_txs = 10;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("mempool: capacity_txs (10) must hold at least one full batch"), "{e}");
    let mut cfg = config();
    cfg.msc.max_txs_in_batch = 10;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("signers would refuse the mempool's full batches"), "{e}");
    let mut cfg = config();
    cfg.msc.fetch_timeout = Duration::ZERO;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("fetch_timeout"), "{e}");
}

#[test]
fn the_batch_db_keeps_batches_until_their_retention_index_is_collected() {
    use mir_dsl::mir_runtime::stdevents::GarbageCollect;
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchdb::{
        BatchDb, BatchStored, LookupBatch, LookupBatchResponse, StoreBatch,
    };
    let mut db = mir_dsl::DslModule::new(BatchDb::new());
    let me = ModuleId::new("batchdb");
    let mut call = |p: mir_dsl::mir_runtime::Payload| {
        apply(&mut db, me.clone(), vec![Event::new("x", "batchdb", p)]).unwrap()
    };
    let id = |i: u8| vec![i; 32];
    let store =
        |i: u8, r: u64| asked(StoreBatch::new(id(i), vec![], txs("db", 0..i as u64), r)).into();
    let found = |out: Vec<Event>| out[0].get::<LookupBatchResponse>().unwrap().txs.is_some();
    call(store(1, 1));
    call(store(2, 2));
    call(store(3, 3));
    call(store(1, 5)); // stored again for longer: kept until 5
    call(GarbageCollect { retention_index: 3 }.into());
    assert!(found(call(LookupBatch::new(id(1)).into())), "re-stored with index 5");
    assert!(!found(call(LookupBatch::new(id(2)).into())), "collected");
    assert!(found(call(LookupBatch::new(id(3)).into())), "index 3 is kept by a collection at 3");
    // Below the collected index: not kept, and the answer says so.
    let out = call(store(4, 2));
    let e = out[0].get::<BatchStored>().unwrap().error.clone().unwrap();
    assert!(e.contains("below the garbage-collection index"), "{e}");
    assert!(!found(call(LookupBatch::new(id(4)).into())));
    call(GarbageCollect { retention_index: 6 }.into());
    assert!(!found(call(LookupBatch::new(id(1)).into())));
}

#[test]
fn the_mempool_serves_transactions_by_id() {
    use protocols::availability::mempool::{LookupTransactions, TransactionsFound};
    let mut c = cluster(9, config());
    c.submit(0, txs("kim", 0..3));
    let origin = c.origin();
    c.inject(0, "mempool", RequestBatch { epoch: 0, origin });
    c.run();
    let ids = c.seen(0, |s| s.batches[0].tx_ids.clone());
    assert_eq!(ids.len(), 3);
    // The same transactions in a mempool driven by hand (hasher answers fed back), asked by ID.
    let mut mp = mir_dsl::DslModule::new(protocols::availability::mempool::Mempool::new(
        MempoolParams::default(),
        protocols::availability::mempool::MempoolModules {
            hasher: ModuleId::new("hasher"),
            timer: ModuleId::new("timer"),
        },
    ));
    let me = ModuleId::new("mempool");
    let out = mir_dsl::mir_runtime::testing::apply(
        &mut mp,
        me.clone(),
        vec![Event::new("app", "mempool", NewTransactions { txs: txs("kim", 0..3) })],
    )
    .unwrap();
    let req = out[0].get::<mir_dsl::mir_runtime::stdevents::crypto::HashRequest>().unwrap().clone();
    let mut hasher = mir_dsl::mir_runtime::stdmodules::Hasher;
    let answer = mir_dsl::mir_runtime::testing::apply(
        &mut hasher,
        ModuleId::new("hasher"),
        vec![Event::new("mempool", "hasher", req)],
    )
    .unwrap();
    mir_dsl::mir_runtime::testing::apply(&mut mp, me.clone(), answer).unwrap();
    let mut ask = ids.clone();
    ask.insert(1, vec![0; 32]);
    let out = mir_dsl::mir_runtime::testing::apply(
        &mut mp,
        me,
        vec![Event::new(
            "app",
            "mempool",
            LookupTransactions {
                tx_ids: ask,
                origin: Origin { module: ModuleId::new("app"), id: 1 },
            },
        )],
    )
    .unwrap();
    let f = out[0].get::<TransactionsFound>().unwrap();
    assert_eq!(f.found_ids, ids, "the same IDs as the cluster's mempool computed");
    assert_eq!(f.found_txs, txs("kim", 0..3));
    assert_eq!(f.missing_ids, vec![vec![0u8; 32]]);
}

#[test]
fn the_batch_fetcher_forwards_snapshots_and_restores_in_order() {
    use mir_dsl::mir_runtime::stdevents::crypto::Response;
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchfetcher::{
        BatchFetcher, BatchFetcherModules, ClientProgressSnapshot, RestoreState, SnapshotRequest,
    };
    let mut f = mir_dsl::DslModule::new(BatchFetcher::new(BatchFetcherModules {
        availability: ModuleId::new("availability"),
        mempool: ModuleId::new("mempool"),
        destination: ModuleId::new("app"),
        checkpoint: Some(ModuleId::new("checkpoint")),
    }));
    let me = ModuleId::new("batchfetcher");
    let ev = |p: mir_dsl::mir_runtime::Payload| Event::new("iss", "batchfetcher", p);
    let cert = Cert {
        batches: vec![BatchCert {
            batch_id: vec![1; 32],
            signers: nodes()[..2].to_vec(),
            signatures: vec![vec![], vec![]],
        }],
    };
    let out = apply(
        &mut f,
        me.clone(),
        vec![
            ev(DeliverCert { sn: 0, cert: cert.clone() }.into()),
            ev(SnapshotRequest { epoch: 0 }.into()),
        ],
    )
    .unwrap();
    // Only the request for the transactions: the snapshot waits behind batch 0.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, ModuleId::new("availability/0"));
    let req = out[0].get::<RequestTransactions>().unwrap();
    let answer = ProvideTransactions {
        error: None,
        txs: vec![Tx::new("a", 0, "x"), Tx::new("a", 0, "x"), Tx::new("b", 0, "y")],
        origin: req.origin.clone(),
    };
    assert_eq!(answer.origin().module, me);
    let out = apply(&mut f, me.clone(), vec![Event::new("availability/0", "batchfetcher", answer)])
        .unwrap();
    let names: Vec<(&str, String)> = out.iter().map(|e| (e.name(), e.dest.to_string())).collect();
    assert_eq!(
        names,
        [
            ("batchfetcher.NewOrderedBatch", "app".to_owned()),
            ("batchfetcher.ClientProgressSnapshot", "checkpoint".to_owned()),
            ("batchfetcher.SnapshotRequest", "app".to_owned()),
        ]
    );
    assert_eq!(out[0].get::<NewOrderedBatch>().unwrap().txs.len(), 2, "a#0 once");
    let snap = out[1].get::<ClientProgressSnapshot>().unwrap();
    assert!(snap.client_progress.contains(&"a".into(), 0));
    assert!(snap.client_progress.contains(&"b".into(), 0));

    // A restore drops what is pending and resets the progress: a#0 is new again.
    let out = apply(
        &mut f,
        me.clone(),
        vec![
            ev(DeliverCert { sn: 1, cert }.into()),
            ev(RestoreState { epoch: 2, client_progress: ClientProgress::default() }.into()),
            ev(DeliverCert { sn: 0, cert: Cert::default() }.into()),
        ],
    )
    .unwrap();
    let names: Vec<&str> = out.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "availability.RequestTransactions",
            "mempool.NewEpoch",
            "batchfetcher.RestoreState",
            "batchfetcher.NewOrderedBatch"
        ]
    );
    let ne = out[1].get::<NewEpoch>().unwrap();
    assert_eq!((ne.epoch, &ne.client_progress), (2, &ClientProgress::default()));
    assert_eq!(f.protocol().progress(), &ClientProgress::default());
    // The answer for the dropped certificate comes late: nothing is output.
    let late = ProvideTransactions {
        error: None,
        txs: vec![Tx::new("c", 0, "z")],
        origin: out[0].get::<RequestTransactions>().unwrap().origin.clone(),
    };
    let out = apply(&mut f, me, vec![Event::new("availability/2", "batchfetcher", late)]).unwrap();
    assert!(out.is_empty());
    assert_eq!(f.pending_requests(), 0);
}

#[test]
fn certificates_are_made_over_a_lossy_network() {
    use mir_dsl::mir_runtime::sim::LinkConfig;
    for seed in 0..20 {
        let mut c = cluster(seed, config());
        c.sim
            .apply_fault(Fault::AllLinks(LinkConfig { drop: 0.4, ..LinkConfig::default() }))
            .unwrap();
        let batch = txs("lossy", 0..4);
        let cert = make_cert(&mut c, 2, batch.clone());
        assert_eq!(cert.batches.len(), 1, "seed {seed}");
        c.verify(0, 0, cert.clone());
        c.request_txs(0, cert);
        c.run();
        assert!(c.seen(0, |s| s.verified[0].valid), "seed {seed}");
        assert_eq!(c.seen(0, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

#[test]
fn concurrent_certificate_requests_each_get_their_own_certificate() {
    // Later requests arrive after `k` simulation steps: at every point of the first
    // certificate's making (asking the mempool, hashing the batch, collecting signatures).
    for k in 0..16 {
        let seed = k;
        let mut c = cluster(seed, config());
        // Enough for two full batches (by count) and then some.
        c.submit(1, txs("olga", 0..2500));
        c.run();
        c.request_cert(1);
        for _ in 0..k {
            c.sim.step().unwrap();
        }
        for _ in 0..3 {
            c.request_cert(1);
        }
        c.run();
        let certs = c.seen(1, |s| s.certs.clone());
        assert_eq!(certs.len(), 4, "seed {seed}: every request answered");
        // Two full batches, then 452 after the batch timeout, then an empty mempool.
        assert!(certs[3].is_empty(), "seed {seed}");
        let ids: std::collections::BTreeSet<_> =
            certs[..3].iter().map(|c| c.batches[0].batch_id.clone()).collect();
        assert_eq!(ids.len(), 3, "seed {seed}: three different batches");
        for cert in &certs {
            c.request_txs(2, cert.clone());
        }
        c.run();
        let all: Vec<Tx> = c.seen(2, |s| s.provided.concat());
        assert_eq!(all.len(), 2500, "seed {seed}: 1024 + 1024 + 452, each once");
        let distinct: std::collections::BTreeSet<u64> = all.iter().map(|t| t.tx_no).collect();
        assert_eq!(distinct.len(), 2500);
    }
}

#[test]
fn timeouts_survive_timer_garbage_collection() {
    use mir_dsl::mir_runtime::stdevents::TimerGarbageCollect;
    let batch = txs("pat", 0..2);
    let (mut c, cert) = cert_node3_missed(6, batch.clone());
    // An orderer collects old timers at every epoch (Mir's ISS does).
    for n in 0..4 {
        c.inject(n, "timer", TimerGarbageCollect { retention_index: 7 });
    }
    c.run();
    // The fetch needs its timeout: the signer asked first is crashed.
    let signers = &cert.batches[0].signers;
    c.sim.apply_fault(Fault::Crash(signers[3 % signers.len()].clone())).unwrap();
    c.request_txs(3, cert);
    // And a batch request needs the batch timeout (2 transactions are not a full batch).
    c.submit(1, txs("quentin", 0..2));
    let origin = c.origin();
    c.inject(1, "mempool", RequestBatch { epoch: 0, origin });
    c.run();
    assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch]);
    assert_eq!(c.seen(1, |s| s.batches[0].txs.clone()), txs("quentin", 0..2));
}

#[test]
fn peer_messages_to_local_services_are_refused_and_counted_not_fatal() {
    use mir_dsl::mir_runtime::stdevents::crypto::HashRequest;
    let mut c = cluster(10, config());
    // A peer names the hasher, the crypto module, the timer and the factory itself.
    let evil = ["hasher", "crypto", "timer", "availability"]
        .map(|m| received(1, m, HashRequest::new(vec![vec![b"x".to_vec()]])));
    c.sim.inject(&nodes()[0], evil.to_vec()).unwrap();
    c.run();
    let stats = c.sim.stats(&nodes()[0]).unwrap();
    for m in ["hasher", "crypto", "timer"] {
        assert_eq!(stats.module(m).unwrap().messages_refused, 1, "{m}");
    }
    // The node still works.
    let batch = txs("quinn", 0..3);
    let cert = make_cert(&mut c, 0, batch);
    assert_eq!(cert.batches.len(), 1);
}

#[test]
fn the_mempool_byte_cap_holds() {
    let mut cfg = config();
    cfg.mempool.max_payload_in_batch = 1024;
    cfg.mempool.capacity_bytes = 4096;
    let mut c = cluster(11, cfg);
    c.submit(0, (0..10).map(|i| Tx::new("r", i, vec![7u8; 1000])).collect());
    c.run();
    let r = c.seen(0, |s| s.rejected[0].rejected.clone());
    assert_eq!(r.len(), 6);
    assert!(r.iter().all(|r| r.reason == "mempool full (4096 bytes)"), "{r:?}");
    // Client IDs count too: empty payloads under 1000-byte client IDs fill it the same way.
    let mut cfg = config();
    cfg.mempool.max_payload_in_batch = 1024;
    cfg.mempool.capacity_bytes = 4096;
    let mut c = cluster(12, cfg);
    c.submit(0, (0..10).map(|i| Tx::new("c".repeat(1000).as_str(), i, Vec::new())).collect());
    c.run();
    let r = c.seen(0, |s| s.rejected[0].rejected.clone());
    assert_eq!(r.len(), 6, "4 × 1008 bytes fit in 4096");
}

#[test]
fn transactions_outside_their_clients_window_are_not_delivered() {
    use protocols::availability::batchfetcher::{BatchFetcher, BatchFetcherModules};
    let mut f = mir_dsl::DslModule::new(
        BatchFetcher::new(BatchFetcherModules {
            availability: ModuleId::new("availability"),
            mempool: ModuleId::new("mempool"),
            destination: ModuleId::new("app"),
            checkpoint: None,
        })
        .with_client_window(10),
    );
    let me = ModuleId::new("batchfetcher");
    let cert = Cert {
        batches: vec![BatchCert {
            batch_id: vec![1; 32],
            signers: nodes()[..2].to_vec(),
            signatures: vec![vec![], vec![]],
        }],
    };
    let out = mir_dsl::mir_runtime::testing::apply(
        &mut f,
        me.clone(),
        vec![Event::new("iss", "batchfetcher", DeliverCert { sn: 0, cert })],
    )
    .unwrap();
    let req = out[0].get::<RequestTransactions>().unwrap();
    // A faulty proposer's batch: numbers far above the window would grow the progress forever.
    let answer = ProvideTransactions {
        error: None,
        txs: vec![Tx::new("s", 9, "ok"), Tx::new("s", 10, "no"), Tx::new("s", 1 << 40, "no")],
        origin: req.origin.clone(),
    };
    let out = mir_dsl::mir_runtime::testing::apply(
        &mut f,
        me,
        vec![Event::new("availability/0", "batchfetcher", answer)],
    )
    .unwrap();
    assert_eq!(out[0].get::<NewOrderedBatch>().unwrap().txs, vec![Tx::new("s", 9, "ok")]);
    assert_eq!(f.protocol().duplicates(), 2);
}

#[test]
fn after_max_requests_certificates_a_source_answers_with_the_empty_certificate() {
    let mut cfg = config();
    cfg.msc.max_requests = 2;
    let mut c = cluster(12, cfg);
    for i in 0..3 {
        make_cert(&mut c, 0, txs("uma", i * 5..i * 5 + 5));
    }
    let certs = c.seen(0, |s| s.certs.clone());
    assert!(!certs[0].is_empty() && !certs[1].is_empty());
    assert!(certs[2].is_empty(), "the third would be refused by every signer");
}
