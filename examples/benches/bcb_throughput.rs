//! BCB instances per second on 4 nodes in one process (in-process transport, k256 signatures on
//! worker threads), against what the signatures alone cost: the difference is the framework's
//! share (event loop, DSL, routing, encoding, transport).
//!
//! Run: `cargo bench -p examples --bench bcb_throughput` (options: `-- --instances N --window W`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use examples::bcb::{BcbApp, BcbReport, Submit};
use mir_dsl::mir_runtime::stdevents::crypto::{SignRequest, VerifySig, VerifySigs};
use mir_dsl::mir_runtime::stdmodules::ecdsa::{sign, test_keys, EcdsaCrypto};
use mir_dsl::mir_runtime::testing::apply;
use mir_dsl::mir_runtime::transport::inprocess::InProcessNetwork;
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
use mir_dsl::DslModule;

/// Counts the signatures made and checked by the crypto module it wraps.
struct Counted {
    inner: EcdsaCrypto,
    signs: Arc<AtomicU64>,
    verifies: Arc<AtomicU64>,
}

impl PassiveModule for Counted {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let evs: Vec<Event> = events.collect();
        for e in &evs {
            if e.is::<SignRequest>() {
                self.signs.fetch_add(1, Relaxed);
            } else if e.is::<VerifySig>() {
                self.verifies.fetch_add(1, Relaxed);
            } else if let Some(v) = e.get::<VerifySigs>() {
                self.verifies.fetch_add(v.items.len() as u64, Relaxed);
            }
        }
        for ev in apply(&mut self.inner, out.me().clone(), evs)? {
            out.emit(ev);
        }
        Ok(())
    }
}

fn main() {
    let mut instances: u64 = 300;
    let mut window: u64 = 16;
    let mut record = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--instances" => {
                instances = args.next().and_then(|v| v.parse().ok()).expect("--instances N")
            }
            "--window" => window = args.next().and_then(|v| v.parse().ok()).expect("--window W"),
            "--record" => record = true,
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let (keys, registry) = test_keys(1, &ids);

    // What one signature and one verification cost here, alone (one thread).
    let data = vec![1u64.to_le_bytes().to_vec(), b"ECHO".to_vec(), vec![7u8; 64]];
    let sig = sign(&keys[&ids[0]], &data);
    let n = 300;
    let t0 = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sign(&keys[&ids[0]], &data));
    }
    let t_sign = t0.elapsed().as_secs_f64() / n as f64;
    let t0 = Instant::now();
    for _ in 0..n {
        assert!(registry.check(&ids[0], &data, &sig).is_none());
    }
    let t_verify = t0.elapsed().as_secs_f64() / n as f64;

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (tx, rx) = mpsc::channel();
    let (signs, verifies) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let elapsed = rt.block_on(async {
        let net = InProcessNetwork::new();
        let quorum = mir_dsl::Voters::equal(ids.clone());
        let modules = protocols::bcb::BcbModules {
            net: ModuleId::new("net"),
            crypto: ModuleId::new("crypto"),
            consumer: ModuleId::new("app"),
        };
        let mut handles = Vec::new();
        let mut runs = Vec::new();
        for me in &ids {
            let crypto = Counted {
                inner: EcdsaCrypto::new(keys[me].clone(), registry.clone()),
                signs: signs.clone(),
                verifies: verifies.clone(),
            };
            // The in-process transport drops on overflow (it never blocks): leave room for bursts.
            let cfg =
                mir_dsl::mir_runtime::NodeConfig { inject_capacity: 8192, ..Default::default() };
            let mut builder = Node::builder(me.clone()).config(cfg);
            if record {
                let dir =
                    std::env::temp_dir().join(format!("mir-bcb-bench-log-{}", std::process::id()));
                let rec = mir_dsl::mir_runtime::eventlog::Recorder::new(
                    mir_dsl::mir_runtime::eventlog::RecorderConfig::new(dir),
                    me,
                )
                .unwrap();
                builder = builder.interceptor(rec);
            }
            let node = builder
                .passive("app", DslModule::new(BcbApp::new(me.clone(), ids[0].clone(), tx.clone())))
                .passive(
                    "bcb",
                    protocols::bcb::factory(modules.clone(), quorum.clone(), me.clone()),
                )
                .passive_on_worker("crypto", crypto)
                .active("net", net.transport(me.clone()))
                .build()
                .unwrap();
            net.connect(me.clone(), node.handle().sink());
            handles.push(node.handle());
            runs.push(tokio::spawn(node.run()));
        }
        let t0 = Instant::now();
        let (mut submitted, mut leader_done, mut all_done) = (0u64, 0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(120);
        while all_done < 4 * instances {
            assert!(
                Instant::now() < deadline,
                "stuck: {all_done} of {} deliveries after 120 s",
                4 * instances
            );
            while submitted < instances && submitted < leader_done + window {
                handles[0]
                    .inject(vec![Event::new(
                        "app",
                        "app",
                        Submit { data: vec![submitted as u8; 64] },
                    )])
                    .await
                    .unwrap();
                submitted += 1;
            }
            while let Ok(r) = rx.try_recv() {
                if let BcbReport::Delivered { node, .. } = r {
                    all_done += 1;
                    if node == ids[0] {
                        leader_done += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let dt = t0.elapsed();
        for h in &handles {
            h.stop();
        }
        for r in runs {
            r.await.unwrap().unwrap();
        }
        dt
    });
    let per_sec = instances as f64 / elapsed.as_secs_f64();
    let (s, v) = (
        signs.load(Relaxed) as f64 / instances as f64,
        verifies.load(Relaxed) as f64 / instances as f64,
    );
    let crypto_per_instance = s * t_sign + v * t_verify;
    // On 2 cores, signatures alone would allow this many instances per second.
    let bound = 2.0 / crypto_per_instance;
    println!("BCB, 4 nodes in one process, in-process transport, k256 on worker threads, window {window}{}", if record { ", recording every event" } else { "" });
    println!("instances/s:                         {per_sec:.0}");
    println!("signatures per instance:             {s:.1} signs + {v:.1} verifications");
    println!(
        "one sign / one verify (alone):       {:.1} µs / {:.1} µs",
        t_sign * 1e6,
        t_verify * 1e6
    );
    println!("signature CPU per instance:          {:.0} µs", crypto_per_instance * 1e6);
    println!("signatures alone allow (2 cores):    {bound:.0} instances/s");
    println!(
        "framework's share of the time:       {:.0}%",
        (1.0 - per_sec / bound).max(0.0) * 100.0
    );
}
