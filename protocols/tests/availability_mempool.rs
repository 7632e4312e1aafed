//! The mempool: duplicates delivered once, batches cut by count, bytes and timeout, its bounds
//! under a flood, transactions served by ID, client watermark windows.

mod common;

#[allow(unused_imports)]
use common::*;

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
            c.inject(0, "mempool", RequestBatch { epoch, buckets: None, origin });
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
        c.inject(0, "mempool", RequestBatch { epoch: 0, buckets: None, origin });
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
fn the_mempool_serves_transactions_by_id() {
    use protocols::availability::mempool::{LookupTransactions, TransactionsFound};
    let mut c = cluster(9, config());
    c.submit(0, txs("kim", 0..3));
    let origin = c.origin();
    c.inject(0, "mempool", RequestBatch { epoch: 0, buckets: None, origin });
    c.run();
    let ids = c.seen(0, |s| s.batches[0].tx_ids.clone());
    assert_eq!(ids.len(), 3);
    // The same transactions in a mempool driven by hand (hasher answers fed back), put in a
    // batch (which is when they get their IDs), then asked for by ID.
    let mut mp = mir_dsl::DslModule::new(protocols::availability::mempool::Mempool::new(
        MempoolParams { max_txs_in_batch: 3, ..MempoolParams::default() },
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
    assert!(out.is_empty(), "nothing hashed at admission: {out:?}");
    let ask_batch = RequestBatch {
        epoch: 0,
        buckets: None,
        origin: Origin { module: ModuleId::new("app"), id: 7 },
    };
    let out = mir_dsl::mir_runtime::testing::apply(
        &mut mp,
        me.clone(),
        vec![Event::new("app", "mempool", ask_batch)],
    )
    .unwrap();
    let req = out
        .iter()
        .find_map(|e| e.get::<mir_dsl::mir_runtime::stdevents::crypto::HashRequest>())
        .expect("the full batch's transactions are hashed")
        .clone();
    let mut hasher = mir_dsl::mir_runtime::stdmodules::Hasher;
    let answer = mir_dsl::mir_runtime::testing::apply(
        &mut hasher,
        ModuleId::new("hasher"),
        vec![Event::new("mempool", "hasher", req)],
    )
    .unwrap();
    let out = mir_dsl::mir_runtime::testing::apply(&mut mp, me.clone(), answer).unwrap();
    let batch = out.iter().find_map(|e| e.get::<NewBatch>()).expect("the batch, once hashed");
    assert_eq!(batch.tx_ids, ids, "the same IDs as the cluster's mempool computed");
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
            buckets: None,
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
