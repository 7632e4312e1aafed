//! The batch fetcher: ordered output keeps the certificates' order when payloads arrive out of
//! order; epochs, snapshots and restores reach the application and the mempool in order.

mod common;

#[allow(unused_imports)]
use common::*;

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
            buckets: None,
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
            ev(RestoreState { epoch: 2, client_progress: ClientProgress::default(), app: vec![] }
                .into()),
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
