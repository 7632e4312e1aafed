//! Event-loop throughput: events per second through a ping-pong of two passive modules and
//! through a ring of ten, in both executors, against a baseline in the same run that moves the
//! same boxed payloads in batches of the same size between tokio tasks over mpsc channels.
//!
//! Run: `cargo bench -p mir-runtime --bench event_loop` (options: `-- --events N --runs R
//! --batch B --only tokio|sim|baseline`).
//! Everything runs on one thread (tokio current_thread), i.e. one core.

use std::any::Any;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::{Init, TestUint64};
use mir_runtime::{
    Batch, ModuleId, ModuleResult, Node, NodeBuilder, NodeConfig, Outbox, PassiveModule,
};
use tokio::sync::mpsc;

static BATCH: AtomicUsize = AtomicUsize::new(512);

fn batch() -> usize {
    BATCH.load(Relaxed)
}

/// Module 0 of a ring: starts `BATCH` tokens on Init and re-sends every token that comes back
/// until `total` tokens have completed the ring; then it signals `done`.
struct Head {
    next: ModuleId,
    total: u64,
    sent: u64,
    back: u64,
    done: Option<std::sync::mpsc::Sender<()>>,
}

impl PassiveModule for Head {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                for _ in 0..batch() {
                    out.send(&self.next, TestUint64(self.sent));
                    self.sent += 1;
                }
            } else if let Some(TestUint64(v)) = ev.get::<TestUint64>() {
                black_box(v);
                self.back += 1;
                if self.sent < self.total {
                    out.send(&self.next, TestUint64(self.sent));
                    self.sent += 1;
                } else if self.back == self.total {
                    if let Some(d) = self.done.take() {
                        let _ = d.send(());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Any other module of the ring: forwards every token to the next module (a new event each time).
struct Hop {
    next: ModuleId,
}

impl PassiveModule for Hop {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(TestUint64(v)) = ev.get::<TestUint64>() {
                out.send(&self.next, TestUint64(v + 1));
            }
        }
        Ok(())
    }
}

fn ring(
    builder: NodeBuilder,
    modules: usize,
    total: u64,
    done: std::sync::mpsc::Sender<()>,
) -> NodeBuilder {
    let name = |i: usize| format!("m{i}");
    let mut b = builder.config(NodeConfig { max_batch_size: batch(), ..NodeConfig::default() });
    b = b.passive(
        &name(0),
        Head { next: ModuleId::new(&name(1)), total, sent: 0, back: 0, done: Some(done) },
    );
    for i in 1..modules {
        b = b.passive(&name(i), Hop { next: ModuleId::new(&name((i + 1) % modules)) });
    }
    b
}

/// Events handled per second on the tokio executor (current_thread).
fn tokio_ring(modules: usize, total: u64) -> f64 {
    tokio_ring_with(modules, total, false)
}

/// The same, optionally recording every event to an event log (in a temporary directory).
fn tokio_ring_with(modules: usize, total: u64, record: bool) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut builder = ring(Node::builder("0"), modules, total, tx);
    let dir = std::env::temp_dir().join(format!("mir-bench-log-{}", std::process::id()));
    if record {
        let cfg = mir_runtime::eventlog::RecorderConfig::new(&dir);
        builder =
            builder.interceptor(mir_runtime::eventlog::Recorder::new(cfg, &"0".into()).unwrap());
    }
    let node = builder.build().unwrap();
    let h = node.handle();
    rt.block_on(async move {
        let t0 = Instant::now();
        let run = tokio::spawn(node.run());
        // The node runs on this thread; poll for completion without busy-waiting the loop away.
        loop {
            tokio::task::yield_now().await;
            if rx.try_recv().is_ok() {
                break;
            }
        }
        let dt = t0.elapsed();
        h.stop();
        run.await.unwrap().unwrap();
        let events: u64 = h.stats().modules.iter().map(|m| m.events_handled).sum();
        if record {
            let _ = std::fs::remove_dir_all(&dir);
        }
        events as f64 / dt.as_secs_f64()
    })
}

/// Events handled per second in the simulator.
fn sim_ring(modules: usize, total: u64, digest: bool) -> f64 {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut sim = Simulation::new(SimConfig { digest, ..SimConfig::with_seed(1) });
    sim.add_node(ring(Node::builder("0"), modules, total, tx)).unwrap();
    let t0 = Instant::now();
    sim.run_until(Duration::from_secs(1), |_| rx.try_recv().is_ok()).unwrap();
    let dt = t0.elapsed();
    sim.summary().events as f64 / dt.as_secs_f64()
}

