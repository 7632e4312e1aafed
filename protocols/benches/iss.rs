//! ISS in the simulator: 4 nodes over the availability layer with k256 signatures, clients
//! offering `--rate` transactions per second (512-byte payloads, sent to every node), for
//! `--seconds` of simulated time. Compares bucketed mode, redundant mode and the single-leader
//! policy. Reports, per configuration: transactions delivered per simulated second, the latency
//! from submission to delivery at node 0 (simulated time: 1–10 ms links, no CPU cost modelled, so
//! this measures the protocol's structure: batching, timeouts, pipelining), and the wall-clock
//! time the single-threaded simulation took (the whole cluster's CPU cost).
//!
//! Run: `cargo bench -p protocols --bench iss` (options: `-- --rate R --seconds S --tx-size B`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
use mir_dsl::mir_runtime::stdmodules::ecdsa::test_keys;
use mir_dsl::mir_runtime::stdmodules::{EcdsaCrypto, Timer};
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
use protocols::availability::batchfetcher::{NewOrderedBatch, SnapshotRequest};
use protocols::availability::mempool::NewTransactions;
use protocols::availability::Tx;
use protocols::ordering::checkpoint::AppSnapshot;
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::{self, IssConfig, Mode, NodeSettings};

/// Node 0's deliveries since the driver last looked: (client, tx_no).
type Delivered = Arc<Mutex<Vec<(String, u64)>>>;

struct App {
    delivered: Option<Delivered>,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(b) = ev.get::<NewOrderedBatch>() {
                if let Some(d) = &self.delivered {
                    d.lock().unwrap().extend(b.txs.iter().map(|t| (t.client.0.clone(), t.tx_no)));
                }
            } else if let Some(s) = ev.get::<SnapshotRequest>() {
                out.send(&ModuleId::new("iss"), AppSnapshot { epoch: s.epoch, data: vec![] });
            }
        }
        Ok(())
    }
}

struct Params {
    rate: u64,
    seconds: u64,
    tx_size: usize,
}

fn run(p: &Params, name: &str, mode: Mode, policy: LeaderPolicy) {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let (keys, registry) = test_keys(1, &ids);
    let membership: Vec<(NodeId, u128)> = ids.iter().map(|n| (n.clone(), 1)).collect();
    let delivered: Delivered = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(1) });
    let settings = NodeSettings {
        iss: IssConfig { mode, leader_policy: policy, ..IssConfig::default() },
        ..NodeSettings::default()
    };
    for me in &ids {
        let app = App { delivered: (*me == ids[0]).then(|| delivered.clone()) };
        let b = Node::builder(me.clone())
            .passive("app", app)
            .passive("crypto", EcdsaCrypto::new(keys[me].clone(), registry.clone()))
            .active("timer", Timer::new());
        sim.add_node(iss::add_to(b, me.clone(), membership.clone(), &settings).unwrap()).unwrap();
    }
    // Offer `rate` tx/s in 10 ms chunks from 4 clients, to every node; deliveries are stamped
    // with the simulated time at the end of the 10 ms step they happen in.
    let step = Duration::from_millis(10);
    let mut at: BTreeMap<(String, u64), Duration> = BTreeMap::new();
    let stamp = |sim: &Simulation, at: &mut BTreeMap<(String, u64), Duration>| {
        let t = sim.now().since_start();
        for k in delivered.lock().unwrap().drain(..) {
            at.entry(k).or_insert(t);
        }
    };
    let per_step = (p.rate / 100).max(1);
    let mut submitted: BTreeMap<(String, u64), Duration> = BTreeMap::new();
    let wall = Instant::now();
    let steps = p.seconds * 100;
    let mut next_no = [0u64; 4];
    for k in 0..steps {
        let t = step * k as u32;
        let txs: Vec<Tx> = (0..per_step)
            .map(|i| {
                let c = (i % 4) as usize;
                let no = next_no[c];
                next_no[c] += 1;
                submitted.insert((format!("client-{c}"), no), t);
                Tx::new(format!("client-{c}").as_str(), no, vec![7u8; p.tx_size])
            })
            .collect();
        for n in &ids {
            sim.inject(n, vec![Event::new("app", "mempool", NewTransactions { txs: txs.clone() })])
                .unwrap();
        }
        sim.run_for(step).unwrap();
        stamp(&sim, &mut at);
    }
    // Drain: up to 10 more seconds for what is in flight.
    let total = submitted.len();
    for _ in 0..1000 {
        if at.len() >= total {
            break;
        }
        sim.run_for(step).unwrap();
        stamp(&sim, &mut at);
    }
    let wall = wall.elapsed();
    let d = &at;
    let mut lat: Vec<Duration> =
        d.iter().filter_map(|(k, t)| submitted.get(k).map(|s| t.saturating_sub(*s))).collect();
    lat.sort();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q) as usize).map_or(f64::NAN, |l| l.as_secs_f64() * 1e3)
    };
    // Throughput over the offered period plus the time to drain it.
    let last = d.values().max().copied().unwrap_or_default();
    println!(
        "{name:<28} {:>6} of {total} delivered, {:>8.0} tx/s (simulated)  latency p50 {:>6.0} ms p90 {:>6.0} ms p99 {:>6.0} ms  wall {:.1} s",
        d.len(),
        d.len() as f64 / last.as_secs_f64().max(1e-9),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        wall.as_secs_f64(),
    );
}

fn main() {
    let mut p = Params { rate: 2000, seconds: 3, tx_size: 512 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--rate" => p.rate = num(),
            "--seconds" => p.seconds = num(),
            "--tx-size" => p.tx_size = num() as usize,
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!(
        "ISS, 4 simulated nodes, k256, {}-byte transactions offered at {} tx/s for {} s (to every node)",
        p.tx_size, p.rate, p.seconds
    );
    run(&p, "bucketed, simple policy", Mode::Bucketed, LeaderPolicy::Simple);
    run(&p, "redundant, simple policy", Mode::Redundant, LeaderPolicy::Simple);
    run(&p, "bucketed, single leader", Mode::Bucketed, LeaderPolicy::Single);
}
