//! The factory module: Mir's TestFactoryModule 00–07, plus early-message buffering, bounds and
//! determinism.

mod common;

use std::sync::atomic::Ordering::Relaxed;

use common::id;
use mir_runtime::stdevents::{
    GarbageCollect, Init, Message, MessageReceived, NewSubmodule, TestString, TestUint64,
};
use mir_runtime::stdmodules::Factory;
use mir_runtime::testing::apply;
use mir_runtime::{Batch, Event, ModuleError, ModuleResult, Outbox, PassiveModule, Payload};

/// Mir's echo module: answers Init with "<id> Init" and TestString(v) with prefix+v, to the factory.
struct Echo {
    prefix: String,
}

impl PassiveModule for Echo {
    fn accepts_messages(&self) -> bool {
        true
    }
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            let reply = if ev.is::<Init>() {
                format!("{} Init", out.me())
            } else if let Some(TestString(s)) = ev.get::<TestString>() {
                format!("{}{s}", self.prefix)
            } else if let Some(m) = ev.get::<MessageReceived>() {
                let TestString(s) =
                    m.message.payload.decode::<TestString>().map_err(ModuleError::new)?.unwrap();
                format!("{}msg {s}", self.prefix)
            } else {
                return Err(ModuleError::unexpected_event(&ev));
            };
            out.send(&id("echoFactory"), TestString(reply));
        }
        Ok(())
    }
}

fn factory() -> Factory {
    Factory::new(|_id, params| {
        let TestString(prefix) = params
            .decode::<TestString>()
            .map_err(ModuleError::new)?
            .ok_or_else(|| ModuleError::new("params"))?;
        Ok(Box::new(Echo { prefix }) as Box<dyn PassiveModule>)
    })
}

fn new_sub(i: u64) -> Event {
    Event::new(
        "test",
        "echoFactory",
        NewSubmodule {
            id: id(&format!("echoFactory/inst{i}")),
            params: Payload::new(TestString(format!("Inst {i}: "))),
            retention_index: i,
        },
    )
}

fn strings(evs: &[Event]) -> Vec<String> {
    evs.iter().map(|e| e.get::<TestString>().unwrap().0.clone()).collect()
}

fn run(f: &mut Factory, evs: Vec<Event>) -> Result<Vec<Event>, ModuleError> {
    apply(f, id("echoFactory"), evs)
}

#[test]
fn mir_factory_module_00_to_07() {
    let mut f = factory();
    let _ =
        run(&mut f, vec![Event::new(mir_runtime::ModuleId::node(), "echoFactory", Init)]).unwrap();

    // 00 Instantiate.
    let out = run(&mut f, vec![new_sub(0)]).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest.as_str(), "echoFactory");
    assert_eq!(out[0].src.as_str(), "echoFactory/inst0");
    assert_eq!(strings(&out), ["echoFactory/inst0 Init"]);

    // 01 Invoke.
    let out = run(&mut f, vec![Event::new("test", "echoFactory/inst0", TestString("Hi!".into()))])
        .unwrap();
    assert_eq!(strings(&out), ["Inst 0: Hi!"]);

    // 02 Instantiate many.
    let out = run(&mut f, (1..=5).map(new_sub).collect()).unwrap();
    assert_eq!(
        strings(&out),
        (1..=5).map(|i| format!("echoFactory/inst{i} Init")).collect::<Vec<_>>()
    );

    // 03 Invoke many (in reverse order): the output order is the input order — no sorting needed.
    let evs = (0..=5)
        .rev()
        .map(|i| {
            Event::new("test", format!("echoFactory/inst{i}").as_str(), TestString("Hi!".into()))
        })
        .collect();
    let out = run(&mut f, evs).unwrap();
    assert_eq!(strings(&out), (0..=5).rev().map(|i| format!("Inst {i}: Hi!")).collect::<Vec<_>>());

    // 04 Wrong event type for the factory itself: an error.
    let err = run(&mut f, vec![Event::new("test", "echoFactory", TestUint64(0))]).unwrap_err();
    assert_eq!(err.0, "unexpected event type mir.TestUint64 from test");

    // 05 Wrong submodule ID: no error, no output, counted.
    let out =
        run(&mut f, vec![Event::new("test", "echoFactory/non-existent-module", TestUint64(0))])
            .unwrap();
    assert!(out.is_empty());
    assert_eq!(f.stats().dropped.load(Relaxed), 1);

    // 06 Garbage-collect some.
    let out =
        run(&mut f, vec![Event::new("test", "echoFactory", GarbageCollect { retention_index: 3 })])
            .unwrap();
    assert!(out.is_empty());
    assert_eq!(f.submodules().len(), 3);
    assert_eq!(f.stats().collected.load(Relaxed), 3);

    // 07 Invoke garbage-collected: only inst3–inst5 answer; the others are dropped and counted.
    let evs = (0..=5)
        .map(|i| {
            Event::new("test", format!("echoFactory/inst{i}").as_str(), TestString("Hi!".into()))
        })
        .collect();
    let out = run(&mut f, evs).unwrap();
    assert_eq!(strings(&out), ["Inst 3: Hi!", "Inst 4: Hi!", "Inst 5: Hi!"]);
    assert_eq!(f.stats().dropped.load(Relaxed), 4);

    // A request below the GC index is ignored.
    let out = run(&mut f, vec![new_sub(1)]).unwrap();
    assert!(out.is_empty());
    assert_eq!(f.stats().stale_requests.load(Relaxed), 1);
}

