//! Certificates (the multisig collector's creation and verification parts): made and verified on
//! every node, also over a lossy network and for concurrent requests; bad certificates (repeated
//! signer, non-member, too little weight, bad signature, other epoch) rejected; the per-source
//! limits of signers.

mod common;

#[allow(unused_imports)]
use common::*;

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
    c.inject(1, "mempool", RequestBatch { epoch: 0, buckets: None, origin });
    c.run();
    assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch]);
    assert_eq!(c.seen(1, |s| s.batches[0].txs.clone()), txs("quentin", 0..2));
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
                RequestSigMessage {
                    req_id: i,
                    txs: txs("flood", i * 10..i * 10 + 10),
                    buckets: None,
                },
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
            received(
                1,
                "availability/0",
                RequestSigMessage { req_id: i, txs: vec![tx], buckets: None },
            )
        })
        .collect();
    c.sim.inject(&nodes()[0], flood).unwrap();
    c.run();
    assert_eq!(c.sim.summary().messages_delivered - before, 3);
}

#[test]
fn a_signer_signs_a_batch_only_if_its_transactions_fall_in_the_named_buckets() {
    use protocols::availability::msc::RequestSigMessage;
    use protocols::availability::{bucket_of, Buckets};
    let mut c = cluster(9, config());
    c.run();
    let before = c.sim.summary().messages_delivered;
    let tx = Tx::new("dora", 3, "x");
    let b = bucket_of("dora", 3, 8);
    let request = |req_id, mine: Vec<u64>| {
        let buckets = Some(Buckets { count: 8, mine });
        received(1, "availability/0", RequestSigMessage { req_id, txs: vec![tx.clone()], buckets })
    };
    // Its bucket: signed. Another bucket, or a malformed bucket list: refused.
    let flood = vec![request(0, vec![b]), request(1, vec![(b + 1) % 8]), request(2, vec![9])];
    c.sim.inject(&nodes()[0], flood).unwrap();
    c.run();
    assert_eq!(c.sim.summary().messages_delivered - before, 1);
}

#[test]
fn a_certificate_for_buckets_verifies_only_with_those_buckets() {
    use protocols::availability::msc::RequestCert;
    use protocols::availability::{bucket_of, Buckets};
    let mut c = cluster(10, config());
    // Transactions of every bucket; the certificate is for bucket 2 of 4 only.
    c.submit(0, txs("erin", 0..8));
    let origin = c.origin();
    let buckets = Buckets { count: 4, mine: vec![2] };
    c.inject(0, "availability/0", RequestCert { buckets: Some(buckets.clone()), origin });
    c.run();
    let cert = c.seen(0, |s| s.certs.last().unwrap().clone());
    assert_eq!(cert.batches.len(), 1);
    assert_eq!(cert.batches[0].buckets, Some(buckets));
    let ids: Vec<u64> = (0..8).filter(|n| bucket_of("erin", *n, 4) == 2).collect();
    assert_eq!(ids.len(), 2);
    // Valid as made; claiming other buckets breaks every signature.
    let id = c.verify(1, 0, cert.clone());
    let mut other = cert;
    other.batches[0].buckets = Some(Buckets { count: 4, mine: vec![1, 2] });
    let id2 = c.verify(1, 0, other);
    c.run();
    c.seen(1, |s| {
        let v = |id| s.verified.iter().find(|v| v.origin.id == id).unwrap().valid;
        assert!(v(id));
        assert!(!v(id2));
    });
}

#[test]
fn a_signer_signs_a_batch_only_if_its_transactions_lie_in_their_clients_windows() {
    use protocols::availability::msc::RequestSigMessage;
    let mut c = cluster(11, config());
    c.run();
    let before = c.sim.summary().messages_delivered;
    let window = config().mempool.client_window;
    let request = |req_id, tx_no| {
        let txs = vec![Tx::new("dora", 0, "x"), Tx::new("dora", tx_no, "y")];
        received(1, "availability/0", RequestSigMessage { req_id, txs, buckets: None })
    };
    // In the window [0, window): signed (one SIG back). At or beyond its end: refused.
    let flood = vec![request(0, window - 1), request(1, window), request(2, u64::MAX)];
    c.sim.inject(&nodes()[0], flood).unwrap();
    c.run();
    assert_eq!(c.sim.summary().messages_delivered - before, 1);
}

#[test]
fn a_batch_the_batch_db_refused_does_not_count_against_its_source() {
    // A full batch database refuses a batch; the leader retries it. The refused batch's bytes
    // must not stay counted against the source's budget (before session 12 they did, so a
    // source ran out of budget on batches nobody held).
    use protocols::availability::msc::RequestSigMessage;
    let mut cfg = config();
    cfg.mempool.max_payload_in_batch = 1024;
    cfg.msc.max_payload_in_batch = 1024;
    cfg.msc.max_bytes_per_source = 1560; // two batches of 513 bytes, then 534 more
    cfg.batchdb_capacity_bytes = Some(1100); // two batches of 513 bytes, then 74 more
    let mut c = cluster(8, cfg);
    c.run();
    let ask = |i: u64, payload: usize| {
        let tx = Tx::new("flood", i, vec![0u8; payload]); // 5 + 8 + payload bytes
        received(1, "availability/0", RequestSigMessage { req_id: i, txs: vec![tx], buckets: None })
    };
    let sent = |c: &Cluster| c.sim.summary().messages_delivered;
    let before = sent(&c);
    c.sim.inject(&nodes()[0], vec![ask(0, 500), ask(1, 500)]).unwrap();
    c.run();
    assert_eq!(sent(&c) - before, 2, "two batches stored and signed");
    for _ in 0..3 {
        c.sim.inject(&nodes()[0], vec![ask(2, 500)]).unwrap();
        c.run();
    }
    assert_eq!(sent(&c) - before, 2, "the third refused, each time: the batch DB is full");
    // 23 bytes: room in the batch DB, and in the budget unless the refused batch still counts.
    c.sim.inject(&nodes()[0], vec![ask(3, 10)]).unwrap();
    c.run();
    assert_eq!(sent(&c) - before, 3, "a small batch is stored and signed");
}
