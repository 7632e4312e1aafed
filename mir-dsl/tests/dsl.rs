//! Mir's DSL table tests (TestDslModule_ApplyEvents, TestDslModule_ContextRecoveryAndCleanup)
//! and ours: handler order, conditions, the two kinds of failure, continuations, parts.

use mir_dsl::mir_runtime::stdevents::crypto::{Origin, SignRequest, SignResult};
use mir_dsl::mir_runtime::stdevents::{Init, Message, MessageReceived, TestString, TestUint64};
use mir_dsl::mir_runtime::testing::apply;
use mir_dsl::mir_runtime::{Event, ModuleError, ModuleId, NodeId, Payload};
use mir_dsl::{fatal, ignore, protocol, Ctx, DslModule, Handled};

fn id(s: &str) -> ModuleId {
    ModuleId::new(s)
}

fn run<P: mir_dsl::Protocol>(
    m: &mut DslModule<P>,
    evs: Vec<Event>,
) -> Result<Vec<Event>, ModuleError> {
    apply(m, id("test"), evs)
}

fn strings(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .map(|e| match (e.get::<TestString>(), e.get::<TestUint64>()) {
            (Some(s), _) => s.0.clone(),
            (_, Some(n)) => n.0.to_string(),
            _ => e.name().to_owned(),
        })
        .collect()
}

fn s(v: &str) -> Event {
    Event::new("other", "test", TestString(v.into()))
}

fn u(v: u64) -> Event {
    Event::new("other", "test", TestUint64(v))
}

/// Mir's test module: replies to "hello", errors on "bye", echoes small numbers, reports
/// cumulative sums after batches, fails a condition on "too much".
#[derive(Default)]
struct TestModule {
    strings: u64,
    sum: u64,
    reported: u64,
    too_much: bool,
    order: Vec<&'static str>,
}

#[protocol]
impl TestModule {
    #[upon(event)]
    fn on_string(&mut self, ctx: &mut Ctx<Self>, v: TestString) -> Handled {
        self.order.push("first");
        self.strings += 1;
        match v.0.as_str() {
            "hello" => {
                ctx.emit(&id("other"), TestString("world".into()));
                ctx.emit(&id("other"), TestUint64(42));
            }
            "bye" => fatal!("bye"),
            "too much" => self.too_much = true,
            "bad input" => ignore!("a peer sent nonsense"),
            _ => {}
        }
        Ok(())
    }

