//! The production (tokio) executor: Mir's node tests and ours.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::{id, Collector, FnModule};
use mir_runtime::stdevents::{Init, TestString, TestUint64};
use mir_runtime::{
    ActiveModule, Activity, AlarmId, Batch, BuildError, ConfigError, Context, Event, Exit,
    InjectError, ModuleError, ModuleResult, Node, NodeConfig, NodeError, Outbox, PassiveModule,
};

fn ts(src: &str, dest: &str, s: &str) -> Event {
    Event::new(src, dest, TestString(s.into()))
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not reached in time");
}

// Mir: TestNode_Config.
#[test]
fn invalid_configuration_is_refused_with_a_clear_error() {
    let err = Node::builder("n")
        .config(NodeConfig { max_batch_size: 0, ..NodeConfig::default() })
        .passive("a", Collector::default())
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::Config(ConfigError::ZeroBatchSize));
    let err = Node::builder("n")
        .config(NodeConfig { pause_threshold: 5, resume_threshold: 10, ..NodeConfig::default() })
        .passive("a", Collector::default())
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("resume_threshold (10) must not exceed pause_threshold (5)"),
        "{err}"
    );
    assert_eq!(Node::builder("n").build().unwrap_err(), BuildError::NoModules);
    assert!(matches!(
        Node::builder("n").passive("a/b", Collector::default()).build(),
        Err(BuildError::NotTopLevel(_))
    ));
    assert!(matches!(
        Node::builder("n").passive("a b", Collector::default()).build(),
        Err(BuildError::BadId(_))
    ));
    assert!(matches!(
        Node::builder("n")
            .passive("a", Collector::default())
            .active("a", mir_runtime::stdmodules::Timer::new())
            .build(),
        Err(BuildError::DuplicateModule(_))
    ));
}

// Mir: TestNode_Run/InitEvents — one Init per module, addressed to it, in registration order.
#[tokio::test]
async fn every_module_gets_one_init_first_in_registration_order() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r1, r2) = (Collector::default(), Collector::default());
    let o1 = order.clone();
    let o2 = order.clone();
    let mut rec1 = r1.clone();
    let mut rec2 = r2.clone();
    let node = Node::builder("n0")
        .passive(
            "mock2",
            FnModule(move |ev: Event, out: &mut Outbox| {
                o2.lock().unwrap().push("mock2");
                rec2.apply_events_one(ev, out)
            }),
        )
        .passive(
            "mock1",
            FnModule(move |ev: Event, out: &mut Outbox| {
                o1.lock().unwrap().push("mock1");
                rec1.apply_events_one(ev, out)
            }),
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    wait_for(|| r1.count() == 1 && r2.count() == 1).await;
    h.stop();
    assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
    for (r, name) in [(&r1, "mock1"), (&r2, "mock2")] {
        let evs = r.events();
        assert_eq!(evs.len(), 1);
        assert!(evs[0].is::<Init>());
        assert_eq!(evs[0].dest.as_str(), name);
        assert_eq!(evs[0].src, mir_runtime::ModuleId::node());
    }
    assert_eq!(*order.lock().unwrap(), ["mock2", "mock1"]);
}

trait One {
    fn apply_events_one(&mut self, ev: Event, out: &mut Outbox) -> ModuleResult;
}
impl One for Collector {
    fn apply_events_one(&mut self, ev: Event, _out: &mut Outbox) -> ModuleResult {
        self.events.lock().unwrap().push(ev);
        Ok(())
    }
}

#[tokio::test]
async fn stop_before_run_returns_stopped_at_once() {
    let node = Node::builder("n0").passive("a", Collector::default()).build().unwrap();
    node.handle().stop();
    assert_eq!(node.run().await, Ok(Exit::Stopped));
}

#[tokio::test]
async fn injected_events_arrive_in_order_in_batches_of_at_most_max_batch_size() {
    let rec = Collector::default();
    let node = Node::builder("n0")
        .config(NodeConfig { max_batch_size: 7, ..NodeConfig::default() })
        .passive("rec", rec.clone())
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    let evs: Vec<Event> = (0..100).map(|i| Event::new("@node", "rec", TestUint64(i))).collect();
    h.inject(evs).await.unwrap();
    wait_for(|| rec.count() == 101).await;
    h.stop();
    run.await.unwrap().unwrap();
    let got: Vec<u64> =
        rec.events().iter().skip(1).map(|e| e.get::<TestUint64>().unwrap().0).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(rec.batches.lock().unwrap().iter().all(|b| *b <= 7));
    let stats = h.stats();
    let s = stats.module("rec").unwrap();
    assert_eq!(s.events_handled, 101);
    assert!(s.batches >= 101 / 7);
}

