//! The crypto module's cost over calling k256 directly (on pre-framed bytes): signatures and verifications per second,
//! one thread, the same data, in the same run.
//!
//! Run: `cargo bench -p mir-runtime --bench crypto` (options: `-- --ops N --runs R`).

use std::time::Instant;

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::Signature;
use mir_runtime::stdevents::crypto::{Origin, SigVerified, SignRequest, VerifySig};
use mir_runtime::stdmodules::ecdsa::{sign_message, test_keys, EcdsaCrypto};
use mir_runtime::testing::apply;
use mir_runtime::{Event, ModuleId, NodeId};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut ops = 2000usize;
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ops" => ops = args.next().and_then(|v| v.parse().ok()).expect("--ops N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs R"),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    let nodes: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let (keys, registry) = test_keys(1, &nodes);
    let me = nodes[0].clone();
    let data: Vec<Vec<u8>> = vec![b"instance".to_vec(), b"ECHO".to_vec(), vec![7u8; 512]];
    // The baseline: k256 on the bytes the module signs for "app" (the module frames the parts
    // with the deployment and domain itself).
    let framed = mir_runtime::stdevents::crypto::signed_message(
        &registry.fingerprint(),
        &ModuleId::new("app"),
        &data,
    );
    let sig = sign_message(&keys[&me], &framed);
    let vk = *registry.get(&me).unwrap();
    let parsed = Signature::from_slice(&sig).unwrap();
    let origin = Origin { module: ModuleId::new("app"), id: 0 };
    let batch = 64;

    let rate = |f: &mut dyn FnMut()| {
        let t0 = Instant::now();
        f();
        ops as f64 / t0.elapsed().as_secs_f64()
    };
    // No cache: every request is verified (what the cache saves is measured by its tests).
    let mut module = EcdsaCrypto::new(keys[&me].clone(), registry.clone()).cache_entries(0);
    // The module accepts the signature it is timed on.
    let mut check = VerifySig::new(data.clone(), sig.clone(), me.clone());
    check.origin = origin.clone();
    let out = apply(&mut module, ModuleId::new("crypto"), vec![Event::new("app", "crypto", check)])
        .unwrap();
    assert_eq!(out[0].get::<SigVerified>().unwrap().error, None);
    let (mut ds, mut ms, mut dv, mut mv) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ds.push(rate(&mut || {
            for _ in 0..ops {
                let s: Signature = keys[&me].sign(&framed);
                std::hint::black_box(s);
            }
        }));
        ms.push(rate(&mut || {
            for _ in 0..ops / batch {
                let evs = (0..batch)
                    .map(|_| {
                        Event::new(
                            "app",
                            "crypto",
                            SignRequest {
                                data: data.clone(),
                                domain: None,
                                origin: origin.clone(),
                            },
                        )
                    })
                    .collect();
                std::hint::black_box(apply(&mut module, ModuleId::new("crypto"), evs).unwrap());
            }
        }));
        dv.push(rate(&mut || {
            for _ in 0..ops {
                assert!(vk.verify(&framed, &parsed).is_ok());
            }
        }));
        mv.push(rate(&mut || {
            for _ in 0..ops / batch {
                let evs = (0..batch)
                    .map(|_| {
                        Event::new(
                            "app",
                            "crypto",
                            VerifySig {
                                data: data.clone(),
                                signature: sig.clone(),
                                node: me.clone(),
                                domain: None,
                                origin: origin.clone(),
                            },
                        )
                    })
                    .collect();
                std::hint::black_box(apply(&mut module, ModuleId::new("crypto"), evs).unwrap());
            }
        }));
    }
    println!(
        "crypto module vs k256 directly, 512-byte messages, one thread, median of {runs} runs"
    );
    println!(
        "{:<10} {:>14} {:>14} {:>10}",
        "operation", "direct ops/s", "module ops/s", "overhead"
    );
    for (name, d, m) in [("sign", median(ds), median(ms)), ("verify", median(dv), median(mv))] {
        println!("{:<10} {:>14.0} {:>14.0} {:>9.1}%", name, d, m, (d / m - 1.0) * 100.0);
    }
}