    #[upon(event)]
    fn on_string_again(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled {
        self.order.push("second");
        Ok(())
    }

    #[upon(event)]
    fn on_uint(&mut self, ctx: &mut Ctx<Self>, v: TestUint64) -> Handled {
        if v.0 < 100 {
            ctx.emit(&id("other"), TestUint64(v.0));
        }
        self.sum += v.0;
        Ok(())
    }

    #[upon(condition)]
    fn too_much(&mut self, _ctx: &mut Ctx<Self>) -> Handled {
        if self.too_much {
            fatal!("too much");
        }
        Ok(())
    }

    #[upon(condition, per_batch)]
    fn report(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        while self.reported + 100 <= self.sum {
            self.reported += 100;
            ctx.emit(&id("other"), TestUint64(self.reported));
        }
        if self.strings == 4 {
            self.strings = 0;
            ctx.emit(&id("other"), TestString("4 strings".into()));
        }
        Ok(())
    }
}

#[test]
fn mir_dsl_module_apply_events_table() {
    // empty
    let mut m = DslModule::new(TestModule::default());
    assert!(run(&mut m, vec![]).unwrap().is_empty());
    // hello → world, 42
    assert_eq!(strings(&run(&mut m, vec![s("hello")]).unwrap()), ["world", "42"]);
    // handler error → the module's error
    let err = run(&mut DslModule::new(TestModule::default()), vec![s("bye")]).unwrap_err();
    assert_eq!(err.0, "bye");
    // a batch condition fires once after 4 strings
    let mut m = DslModule::new(TestModule::default());
    assert_eq!(strings(&run(&mut m, vec![s("a"), s("b"), s("c"), s("d")]).unwrap()), ["4 strings"]);
    // numbers below 100 are echoed; cumulative reports 100…500 after the batch
    let mut m = DslModule::new(TestModule::default());
    let out = run(&mut m, vec![u(50), u(150), u(99), u(201)]).unwrap();
    assert_eq!(strings(&out), ["50", "99", "100", "200", "300", "400", "500"]);
    // an unknown message is ignored and counted; Init is fine
    let msg = Event::new(
        "net",
        "test",
        MessageReceived { from: NodeId::new("3"), message: Message::new("test", TestUint64(1)) },
    );
    let init = Event::new(ModuleId::node(), "test", Init);
    let mut m = DslModule::new(TestModule::default());
    assert!(run(&mut m, vec![init, msg]).unwrap().is_empty());
    assert_eq!(m.stats().ignored(), 1);
    // an unknown local event is fatal
    let err = run(
        &mut m,
        vec![
            Event::new("other", "test", Init).with_dest("test"),
            Event::new(
                "x",
                "test",
                SignRequest {
                    data: vec![],
                    domain: None,
                    origin: Origin { module: id("x"), id: 0 },
                },
            ),
        ],
    )
    .unwrap_err();
    assert_eq!(err.0, "unexpected event type mir.crypto.SignRequest from x");
    // a condition error
    let err = run(&mut DslModule::new(TestModule::default()), vec![s("too much")]).unwrap_err();
    assert_eq!(err.0, "too much");
}

#[test]
fn several_handlers_run_in_declaration_order() {
    let mut m = DslModule::new(TestModule::default());
    run(&mut m, vec![s("x"), s("y")]).unwrap();
    assert_eq!(m.protocol().order, ["first", "second", "first", "second"]);
}

#[test]
fn ignored_input_is_counted_and_the_batch_goes_on() {
    let mut m = DslModule::new(TestModule::default());
    let out = run(&mut m, vec![s("bad input"), s("hello")]).unwrap();
    assert_eq!(strings(&out), ["world", "42"]);
    assert_eq!(m.stats().ignored(), 1);
    assert_eq!(m.stats().handled(), 2);
}

// ---- request / response ----

#[derive(Debug, Clone, PartialEq)]
struct SignedForPeer {
    peer: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct SignedForMe;

#[derive(Default)]
struct Requester {
    got: Vec<String>,
}

#[protocol]
impl Requester {
    #[upon(event)]
    fn on_uint(&mut self, ctx: &mut Ctx<Self>, v: TestUint64) -> Handled {
        ctx.request(
            &id("crypto"),
            SignRequest {
                data: vec![v.0.to_le_bytes().to_vec()],
                domain: None,
                origin: placeholder(),
            },
            SignedForPeer { peer: v.0 },
        );
        Ok(())
    }

    #[upon(event)]
    fn on_string(&mut self, ctx: &mut Ctx<Self>, v: TestString) -> Handled {
        ctx.request(
            &id("crypto"),
            SignRequest { data: vec![v.0.into_bytes()], domain: None, origin: placeholder() },
            SignedForMe,
        );
        Ok(())
    }

    #[upon(response)]
    fn signed_for_peer(
        &mut self,
        _ctx: &mut Ctx<Self>,
        res: SignResult,
        cont: SignedForPeer,
    ) -> Handled {
        self.got.push(format!("peer {} sig {:?}", cont.peer, res.signature));
        Ok(())
    }

    /// A second handler for the same pair shares the continuation (Mir: "two handlers for the
    /// same response share one context").
    #[upon(response)]
    fn signed_for_peer_too(
        &mut self,
        _ctx: &mut Ctx<Self>,
        _res: SignResult,
        cont: SignedForPeer,
    ) -> Handled {
        self.got.push(format!("again for peer {}", cont.peer));
        Ok(())
    }

