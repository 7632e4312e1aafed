//! PBFT alone: one segment of `--sns` sequence numbers on 4 nodes, the leader proposing
//! `--value`-byte values with at most `--window` proposals undelivered at a time. Reports
//! sequence numbers delivered per second, the latency per sn (from the leader's proposal to each
//! node's delivery), and the share of the nodes' event-handling time spent in the crypto module,
//! all measured in the same run, with k256 signatures:
//!
//! * **production**: the production executor, 4 nodes in one process over the in-process
//!   transport, signatures on worker threads, wall-clock time;
//! * **simulator**: the deterministic simulator (1–10 ms simulated latency), all four nodes on
//!   one thread: the wall-clock rate is the CPU cost of the whole cluster per sn on one core; the
//!   latency is simulated.
//!
//! Each with commits unsigned (PBFT's good case signs nothing) and signed
//! (`PbftConfig::sign_commits`: every node signs each commit and checks every other's).
//!
//! Run: `cargo bench -p protocols --bench pbft` (options: `-- --sns N --window W --value BYTES
//! --only production|simulator`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
use mir_dsl::mir_runtime::stdmodules::ecdsa::test_keys;
use mir_dsl::mir_runtime::stdmodules::{EcdsaCrypto, Timer};
use mir_dsl::mir_runtime::transport::inprocess::InProcessNetwork;
use mir_dsl::mir_runtime::{
    Batch, ModuleId, ModuleResult, Node, NodeBuilder, NodeConfig, NodeId, NodeStats, Outbox,
    PassiveModule,
};
use mir_dsl::DslModule;
use protocols::ordering::pbft::{Pbft, PbftConfig, PbftModules};
use protocols::ordering::{BatchCut, CutBatch, SbDeliver, Segment, Source, Validator};

/// A clock shared by the nodes of one process (production) or the simulator's time.
#[derive(Clone)]
enum Clock {
    Wall(Instant),
    Sim(Arc<Mutex<Duration>>),
}

impl Clock {
    fn now(&self) -> Duration {
        match self {
            Clock::Wall(t0) => t0.elapsed(),
            Clock::Sim(t) => *t.lock().unwrap(),
        }
    }
}

#[derive(Default)]
struct Shared {
    proposed_at: BTreeMap<u64, Duration>,
    latencies: Vec<Duration>,
    delivered: usize,
}

/// The application of a node: the leader's source of values (at most `window` undelivered at
/// the leader) and the consumer of deliveries. Not a protocol module: it may read the clock.
struct App {
    leader: bool,
    window: usize,
    value: usize,
    in_flight: usize,
    waiting: Vec<CutBatch>,
    clock: Clock,
    shared: Arc<Mutex<Shared>>,
}

impl App {
    fn answer(&mut self, c: CutBatch, out: &mut Outbox) {
        self.in_flight += 1;
        self.shared.lock().unwrap().proposed_at.insert(c.sn, self.clock.now());
        let value = vec![(c.sn % 251) as u8; self.value];
        let dest = c.origin.module.clone();
        out.send(&dest, BatchCut { value, origin: c.origin });
    }
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(c) = ev.get::<CutBatch>() {
                if self.in_flight < self.window {
                    self.answer(c.clone(), out);
                } else {
                    self.waiting.push(c.clone());
                }
            } else if let Some(d) = ev.get::<SbDeliver>() {
                let now = self.clock.now();
                let mut s = self.shared.lock().unwrap();
                if let Some(t) = s.proposed_at.get(&d.sn).copied() {
                    s.latencies.push(now.saturating_sub(t));
                }
                s.delivered += 1;
                drop(s);
                if self.leader {
                    self.in_flight -= 1;
                    if !self.waiting.is_empty() {
                        let c = self.waiting.remove(0);
                        self.answer(c, out);
                    }
                }
            }
        }
        Ok(())
    }
}

struct Params {
    sns: u64,
    window: usize,
    value: usize,
}

fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

fn node(
    me: &NodeId,
    p: &Params,
    sign_commits: bool,
    clock: &Clock,
    shared: &Arc<Mutex<Shared>>,
) -> NodeBuilder {
    let (keys, registry) = test_keys(1, &ids());
    let id = ModuleId::new;
    let modules = PbftModules {
        wal: None,
        net: id("net"),
        crypto: id("crypto"),
        timer: id("timer"),
        consumer: id("app"),
        source: Source::Module(id("app")),
        validator: Validator::AcceptAll,
    };
    let members = ids().into_iter().map(|n| (n, 1)).collect();
    let segment = Segment::new(ids()[0].clone(), members, (0..p.sns).collect());
    let config =
        PbftConfig { sign_commits, sn_timeout: Duration::from_secs(60), ..PbftConfig::default() };
    let pbft = Pbft::new(modules, config, me.clone(), segment).unwrap();
    let app = App {
        leader: *me == ids()[0],
        window: p.window,
        value: p.value,
        in_flight: 0,
        waiting: Vec::new(),
        clock: clock.clone(),
        shared: shared.clone(),
    };
    Node::builder(me.clone())
        .config(NodeConfig { inject_capacity: 1 << 16, ..Default::default() })
        .passive("app", app)
        .passive("pbft", DslModule::new(pbft))
        .passive_on_worker("crypto", EcdsaCrypto::new(keys[me].clone(), registry))
        .active("timer", Timer::new())
}

