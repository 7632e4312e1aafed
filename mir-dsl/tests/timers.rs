//! Timers from handlers (`ctx.after`, `ctx.every`, `ctx.cancel`), request cancellation, sends to
//! owned node lists, and typed factories, in both executors.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::crypto::{SignRequest, SignResult};
use mir_runtime::stdevents::{NewSubmodule, TestString, TestUint64};
use mir_runtime::stdmodules::{TestCrypto, Timer};
use mir_runtime::{Event, Node};

/// A heartbeat every `period`, stopped by a one-shot after `stop_after`; a second one-shot is
/// cancelled at once and must never fire.
struct Beat {
    period: Duration,
    stop_after: Duration,
    beat: Option<TimerId>,
    beats: Arc<AtomicU64>,
    never: Arc<AtomicU64>,
    stopped: Arc<AtomicU64>,
}

fn timer() -> ModuleId {
    ModuleId::new("timer")
}

#[protocol]
impl Beat {
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        self.beat = Some(ctx.every(&timer(), self.period, TestUint64(1)));
        ctx.after(&timer(), self.stop_after, TestUint64(0));
        let never = ctx.after(&timer(), self.period, TestString("never".into()));
        ctx.cancel(&timer(), never);
        Ok(())
    }

    #[upon(event)]
    fn tick(&mut self, ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
        match (n.0, self.beat.take()) {
            (1, beat) => {
                self.beat = beat;
                self.beats.fetch_add(1, Relaxed);
            }
            (_, Some(beat)) => {
                ctx.cancel(&timer(), beat);
                self.stopped.fetch_add(1, Relaxed);
            }
            (_, None) => fatal!("stopped twice"),
        }
        Ok(())
    }

    #[upon(event)]
    fn never(&mut self, _ctx: &mut Ctx<Self>, _s: TestString) -> Handled {
        self.never.fetch_add(1, Relaxed);
        Ok(())
    }
}

struct Counters {
    beats: Arc<AtomicU64>,
    never: Arc<AtomicU64>,
    stopped: Arc<AtomicU64>,
}

fn beat(period: Duration, stop_after: Duration) -> (Beat, Counters) {
    let c = Counters { beats: Arc::default(), never: Arc::default(), stopped: Arc::default() };
    let b = Beat {
        period,
        stop_after,
        beat: None,
        beats: c.beats.clone(),
        never: c.never.clone(),
        stopped: c.stopped.clone(),
    };
    (b, c)
}

#[test]
fn every_after_and_cancel_in_the_simulator() {
    let (b, c) = beat(Duration::from_millis(100), Duration::from_millis(950));
    let mut sim = Simulation::new(SimConfig::with_seed(7));
    sim.add_node(
        Node::builder("0").passive("beat", DslModule::new(b)).active("timer", Timer::new()),
    )
    .unwrap();
    // The run ends only because the repeating timer was cancelled.
    sim.run_until_idle(Duration::from_secs(60)).unwrap();
    assert_eq!(c.beats.load(Relaxed), 9, "beats at 100, 200, …, 900 ms");
    assert_eq!(c.stopped.load(Relaxed), 1);
    assert_eq!(c.never.load(Relaxed), 0, "a cancelled one-shot never fires");
    assert!(sim.now().since_start() < Duration::from_secs(2));
}

#[tokio::test(flavor = "current_thread")]
async fn every_after_and_cancel_on_the_production_executor() {
    let (b, c) = beat(Duration::from_millis(10), Duration::from_millis(55));
    let node = Node::builder("0")
        .passive("beat", DslModule::new(b))
        .active("timer", Timer::new())
        .build()
        .unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    while c.stopped.load(Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_stop = c.beats.load(Relaxed);
    // Ten more periods: a cancelled repeating timer stays silent.
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.stop();
    run.await.unwrap().unwrap();
    assert!(at_stop >= 1, "the heartbeat beat before the stop");
    assert!(c.beats.load(Relaxed) <= at_stop + 1, "at most one beat already on its way at cancel");
    assert_eq!(c.never.load(Relaxed), 0);
}

/// Asks for a signature, then gives up on it; the late response is dropped, not handled.
struct GiveUp {
    handled: Arc<AtomicU64>,
    peers: Vec<NodeId>,
}

#[derive(Debug)]
struct Asked;

#[protocol]
impl GiveUp {
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        let id =
            ctx.request(&ModuleId::new("crypto"), SignRequest::new(vec![b"x".to_vec()]), Asked);
        assert_eq!(ctx.pending_requests(), 1);
        assert!(ctx.cancel_request(id));
        assert!(!ctx.cancel_request(id), "a second cancel finds nothing");
        assert_eq!(ctx.pending_requests(), 0);
        // An owned list of node IDs is accepted as destinations.
        ctx.send(&ModuleId::new("net"), self.peers.clone(), TestUint64(3));
        Ok(())
    }

    #[upon(response)]
    fn signed(&mut self, _ctx: &mut Ctx<Self>, _res: SignResult, _c: Asked) -> Handled {
        self.handled.fetch_add(1, Relaxed);
        Ok(())
    }
}

#[test]
fn a_cancelled_request_releases_its_continuation_and_drops_its_response() {
    let handled = Arc::new(AtomicU64::new(0));
    let m = DslModule::new(GiveUp { handled: handled.clone(), peers: vec![NodeId::new("0")] });
    let stats = m.stats();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(
        Node::builder("0")
            .passive("giveup", m)
            .passive("crypto", TestCrypto::new(NodeId::new("0"), 1)),
    )
    .unwrap();
    sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(handled.load(Relaxed), 0, "the response to a cancelled request reaches no handler");
    assert_eq!(stats.ignored(), 1, "it is dropped and counted");
}

/// A typed factory: the generator gets its parameters decoded; parameters of another type are a
/// clear error.
#[test]
fn a_typed_factory_decodes_its_parameters() {
    let made = Arc::new(AtomicU64::new(0));
    let m = made.clone();
    let factory = Factory::of(move |_id, n: TestUint64| {
        m.fetch_add(n.0, Relaxed);
        Ok(mir_runtime::stdmodules::NullModule)
    });
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(Node::builder("0").passive("f", factory)).unwrap();
    let new = |sub: &str, params: mir_runtime::Payload| {
        Event::new(
            "@node",
            "f",
            NewSubmodule { id: ModuleId::new(sub), params, retention_index: 0 },
        )
    };
    sim.inject(&NodeId::new("0"), vec![new("f/1", TestUint64(5).into())]).unwrap();
    sim.run_until_idle(Duration::from_secs(1)).unwrap();
    assert_eq!(made.load(Relaxed), 5);
    sim.inject(&NodeId::new("0"), vec![new("f/2", TestString("x".into()).into())]).unwrap();
    let err = sim.run_until_idle(Duration::from_secs(1)).unwrap_err().to_string();
    assert!(err.contains("parameters must be mir.TestUint64, got mir.TestString"), "{err}");
}