    #[upon(response)]
    fn signed_for_me(
        &mut self,
        _ctx: &mut Ctx<Self>,
        res: SignResult,
        _cont: SignedForMe,
    ) -> Handled {
        self.got.push(format!("me sig {:?}", res.signature));
        Ok(())
    }
}

fn placeholder() -> Origin {
    Origin { module: ModuleId::node(), id: 0 }
}

fn respond(req: &Event, sig: u8) -> Event {
    let r = req.get::<SignRequest>().unwrap();
    Event::new("crypto", "test", SignResult { signature: vec![sig], origin: r.origin.clone() })
}

#[test]
fn responses_reach_the_handler_of_their_continuation_type_with_their_context() {
    let mut m = DslModule::new(Requester::default());
    let reqs = run(&mut m, vec![u(7), s("x"), u(9)]).unwrap();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].dest.as_str(), "crypto");
    let origins: Vec<u64> =
        reqs.iter().map(|r| r.get::<SignRequest>().unwrap().origin.id).collect();
    assert_eq!(origins, [0, 1, 2], "sequential, deterministic request numbers");
    assert_eq!(m.pending_requests(), 3);
    // Answer out of order, with an unrelated event in between (the context survives it).
    run(&mut m, vec![respond(&reqs[2], 2), u(1000), respond(&reqs[1], 1)]).unwrap();
    run(&mut m, vec![respond(&reqs[0], 0)]).unwrap();
    assert_eq!(
        m.protocol().got,
        ["peer 9 sig [2]", "again for peer 9", "me sig [1]", "peer 7 sig [0]", "again for peer 7"]
    );
    // Only the request made for 1000 is still pending: contexts are cleaned up after use.
    assert_eq!(m.pending_requests(), 1);
}

#[test]
fn a_response_without_a_request_is_an_error_and_cannot_be_replayed() {
    let mut m = DslModule::new(Requester::default());
    let orphan = Event::new(
        "crypto",
        "test",
        SignResult { signature: vec![], origin: Origin { module: id("test"), id: 5 } },
    );
    let err = run(&mut m, vec![orphan]).unwrap_err();
    assert_eq!(err.0, "response mir.crypto.SignResult (request #5) matches no pending request");

    let mut m = DslModule::new(Requester::default());
    let reqs = run(&mut m, vec![u(1)]).unwrap();
    let res = respond(&reqs[0], 0);
    run(&mut m, vec![res.clone()]).unwrap();
    let err = run(&mut m, vec![res]).unwrap_err();
    assert!(err.0.contains("matches no pending request"), "{err}");

    let mut m = DslModule::new(Requester::default());
    let elsewhere = Event::new(
        "crypto",
        "test",
        SignResult { signature: vec![], origin: Origin { module: id("other"), id: 0 } },
    );
    assert!(run(&mut m, vec![elsewhere]).unwrap_err().0.contains("for module other reached test"));
}

// ---- messages ----

#[derive(Default)]
struct Listener {
    heard: Vec<String>,
}

#[protocol]
impl Listener {
    #[upon(message)]
    fn on_number(&mut self, _ctx: &mut Ctx<Self>, from: NodeId, n: TestUint64) -> Handled {
        self.heard.push(format!("{n:?} from {from}"));
        Ok(())
    }

    #[upon(message)]
    fn on_text(&mut self, ctx: &mut Ctx<Self>, from: NodeId, t: TestString) -> Handled {
        ctx.send(&id("net"), [&from], TestString(format!("re: {}", t.0)));
        Ok(())
    }
}

fn received(from: &str, payload: Payload) -> Event {
    Event::new(
        "net",
        "test",
        MessageReceived {
            from: NodeId::new(from),
            message: Message { dest_module: id("test"), payload },
        },
    )
}

