//! The availability layer against Byzantine nodes made with the adversary layer: a signer that
//! signs garbage, and a certificate creator whose mempool batch reaches the signers in two
//! versions (equivocation), over the batch limit, or with flipped bits. Whatever they do, a certificate that verifies
//! on a correct node names a batch that a correct node can fetch, byte for byte.
//!
//! 1,000 seeds each in the default suite; more with
//! `BYZANTINE_SEEDS=10000 cargo test --release -p protocols --test availability_byzantine`.

mod common;

use common::*;
use mir_dsl::mir_runtime::adversary::{
    Adversary, Equivocate, Mutate, Replay, StrategyExt, Targets,
};
use protocols::availability::msc::{RequestSigMessage, SigMessage};

fn seeds() -> u64 {
    std::env::var("BYZANTINE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

#[test]
fn a_signer_that_signs_garbage_does_not_spoil_certificates() {
    for seed in 0..seeds() {
        let mut c = cluster(seed, config());
        let garbage = Mutate::typed(1.0, |s: &mut SigMessage, rng| {
            s.signature = (0..s.signature.len().max(1)).map(|_| rng.below(256) as u8).collect();
        });
        c.sim.make_byzantine(&nodes()[2], Adversary::new(garbage.then(Replay::new(0.2)))).unwrap();
        let batch = txs("erin", 0..(1 + seed % 9));
        let cert = make_cert(&mut c, 0, batch.clone());
        assert!(
            cert.batches.iter().all(|b| !b.signers.contains(&nodes()[2])),
            "seed {seed}: a garbage signature made it into {cert:?}"
        );
        for n in [1, 3] {
            c.verify(n, 0, cert.clone());
        }
        c.request_txs(3, cert);
        c.run();
        for n in [1, 3] {
            assert!(c.seen(n, |s| s.verified.last().unwrap().valid), "seed {seed}: node {n}");
        }
        assert_eq!(c.seen(3, |s| s.provided.clone()), vec![batch], "seed {seed}");
    }
}

#[test]
fn an_equivocating_creator_cannot_certify_a_batch_nobody_can_fetch() {
    let mut certified = 0;
    for seed in 0..seeds() {
        let mut c = cluster(seed, config());
        let lie = Equivocate::typed(Targets::Half, |m: &RequestSigMessage, _: &NodeId| {
            RequestSigMessage { req_id: m.req_id, txs: txs("mallory", 0..3), buckets: None }
        });
        // Some signers also get an invalid batch: more transactions than a batch may hold
        // (`MscParams::max_txs_in_batch`, 1,024), or flipped bits.
        let too_big = Mutate::typed(0.1, |m: &mut RequestSigMessage, _| {
            m.txs = (0..1025).map(|i| Tx::new("mallory", i, "x")).collect();
        });
        let strategy = lie.then(too_big).then(Mutate::flip_bits(0.1));
        c.sim.make_byzantine(&nodes()[1], Adversary::new(strategy)).unwrap();
        let batch = txs("frank", 0..(1 + seed % 7));
        c.submit(1, batch.clone());
        c.request_cert(1);
        c.run();
        let Some(cert) = c.seen(1, |s| s.certs.last().cloned()) else { continue };
        if cert.batches.is_empty() {
            continue;
        }
        // Every correct node that accepts the certificate can fetch the batch it names.
        for n in [0, 2, 3] {
            c.verify(n, 0, cert.clone());
            c.run();
            if c.seen(n, |s| s.verified.last().unwrap().valid) {
                c.request_txs(n, cert.clone());
                c.run();
                let got = c.seen(n, |s| s.provided.last().cloned());
                assert_eq!(got, Some(batch.clone()), "seed {seed}: node {n} fetched another batch");
            }
        }
        certified += 1;
    }
    eprintln!("{certified} of {} seeds certified a batch", seeds());
    assert!(certified > 0, "the test must not be vacuous");
}