fn msg(from: &str, to: &str, s: &str) -> Event {
    Event::new(
        "net",
        to,
        MessageReceived {
            from: from.into(),
            message: Message::new(
                to,
                Payload::encoded(
                    "mir.TestString",
                    mir_runtime::codec::encode(&TestString(s.into())),
                ),
            ),
        },
    )
}

#[test]
fn early_messages_wait_for_their_submodule_in_arrival_order() {
    let mut f = factory();
    // Messages for inst7 from two senders arrive before inst7 exists; a message for inst8 too.
    let out = run(
        &mut f,
        vec![
            msg("a", "echoFactory/inst7", "1"),
            msg("b", "echoFactory/inst7/deep", "2"),
            msg("a", "echoFactory/inst8", "x"),
            msg("a", "echoFactory/inst7", "3"),
        ],
    )
    .unwrap();
    assert!(out.is_empty());
    let out = run(&mut f, vec![new_sub(7)]).unwrap();
    assert_eq!(
        strings(&out),
        ["echoFactory/inst7 Init", "Inst 7: msg 1", "Inst 7: msg 2", "Inst 7: msg 3"]
    );
    // inst8's message is still kept.
    let out = run(&mut f, vec![new_sub(8)]).unwrap();
    assert_eq!(strings(&out), ["echoFactory/inst8 Init", "Inst 8: msg x"]);
}

#[test]
fn early_message_buffer_is_bounded_per_sender() {
    let mut f = factory().max_early_per_sender(3);
    let mut evs: Vec<Event> =
        (0..10).map(|i| msg("flooder", "echoFactory/inst1", &format!("f{i}"))).collect();
    evs.push(msg("honest", "echoFactory/inst1", "h"));
    run(&mut f, evs).unwrap();
    assert_eq!(f.stats().evicted.load(Relaxed), 7);
    let out = run(&mut f, vec![new_sub(1)]).unwrap();
    // The flooder keeps only its newest 3; the honest sender's message survives.
    assert_eq!(
        strings(&out),
        [
            "echoFactory/inst1 Init",
            "Inst 1: msg f7",
            "Inst 1: msg f8",
            "Inst 1: msg f9",
            "Inst 1: msg h"
        ]
    );
}

#[test]
fn early_message_buffer_is_bounded_per_sender_in_bytes() {
    // Each message's canonical encoding: sender, module, type name and a 1000-byte string.
    let big = |from: &str, i: usize| {
        msg(from, "echoFactory/inst1", &format!("{i:04}{}", "x".repeat(996)))
    };
    let size = big("flooder", 0).payload.encode_value().len();
    let mut f = factory().max_early_bytes_per_sender(3 * size);
    let mut evs: Vec<Event> = (0..10).map(|i| big("flooder", i)).collect();
    evs.push(msg("honest", "echoFactory/inst1", "h"));
    // One message larger than the whole budget: dropped at once.
    evs.push(msg("flooder", "echoFactory/inst1", &"y".repeat(4 * size)));
    run(&mut f, evs).unwrap();
    assert_eq!(f.stats().evicted.load(Relaxed), 8);
    let out = run(&mut f, vec![new_sub(1)]).unwrap();
    let got = strings(&out);
    assert_eq!(got.len(), 5, "Init, the flooder's newest 3, the honest one");
    assert!(got[1].starts_with("Inst 1: msg 0007"), "{}", &got[1][..20]);
    assert_eq!(got[4], "Inst 1: msg h");
}