#[test]
fn messages_are_decoded_and_bad_ones_ignored() {
    let mut m = DslModule::new(Listener::default());
    let enc =
        |v: &TestUint64| Payload::encoded("mir.TestUint64", mir_dsl::mir_runtime::codec::encode(v));
    let out = run(
        &mut m,
        vec![
            received("1", enc(&TestUint64(5))),
            received("2", Payload::encoded("mir.TestUint64", vec![0xff, 0xff, 0xff])),
            received("3", Payload::encoded("evil.Unknown", vec![1, 2])),
            received("4", Payload::new(TestString("hi".into()))),
        ],
    )
    .unwrap();
    assert_eq!(m.protocol().heard, ["TestUint64(5) from 1"]);
    assert_eq!(m.stats().ignored(), 2, "the malformed and the unknown message");
    assert_eq!(out.len(), 1);
    let send = out[0].get::<mir_dsl::mir_runtime::stdevents::SendMessage>().unwrap();
    assert_eq!(send.destinations, [NodeId::new("4")]);
    assert_eq!(send.message.dest_module, id("test"));
}

// ---- parts ----

#[derive(Default)]
struct Split {
    log: Vec<String>,
    events: u64,
    batches: u64,
}

#[protocol(parts(numbers, texts))]
impl Split {
    #[upon(condition)]
    fn count(&mut self, _ctx: &mut Ctx<Self>) -> Handled {
        self.events += 1;
        Ok(())
    }
}

mod numbers_part {
    use super::*;

    #[protocol(part = numbers)]
    impl Split {
        #[upon(event)]
        fn number(&mut self, _ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
            self.log.push(format!("number {}", n.0));
            Ok(())
        }

        #[upon(condition, per_batch)]
        fn batch(&mut self, _ctx: &mut Ctx<Self>) -> Handled {
            self.batches += 1;
            Ok(())
        }
    }
}

mod texts_part {
    use super::*;

    #[protocol(part = texts)]
    impl Split {
        #[upon(event)]
        fn text(&mut self, _ctx: &mut Ctx<Self>, t: TestString) -> Handled {
            self.log.push(format!("text {}", t.0));
            Ok(())
        }
    }
}

#[test]
fn parts_share_state_and_split_the_handlers() {
    let mut m = DslModule::new(Split::default());
    run(&mut m, vec![u(1), s("a"), u(2)]).unwrap();
    let p = m.protocol();
    assert_eq!(p.log, ["number 1", "text a", "number 2"]);
    assert_eq!((p.events, p.batches), (3, 1));
    assert!(run(
        &mut m,
        vec![Event::new("x", "test", SignResult { signature: vec![], origin: placeholder() })]
    )
    .is_err());
}

// One type handled by two groups (the main block and a part, two parts, an alias, two spellings)
// would leave the second group never running; it does not compile: tests/ui/duplicates/.

/// Says where each event came from, and after each event where the last one came from.
struct Sources {
    seen: Vec<String>,
}

#[protocol]
impl Sources {
    #[upon(event)]
    fn number(&mut self, ctx: &mut Ctx<Self>, _n: TestUint64) -> Handled {
        self.seen.push(format!("event from {}", ctx.source()));
        Ok(())
    }

    #[upon(condition)]
    fn after(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        if let Some(last) = self.seen.pop() {
            ctx.emit(&id("out"), TestString(format!("{last}, condition sees {}", ctx.source())));
        }
        Ok(())
    }
}

#[test]
fn each_handler_sees_its_own_events_source() {
    // The DSL swaps each event's source out of the event instead of copying it: every handler
    // and condition must still see the right one, in a batch from several sources.
    let mut m = DslModule::new(Sources { seen: Vec::new() });
    let evs = ["a", "b/1", "a", "c"].map(|src| Event::new(src, "test", TestUint64(0)));
    let out = run(&mut m, evs.to_vec()).unwrap();
    assert_eq!(
        strings(&out),
        [
            "event from a, condition sees a",
            "event from b/1, condition sees b/1",
            "event from a, condition sees a",
            "event from c, condition sees c",
        ]
    );
    // An event no handler takes is reported with its own source.
    let err = run(&mut m, vec![Event::new("x", "test", TestString("?".into()))]).unwrap_err();
    assert_eq!(err.0, "unexpected event type mir.TestString from x");
}
