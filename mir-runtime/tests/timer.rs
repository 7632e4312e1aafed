//! The timer, in both executors: delay, repeat (first after one period), cancel, garbage
//! collection. In the simulator times are exact; on tokio only the order is checked (timing is
//! for benchmarks, not unit tests).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{id, FnModule};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::{Init, TestString, TimerId};
use mir_runtime::stdmodules::{Timer, TimerHandle};
use mir_runtime::{ActiveModule, Batch, Context, Event, ModuleResult, Node, Outbox, Time};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn tick(s: &str) -> Event {
    Event::new("app", "app", TestString(s.into()))
}

/// Records each TestString it gets with the time it got it (read from a clock probe module).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, Time)>>>);

/// A tiny active module whose only job is to stamp events with the executor's time.
struct Stamp(Log);
impl ActiveModule for Stamp {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        for ev in events {
            if let Some(TestString(s)) = ev.get::<TestString>() {
                self.0 .0.lock().unwrap().push((s.clone(), cx.now()));
            }
        }
        Ok(())
    }
}

/// The application: on Init sets up the timers of `script`, and reacts to "stop-x" ticks.
fn app(
    script: fn(&TimerHandle, &mut Outbox),
) -> FnModule<impl FnMut(Event, &mut Outbox) -> ModuleResult + Send> {
    let timer = TimerHandle::new(id("timer"));
    FnModule(move |ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            script(&timer, out);
        } else if let Some(TestString(s)) = ev.get::<TestString>() {
            out.send(&id("stamp"), TestString(s.clone()));
            if s == "cancel-r" {
                timer.cancel(out, TimerId(1));
            }
            if s == "gc" {
                timer.garbage_collect(out, 5);
            }
        }
        Ok(())
    })
}

fn script(timer: &TimerHandle, out: &mut Outbox) {
    // Everything has retention index 10 except "low" (3) and "high" (9); "gc" collects below 5.
    timer.delay(out, None, ms(50), 10, vec![tick("d50")]);
    timer.repeat(out, Some(TimerId(1)), ms(100), 10, vec![tick("r")]);
    timer.delay(out, None, ms(350), 10, vec![tick("cancel-r")]);
    timer.delay(out, Some(TimerId(2)), ms(120), 10, vec![tick("never")]);
    timer.cancel(out, TimerId(2));
    timer.repeat(out, None, ms(90), 3, vec![tick("low")]);
    timer.repeat(out, None, ms(95), 9, vec![tick("high")]);
    timer.delay(out, None, ms(200), 10, vec![tick("gc")]);
    timer.delay(out, None, ms(400), 10, vec![tick("end")]);
}

fn in_sim(seed: u64) -> Vec<(String, Time)> {
    let log = Log::default();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    sim.add_node(
        Node::builder("0")
            .passive("app", app(script))
            .active("timer", Timer::new())
            .active("stamp", Stamp(log.clone())),
    )
    .unwrap();
    sim.run_for(ms(400)).unwrap();
    let v = log.0.lock().unwrap().clone();
    v
}

#[test]
fn timer_semantics_in_the_simulator_are_exact() {
    let got = in_sim(1);
    let at = |s: &str| -> Vec<u64> {
        got.iter()
            .filter(|(n, _)| n == s)
            .map(|(_, t)| t.since_start().as_millis() as u64)
            .collect()
    };
    assert_eq!(at("d50"), [50]);
    // First repeat after one period, no drift, cancelled at 350.
    assert_eq!(at("r"), [100, 200, 300]);
    assert!(at("never").is_empty(), "cancelled before it fired");
    // Garbage collection at 200 removes retention 3 but keeps retention 9.
    assert_eq!(at("low"), [90, 180]);
    assert_eq!(at("high"), [95, 190, 285, 380]);
    assert_eq!(at("end"), [400]);
    assert_eq!(got, in_sim(1), "deterministic");
    assert_eq!(got, in_sim(2), "the timer does not depend on the seed");
}

#[tokio::test]
async fn timer_semantics_on_tokio_match_in_order() {
    let log = Log::default();
    let node = Node::builder("0")
        .passive("app", app(script))
        .active("timer", Timer::new())
        .active("stamp", Stamp(log.clone()))
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    for i in 0.. {
        assert!(i < 500, "\"end\" did not fire within 10 s");
        tokio::time::sleep(ms(20)).await;
        if log.0.lock().unwrap().iter().any(|(s, _)| s == "end") {
            break;
        }
    }
    h.stop();
    run.await.unwrap().unwrap();
    let got = log.0.lock().unwrap().clone();
    // Events are due at distinct times, so the order is the simulator's, up to "end".
    let sim: Vec<String> = in_sim(1).into_iter().map(|(s, _)| s).collect();
    let real: Vec<String> = got
        .iter()
        .map(|(s, _)| s.clone())
        .take_while(|s| s != "end")
        .chain(["end".to_owned()])
        .collect();
    assert_eq!(real, sim);
    // And nothing fired before it was due (the first repeat waits one period).
    for (s, t) in &got {
        let due = match s.as_str() {
            "d50" => 50,
            "r" => 100,
            "low" => 90,
            "high" => 95,
            "gc" => 200,
            "cancel-r" => 350,
            "end" => 400,
            other => panic!("{other} fired"),
        };
        assert!(t.since_start() >= ms(due), "{s} at {t:?} before {due} ms");
    }
}

#[test]
fn zero_period_is_a_bug_of_the_requester() {
    let mut sim = Simulation::new(SimConfig::default());
    sim.add_node(
        Node::builder("0")
            .passive("app", app(|t, out| t.repeat(out, None, Duration::ZERO, 0, vec![])))
            .active("timer", Timer::new()),
    )
    .unwrap();
    let err = sim.run_until_idle(ms(10)).unwrap_err();
    assert!(err.to_string().contains("zero period"), "{err}");
}

#[test]
fn a_module_cancels_only_its_submodules_timers() {
    use mir_runtime::stdevents::TimerCancelModules;
    let mut sim = Simulation::new(SimConfig::default());
    let cancel_other = |_t: &TimerHandle, out: &mut Outbox| {
        let modules = vec![mir_runtime::ModuleId::new("other/1")];
        out.send(&mir_runtime::ModuleId::new("timer"), TimerCancelModules { modules });
    };
    sim.add_node(
        Node::builder("0").passive("app", app(cancel_other)).active("timer", Timer::new()),
    )
    .unwrap();
    let err = sim.run_until_idle(ms(10)).unwrap_err();
    assert!(err.to_string().contains("not one of its submodules"), "{err}");
}