struct Outcome {
    elapsed: Duration,
    latencies: Vec<Duration>,
    stats: Vec<NodeStats>,
}

fn production(p: &Params, sign_commits: bool) -> Outcome {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shared: Arc<Mutex<Shared>> = Arc::default();
    rt.block_on(async {
        let net = InProcessNetwork::new();
        let clock = Clock::Wall(Instant::now());
        let t0 = Instant::now();
        let (mut handles, mut nodes) = (Vec::new(), Vec::new());
        for me in ids() {
            let n = node(&me, p, sign_commits, &clock, &shared)
                .active("net", net.transport(me.clone()))
                .build()
                .unwrap();
            net.connect(me.clone(), n.handle().sink());
            handles.push(n.handle());
            nodes.push(n);
        }
        // Start them once all are connected: the leader proposes at once.
        let runs: Vec<_> = nodes.into_iter().map(|n| tokio::spawn(n.run())).collect();
        let total = 4 * p.sns as usize;
        let deadline = Instant::now() + Duration::from_secs(300);
        while shared.lock().unwrap().delivered < total {
            assert!(
                Instant::now() < deadline,
                "stuck at {} of {total} deliveries",
                shared.lock().unwrap().delivered
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = t0.elapsed();
        let stats = handles.iter().map(|h| h.stats()).collect();
        for h in &handles {
            h.stop();
        }
        for r in runs {
            r.await.unwrap().unwrap();
        }
        let latencies = std::mem::take(&mut shared.lock().unwrap().latencies);
        Outcome { elapsed, latencies, stats }
    })
}

fn simulator(p: &Params, sign_commits: bool) -> Outcome {
    let shared: Arc<Mutex<Shared>> = Arc::default();
    let now = Arc::new(Mutex::new(Duration::ZERO));
    let clock = Clock::Sim(now.clone());
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(1) });
    for me in ids() {
        sim.add_node(node(&me, p, sign_commits, &clock, &shared)).unwrap();
    }
    let total = 4 * p.sns as usize;
    let t0 = Instant::now();
    let done = sim
        .run_until(Duration::from_secs(3600), |s| {
            *now.lock().unwrap() = s.now().since_start();
            shared.lock().unwrap().delivered >= total
        })
        .unwrap();
    assert!(done, "the simulation did not deliver everything");
    let elapsed = t0.elapsed();
    let stats = ids().iter().map(|n| sim.stats(n).unwrap()).collect();
    let latencies = std::mem::take(&mut shared.lock().unwrap().latencies);
    Outcome { elapsed, latencies, stats }
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(what: &str, p: &Params, o: Outcome) {
    let mut l = o.latencies;
    l.sort();
    let busy =
        |m: &str| -> Duration { o.stats.iter().filter_map(|s| s.module(m)).map(|m| m.busy).sum() };
    let all: Duration = o.stats.iter().flat_map(|s| &s.modules).map(|m| m.busy).sum();
    let crypto = busy("crypto");
    println!(
        "{what:<34} {:>8.0} sn/s   latency p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms   crypto {:>4.1}% of {:.0} ms busy (pbft {:.0} ms)",
        p.sns as f64 / o.elapsed.as_secs_f64(),
        pct(&l, 0.5),
        pct(&l, 0.9),
        pct(&l, 0.99),
        100.0 * crypto.as_secs_f64() / all.as_secs_f64().max(1e-9),
        all.as_secs_f64() * 1e3,
        busy("pbft").as_secs_f64() * 1e3,
    );
}

fn main() {
    let mut p = Params { sns: 2000, window: 32, value: 256 };
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--sns" => p.sns = num(),
            "--window" => p.window = num() as usize,
            "--value" => p.value = num() as usize,
            "--only" => only = args.next(),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!(
        "PBFT, 4 nodes, one segment of {} sns, {}-byte values, window {}, k256 signatures",
        p.sns, p.value, p.window
    );
    for sign in [false, true] {
        let commits = if sign { "signed commits" } else { "unsigned commits" };
        if only.as_deref() != Some("simulator") {
            report(&format!("production, {commits}"), &p, production(&p, sign));
        }
        if only.as_deref() != Some("production") {
            report(&format!("simulator, {commits}"), &p, simulator(&p, sign));
        }
    }
}
