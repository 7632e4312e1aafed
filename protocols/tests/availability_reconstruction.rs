//! Batch reconstruction: a node that missed a batch fetches it from the signers, also when the
//! one it asks first is crashed, over a lossy network, and when a peer forges a batch; an invalid
//! certificate does not stall the batch fetcher. Runs are deterministic; the long sweep:
//! `AVAILABILITY_SEEDS=2000 cargo test --release -p protocols --test availability_reconstruction -- --ignored`.

mod common;

#[allow(unused_imports)]
use common::*;

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
fn a_reconstruction_run_is_a_function_of_its_seed() {
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
#[ignore = "long sweep: AVAILABILITY_SEEDS=2000 cargo test --release -p protocols --test availability_reconstruction -- --ignored"]
fn reconstruction_with_a_crashed_signer_succeeds_for_every_seed() {
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