#[test]
fn bad_requests_are_errors_naming_the_submodule() {
    let mut f = factory();
    let dup = run(&mut f, vec![new_sub(1), new_sub(1)]).unwrap_err();
    assert!(dup.0.contains("already exists"), "{dup}");
    let mut f = factory();
    let bad = Event::new(
        "t",
        "echoFactory",
        NewSubmodule {
            id: id("echoFactory/a/b"),
            params: Payload::new(TestString("".into())),
            retention_index: 0,
        },
    );
    assert!(run(&mut f, vec![bad]).unwrap_err().0.contains("one segment"));
    let mut f = factory();
    run(&mut f, vec![new_sub(1)]).unwrap();
    let err = run(&mut f, vec![Event::new("t", "echoFactory/inst1", TestUint64(5))]).unwrap_err();
    assert_eq!(err.0, "submodule echoFactory/inst1 failed while handling event mir.TestUint64 (#0 of 1): unexpected event type mir.TestUint64 from t");
}

/// Counts its timer's ticks (a `TimerRepeat` every 10 ms set at `Init`) in a shared map.
struct Ticker {
    ticks: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl PassiveModule for Ticker {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                let me = out.me().clone();
                let tick = Event::new(me.clone(), me, TestString("tick".into()));
                let timer = mir_runtime::stdmodules::TimerHandle::new(id("timer"));
                timer.repeat(out, None, std::time::Duration::from_millis(10), u64::MAX, vec![tick]);
            } else {
                *self.ticks.lock().unwrap().entry(out.me().to_string()).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// With `cancel_timers_at`, a garbage-collected submodule's periodic timer stops; without it, it
/// keeps firing into the factory, which drops each tick (counted).
#[test]
fn garbage_collected_submodules_timers_stop_with_cancel_timers_at() {
    use mir_runtime::sim::{SimConfig, Simulation};
    use mir_runtime::stdmodules::Timer;
    use mir_runtime::Node;
    use std::time::Duration;
    for cancel in [true, false] {
        let ticks = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
        let t = ticks.clone();
        let mut f = Factory::of(move |_id, _p: TestUint64| Ok(Ticker { ticks: t.clone() }));
        if cancel {
            f = f.cancel_timers_at(id("timer"));
        }
        let stats = f.stats();
        let node = Node::builder("0").passive("f", f).active("timer", Timer::new());
        let mut sim = Simulation::new(SimConfig::with_seed(1));
        sim.add_node(node).unwrap();
        let new = |i: u64| {
            let params = Payload::new(TestUint64(i));
            Event::new(
                "@node",
                "f",
                NewSubmodule { id: id(&format!("f/{i}")), params, retention_index: i },
            )
        };
        sim.inject(&"0".into(), vec![new(1), new(5)]).unwrap();
        sim.run_for(Duration::from_millis(105)).unwrap();
        sim.inject(
            &"0".into(),
            vec![Event::new("@node", "f", GarbageCollect { retention_index: 3 })],
        )
        .unwrap();
        sim.run_for(Duration::from_millis(1)).unwrap();
        let before = ticks.lock().unwrap().clone();
        let dropped = stats.dropped.load(Relaxed);
        sim.run_for(Duration::from_millis(100)).unwrap();
        let after = ticks.lock().unwrap().clone();
        assert_eq!(before["f/1"], 10);
        assert_eq!(after["f/1"], 10, "a removed submodule handles nothing");
        assert_eq!(after["f/5"], before["f/5"] + 10, "the kept one ticks on");
        let late = stats.dropped.load(Relaxed) - dropped;
        assert_eq!(late, if cancel { 0 } else { 10 }, "cancel_timers_at: {cancel}");
    }
}