type Boxed = Box<dyn Any + Send>;

/// Baseline: `tasks` tokio tasks in a ring over bounded mpsc channels, passing batches of
/// `--batch` boxed payloads; each task allocates a new box per payload (as each event hop does).
fn baseline_ring(tasks: usize, total: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async move {
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..tasks {
            let (tx, rx) = mpsc::channel::<Vec<Boxed>>(16);
            txs.push(tx);
            rxs.push(rx);
        }
        let t0 = Instant::now();
        let mut handles = Vec::new();
        let rounds = total / batch() as u64;
        // Task 0 starts the batch and counts completed rounds.
        let mut rx0 = rxs.remove(0);
        let tx1 = txs[1 % tasks].clone();
        handles.push(tokio::spawn(async move {
            let first: Vec<Boxed> =
                (0..batch() as u64).map(|i| Box::new(TestUint64(i)) as Boxed).collect();
            tx1.send(first).await.unwrap();
            let mut moved = 0u64;
            for r in 0..rounds {
                let batch = rx0.recv().await.unwrap();
                moved += batch.len() as u64;
                let next: Vec<Boxed> = batch
                    .into_iter()
                    .map(|b| {
                        Box::new(TestUint64(b.downcast::<TestUint64>().unwrap().0 + 1)) as Boxed
                    })
                    .collect();
                if r + 1 < rounds {
                    tx1.send(next).await.unwrap();
                } else {
                    black_box(next);
                }
            }
            moved
        }));
        for (k, mut rx) in rxs.into_iter().enumerate() {
            let i = k + 1;
            let tx = txs[(i + 1) % tasks].clone();
            handles.push(tokio::spawn(async move {
                let mut moved = 0u64;
                while let Some(batch) = rx.recv().await {
                    moved += batch.len() as u64;
                    let next: Vec<Boxed> = batch
                        .into_iter()
                        .map(|b| {
                            Box::new(TestUint64(b.downcast::<TestUint64>().unwrap().0 + 1)) as Boxed
                        })
                        .collect();
                    if tx.send(next).await.is_err() {
                        break;
                    }
                }
                moved
            }));
        }
        drop(txs);
        let moved0 = handles.remove(0).await.unwrap();
        let dt = t0.elapsed();
        for h in handles {
            h.abort();
        }
        // Every task moved about as many as task 0.
        (moved0 * tasks as u64) as f64 / dt.as_secs_f64()
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut events: u64 = 5_000_000;
    let mut runs = 5;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs R"),
            "--only" => only = args.next(),
            "--batch" => {
                BATCH.store(args.next().and_then(|v| v.parse().ok()).expect("--batch N"), Relaxed)
            }
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!("event loop throughput, one thread, batches of {}, median of {runs} runs", batch());
    println!("{:<52} {:>12} {:>12} {:>6}", "workload", "events/s", "baseline/s", "ratio");
    for (label, modules) in [("ping-pong (2 modules)", 2usize), ("ring of 10 modules", 10)] {
        // Tokens complete the ring `events / modules` times so every workload handles ~`events`.
        let total = events / modules as u64;
        let want = |w: &str| only.as_deref().is_none_or(|o| o == w);
        let measure = |w: &str, f: &dyn Fn() -> f64| {
            if want(w) {
                median((0..runs).map(|_| f()).collect())
            } else {
                f64::NAN
            }
        };
        let base = measure("baseline", &|| baseline_ring(modules, total));
        let tok = measure("tokio", &|| tokio_ring(modules, total));
        let sim = measure("sim", &|| sim_ring(modules, total, true));
        let sim_nd = measure("sim", &|| sim_ring(modules, total, false));
        let rec = measure("record", &|| tokio_ring_with(modules, total, true));
        println!(
            "{:<52} {:>12.0} {:>12.0} {:>6.2}",
            format!("tokio executor, {label}"),
            tok,
            base,
            tok / base
        );
        println!(
            "{:<52} {:>12.0} {:>12.0} {:>6.2}",
            format!("simulator, {label}"),
            sim,
            base,
            sim / base
        );
        println!(
            "{:<52} {:>12.0} {:>12.0} {:>6.2}",
            format!("simulator without digest, {label}"),
            sim_nd,
            base,
            sim_nd / base
        );
        let line = format!("tokio executor recording every event, {label}");
        println!(
            "{line:<52} {rec:>12.0} {base:>12.0} {:>6.2}  ({:.0}% of not recording)",
            rec / base,
            rec / tok * 100.0
        );
    }
}
