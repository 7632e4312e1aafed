//! What the DSL costs: the same module logic written by hand and with `#[protocol]`, on the same
//! workload in the same run (a ring of modules passing tokens through the production executor,
//! one thread). Reports time per event for both and the DSL's overhead.
//!
//! Run: `cargo bench -p mir-dsl --bench dsl_overhead` (options: `-- --events N --runs R`).

use std::hint::black_box;
use std::time::Instant;

use mir_dsl::mir_runtime::stdevents::{Init, TestUint64};
use mir_dsl::mir_runtime::{
    Batch, ModuleId, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule,
};
use mir_dsl::{protocol, Ctx, DslModule, Handled};

const BATCH: u64 = 512;

// ---- by hand ----

struct Head {
    next: ModuleId,
    total: u64,
    sent: u64,
    back: u64,
    done: Option<std::sync::mpsc::Sender<()>>,
}

impl Head {
    fn start(&mut self, mut send: impl FnMut(&ModuleId, TestUint64)) {
        for _ in 0..BATCH {
            send(&self.next, TestUint64(self.sent));
            self.sent += 1;
        }
    }

    fn back(&mut self, v: u64, mut send: impl FnMut(&ModuleId, TestUint64)) {
        black_box(v);
        self.back += 1;
        if self.sent < self.total {
            send(&self.next, TestUint64(self.sent));
            self.sent += 1;
        } else if self.back == self.total {
            if let Some(d) = self.done.take() {
                let _ = d.send(());
            }
        }
    }
}

impl PassiveModule for Head {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                self.start(|d, p| out.send(d, p));
            } else if let Some(TestUint64(v)) = ev.get::<TestUint64>() {
                self.back(*v, |d, p| out.send(d, p));
            }
        }
        Ok(())
    }
}

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

// ---- in the DSL ----

struct DslHead(Head);

#[protocol]
impl DslHead {
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
        self.0.start(|d, p| ctx.emit(d, p));
        Ok(())
    }

    #[upon(event)]
    fn token(&mut self, ctx: &mut Ctx<Self>, t: TestUint64) -> Handled {
        self.0.back(t.0, |d, p| ctx.emit(d, p));
        Ok(())
    }
}

struct DslHop {
    next: ModuleId,
}

#[protocol]
impl DslHop {
    #[upon(event)]
    fn token(&mut self, ctx: &mut Ctx<Self>, t: TestUint64) -> Handled {
        ctx.emit(&self.next, TestUint64(t.0 + 1));
        Ok(())
    }
}

fn ring(dsl: bool, modules: usize, total: u64, done: std::sync::mpsc::Sender<()>) -> NodeBuilder {
    let name = |i: usize| format!("m{i}");
    let next = |i: usize| ModuleId::new(&name((i + 1) % modules));
    let head = Head { next: next(0), total, sent: 0, back: 0, done: Some(done) };
    let mut b = Node::builder("0");
    b = if dsl {
        b.passive(&name(0), DslModule::new(DslHead(head)))
    } else {
        b.passive(&name(0), head)
    };
    for i in 1..modules {
        b = if dsl {
            b.passive(&name(i), DslModule::new(DslHop { next: next(i) }))
        } else {
            b.passive(&name(i), Hop { next: next(i) })
        };
    }
    b
}

/// Nanoseconds per event handled.
fn ns_per_event(dsl: bool, modules: usize, total: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let node = ring(dsl, modules, total, tx).build().unwrap();
    let h = node.handle();
    rt.block_on(async move {
        let t0 = Instant::now();
        let run = tokio::spawn(node.run());
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
        dt.as_nanos() as f64 / events as f64
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut events: u64 = 4_000_000;
    let mut runs = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().and_then(|v| v.parse().ok()).expect("--events N"),
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs R"),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!("DSL overhead: same logic by hand and in #[protocol], tokio executor, one thread, median of {runs} runs");
    println!("{:<24} {:>12} {:>12} {:>10}", "workload", "hand ns/ev", "DSL ns/ev", "overhead");
    for (label, modules) in [("ping-pong (2 modules)", 2usize), ("ring of 10 modules", 10)] {
        let total = events / modules as u64;
        // Interleave the two so machine noise hits both alike.
        let (mut hand, mut dsl) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            hand.push(ns_per_event(false, modules, total));
            dsl.push(ns_per_event(true, modules, total));
        }
        let (h, d) = (median(hand), median(dsl));
        println!("{:<24} {:>12.2} {:>12.2} {:>9.1}%", label, h, d, (d / h - 1.0) * 100.0);
    }
}