#[tokio::test]
async fn a_module_error_stops_the_node_naming_module_and_event() {
    let node = Node::builder("n0")
        .passive("ok", Collector::default())
        .passive(
            "bad",
            FnModule(
                |ev: Event, _out: &mut Outbox| {
                    if ev.is::<TestString>() {
                        Err(ModuleError::new("bye"))
                    } else {
                        Ok(())
                    }
                },
            ),
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject(vec![Event::new("@node", "bad", TestUint64(1)), ts("@node", "bad", "boom")])
        .await
        .unwrap();
    let err = run.await.unwrap().unwrap_err();
    // The failing event is the last of its batch (Init and the number may share the batch).
    let NodeError::ModuleFailed { node, module, activity: Activity::Event(e), error } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(node.as_str(), "n0");
    assert_eq!(module.as_str(), "bad");
    assert_eq!(e.type_name, "mir.TestString");
    assert_eq!(e.index, e.batch_len - 1);
    assert_eq!(error.0, "bye");
    assert_eq!(
        err.to_string(),
        format!("node n0: module bad failed while handling event mir.TestString (#{} of a batch of {}): bye", e.index, e.batch_len)
    );
    // The node is gone: injection reports it.
    assert_eq!(
        h.inject(vec![ts("@node", "ok", "late")]).await,
        Err(InjectError::NodeStopped("n0".into()))
    );
}

#[tokio::test]
async fn a_module_panic_stops_the_node_naming_module_and_event() {
    let node = Node::builder("n0")
        .passive(
            "bad",
            FnModule(|ev: Event, _out: &mut Outbox| {
                if let Some(TestString(s)) = ev.get::<TestString>() {
                    panic!("cannot handle {s}");
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject(vec![ts("@node", "bad", "this")]).await.unwrap();
    let err = run.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, NodeError::ModulePanicked { module, message, activity: Activity::Event(e), .. }
            if module.as_str() == "bad" && message == "cannot handle this" && e.type_name == "mir.TestString"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_event_for_a_missing_module_is_an_error_not_silently_dropped() {
    let node = Node::builder("n0")
        .passive(
            "a",
            FnModule(|ev: Event, out: &mut Outbox| {
                if ev.is::<Init>() {
                    out.send(&id("typo/3"), TestString("lost?".into()));
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let err = node.run().await.unwrap_err();
    assert!(
        matches!(&err, NodeError::UnknownDestination { top, src, .. } if top == "typo" && src.as_str() == "a"),
        "{err:?}"
    );
    assert!(err.to_string().contains("has no module \"typo\" (modules: a)"), "{err}");
}

#[tokio::test]
async fn injecting_for_a_missing_module_is_refused_and_the_node_goes_on() {
    let rec = Collector::default();
    let node = Node::builder("n0").passive("a", rec.clone()).build().unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    let err =
        h.inject(vec![ts("@node", "a", "fine"), ts("@node", "nope", "bad")]).await.unwrap_err();
    assert!(matches!(err, InjectError::UnknownDestination { ref top, .. } if top == "nope"));
    h.inject(vec![ts("@node", "a", "after")]).await.unwrap();
    wait_for(|| rec.count() == 2).await;
    h.stop();
    assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
    assert_eq!(rec.events()[1].get::<TestString>().unwrap().0, "after");
}

/// A module on a worker thread runs off the loop's thread and its output flows back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_modules_run_on_their_own_thread() {
    let rec = Collector::default();
    let node = Node::builder("n0")
        .passive_on_worker(
            "heavy",
            FnModule(|ev: Event, out: &mut Outbox| {
                if let Some(TestUint64(n)) = ev.get::<TestUint64>() {
                    let name = std::thread::current().name().unwrap_or("").to_owned();
                    out.send(&id("sink"), TestString(format!("{n}@{name}")));
                }
                Ok(())
            }),
        )
        .passive("sink", rec.clone())
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject((0..50).map(|i| Event::new("@node", "heavy", TestUint64(i))).collect()).await.unwrap();
    wait_for(|| rec.count() == 51).await;
    h.stop();
    run.await.unwrap().unwrap();
    let got: Vec<String> =
        rec.events().iter().skip(1).map(|e| e.get::<TestString>().unwrap().0.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("{i}@mir-n0-heavy")).collect();
    assert_eq!(got, expected, "in order, on the worker thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_module_error_stops_the_node() {
    let node = Node::builder("n0")
        .passive_on_worker(
            "heavy",
            FnModule(|ev: Event, _out: &mut Outbox| {
                if ev.is::<TestString>() {
                    return Err(ModuleError::new("bad batch"));
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject(vec![ts("@node", "heavy", "!")]).await.unwrap();
    let err = run.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, NodeError::ModuleFailed { module, .. } if module.as_str() == "heavy"),
        "{err:?}"
    );
}

/// An active module that, on each alarm, emits `burst` events to `consumer` and re-arms.
struct Blabber {
    burst: u64,
    period: Duration,
    submitted: Arc<AtomicU64>,
}

impl ActiveModule for Blabber {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                cx.set_alarm_after(self.period);
            }
        }
        Ok(())
    }
    fn on_alarm(&mut self, _alarm: AlarmId, cx: &mut Context<'_>) -> ModuleResult {
        for i in 0..self.burst {
            cx.send(&id("consumer"), TestUint64(i));
        }
        self.submitted.fetch_add(self.burst, Relaxed);
        cx.set_alarm_after(self.period);
        Ok(())
    }
}

/// A consumer that takes `per_event` per event.
struct Slow {
    per_event: Duration,
    consumed: Arc<AtomicU64>,
}

impl PassiveModule for Slow {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<TestUint64>() {
                std::thread::sleep(self.per_event);
                self.consumed.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }
}

// Mir: TestNode_Backpressure. An active module produces twice as fast as the consumer can go;
// the buffered amount stays bounded. Here the consumer runs on a worker thread, so the loop keeps
// running (Mir's worker-per-module design) and only back-pressure holds the producer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_active_module_output() {
    let cfg = NodeConfig {
        pause_threshold: 2048,
        resume_threshold: 1536,
        max_batch_size: 128,
        ..NodeConfig::default()
    };
    let burst = (cfg.pause_threshold / 10) as u64;
    let submitted = Arc::new(AtomicU64::new(0));
    let consumed = Arc::new(AtomicU64::new(0));
    let node = Node::builder("n0")
        .config(cfg.clone())
        .active(
            "blabber",
            Blabber { burst, period: Duration::from_millis(10), submitted: submitted.clone() },
        )
        // Input rate: burst/10ms = 20.4k/s; consumer: 10k/s.
        .passive_on_worker(
            "consumer",
            Slow { per_event: Duration::from_micros(100), consumed: consumed.clone() },
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    let bound = cfg.pause_threshold as u64 + cfg.max_batch_size as u64 + 2 * burst;
    let mut max_gap = 0;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let gap = submitted.load(Relaxed).saturating_sub(consumed.load(Relaxed));
        max_gap = max_gap.max(gap);
        assert!(gap <= bound, "submitted - consumed = {gap} exceeds the bound {bound}");
    }
    h.stop();
    assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
    let stats = h.stats();
    assert!(stats.pauses > 0, "input should have been paused at least once: {stats:?}");
    assert!(consumed.load(Relaxed) > 0);
    eprintln!("max gap {max_gap} (bound {bound}), pauses {}", stats.pauses);
}

// Injection from outside is bounded too: a thread injecting as fast as it can never gets more
// than the bound ahead of a slow consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_bounds_injected_events() {
    let cfg = NodeConfig {
        pause_threshold: 1000,
        resume_threshold: 500,
        max_batch_size: 50,
        inject_capacity: 4,
        ..NodeConfig::default()
    };
    let consumed = Arc::new(AtomicU64::new(0));
    let node = Node::builder("n0")
        .config(cfg.clone())
        .passive_on_worker(
            "consumer",
            Slow { per_event: Duration::from_micros(50), consumed: consumed.clone() },
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    let bound = (cfg.pause_threshold + (cfg.inject_capacity + 2) * cfg.max_batch_size) as u64;
    let sink = h.sink();
    let c = consumed.clone();
    let producer = std::thread::spawn(move || {
        let mut submitted = 0u64;
        let mut max_gap = 0;
        while submitted < 20_000 {
            let evs: Vec<Event> =
                (0..100).map(|i| Event::new("@node", "consumer", TestUint64(i))).collect();
            sink.blocking_inject(evs).unwrap();
            submitted += 100;
            let gap = submitted - c.load(Relaxed);
            max_gap = max_gap.max(gap);
            assert!(gap <= bound, "submitted - consumed = {gap} exceeds the bound {bound}");
        }
        max_gap
    });
    let max_gap = tokio::task::spawn_blocking(move || producer.join().unwrap()).await.unwrap();
    h.stop();
    run.await.unwrap().unwrap();
    eprintln!("max gap {max_gap} (bound {bound})");
    assert!(
        max_gap > cfg.pause_threshold as u64 / 2,
        "the producer should have run ahead: {max_gap}"
    );
}

#[tokio::test]
async fn try_inject_reports_full_instead_of_waiting() {
    let cfg = NodeConfig { inject_capacity: 1, max_batch_size: 4, ..NodeConfig::default() };
    let node = Node::builder("n0").config(cfg).passive("a", Collector::default()).build().unwrap();
    let h = node.handle();
    // Not running: the channel fills.
    h.try_inject(vec![ts("@node", "a", "1")]).unwrap();
    assert_eq!(h.try_inject(vec![ts("@node", "a", "2")]), Err(InjectError::Full("n0".into())));
    drop(node);
    assert_eq!(
        h.try_inject(vec![ts("@node", "a", "3")]),
        Err(InjectError::NodeStopped("n0".into()))
    );
}

#[tokio::test]
async fn stats_are_structured_and_count_busy_time() {
    let node = Node::builder("n0")
        .passive(
            "slow",
            FnModule(|ev: Event, _out: &mut Outbox| {
                if ev.is::<TestUint64>() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject(vec![Event::new("@node", "slow", TestUint64(1))]).await.unwrap();
    wait_for(|| h.stats().module("slow").unwrap().events_handled == 2).await;
    let s = h.stats();
    assert!(s.module("slow").unwrap().busy >= Duration::from_millis(2));
    assert_eq!(s.buffered, 0);
    s.log();
    h.stop();
    run.await.unwrap().unwrap();
}
