//! ISS over the availability layer against a Byzantine node made with the adversary layer: a
//! leader that equivocates, withholds its segments, censors (proposes empty certificates),
//! proposes certificates of foreign buckets, asks for signatures on requests outside their
//! clients' windows (correct signers refuse: no certificate, its segment ends ⊥); a follower sending conflicting PREPAREs and COMMITs
//! and flipping bits. Every seed: the correct nodes deliver the same batches, every transaction
//! exactly once, each in its segment's buckets, none cut into a batch by two nodes' mempools for
//! one epoch (an online monitor), and the
//! requests of a censored or withheld bucket are ordered once the bucket moves.
//!
//! 300 seeds per scenario in the default suite (10,000 passed in release); more with
//! `ISS_BYZANTINE_SEEDS=10000 cargo test --release -p protocols --test iss_byzantine`.

mod iss_pipeline;
use iss_pipeline::*;
use mir_runtime::adversary::{
    Adversary, AdversaryCtx, Equivocate, Mutate, Outgoing, StrategyExt, Targets,
};
use mir_runtime::sim::sweep;
use protocols::availability::{Buckets, Cert};
use protocols::ordering::pbft::{Commit, Prepare, Preprepare};

const COMMAND: &str = "cargo test -p protocols --test iss_byzantine";

fn seeds() -> u64 {
    std::env::var("ISS_BYZANTINE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300)
}

fn check(seed: u64, adversary: impl FnOnce() -> Adversary) -> Result<(), String> {
    // Node 0 is Byzantine; the checks in `run_with` panic with the seed on a violation.
    let seen = run_with(seed, Mode::Bucketed, &[], 2, 20, Some((0, adversary())));
    check_buckets(&seen);
    Ok(())
}

/// The certificate in a pre-prepare, changed by `f`.
fn with_cert(pp: &mut Preprepare, f: impl FnOnce(&mut Cert)) {
    if let Some(mut cert) = pp.value.as_deref().and_then(|v| Cert::from_bytes(v).ok()) {
        f(&mut cert);
        pp.value = Some(cert.to_bytes());
    }
}

#[test]
fn an_equivocating_leader() {
    sweep(0..seeds(), COMMAND, |seed| {
        check(seed, || {
            // Half the followers get the empty certificate instead of the real one.
            let lie = Equivocate::typed(Targets::Half, |pp: &Preprepare, _: &NodeId| {
                let mut pp = pp.clone();
                with_cert(&mut pp, |c| c.batches.clear());
                pp
            });
            Adversary::new(lie)
        })
    });
}

#[test]
fn a_leader_withholding_its_segments() {
    sweep(0..seeds(), COMMAND, |seed| {
        check(seed, || {
            let withhold = |_: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
                out.retain(|o| o.message.payload.decode::<Preprepare>().ok().flatten().is_none());
            };
            Adversary::new(withhold)
        })
    });
}

#[test]
fn a_censoring_leader_and_one_proposing_foreign_buckets() {
    sweep(0..seeds(), COMMAND, |seed| {
        check(seed, || {
            // Odd seeds: empty certificates (its buckets' requests wait for the next leader);
            // even seeds: certificates claiming other buckets (signatures no longer match).
            let censor = seed % 2 == 1;
            Adversary::new(Mutate::typed(1.0, move |pp: &mut Preprepare, _| {
                with_cert(pp, |c| {
                    if censor {
                        c.batches.clear();
                    } else {
                        for b in &mut c.batches {
                            b.buckets = Some(Buckets { count: 64, mine: vec![0, 1, 2, 3] });
                        }
                    }
                })
            }))
        })
    });
}

#[test]
fn a_byzantine_follower() {
    sweep(0..seeds(), COMMAND, |seed| {
        check(seed, || {
            let d = vec![0xAB; 32];
            let (d1, d2) = (d.clone(), d);
            let prepares = Equivocate::typed(Targets::Half, move |p: &Prepare, _| Prepare {
                digest: d1.clone(),
                ..p.clone()
            });
            let commits = Equivocate::typed(Targets::Half, move |c: &Commit, _| Commit {
                digest: d2.clone(),
                ..c.clone()
            });
            Adversary::new(prepares.then(commits).then(Mutate::flip_bits(0.02)))
        })
    });
}

#[test]
fn a_leader_proposing_requests_outside_their_clients_windows() {
    use protocols::availability::msc::RequestSigMessage;
    sweep(0..seeds(), COMMAND, |seed| {
        check(seed, || {
            // Every batch it asks signatures for names its transactions' numbers a million on.
            Adversary::new(Mutate::typed(1.0, |r: &mut RequestSigMessage, _| {
                for t in &mut r.txs {
                    t.tx_no += 1_000_000;
                }
            }))
        })
    });
}
