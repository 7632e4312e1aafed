//! The perfect link against a hostile peer: messages naming modules the node does not have,
//! numbers far ahead, session changes, duplicates and garbage never stop the node, and each
//! genuine message is delivered once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::{Message, MessageReceived, TestUint64};
use mir_runtime::stdmodules::link::{LinkAck, LinkData, LinkForget, LinkTick};
use mir_runtime::stdmodules::{PerfectLink, Timer};
use mir_runtime::{Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule};

/// Records the numbers it receives.
struct App(Arc<Mutex<Vec<(String, u64)>>>);

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Ok(Some(m)) = ev.payload.decode::<MessageReceived>() {
                if let Ok(Some(TestUint64(n))) = m.message.payload.decode::<TestUint64>() {
                    self.0.lock().unwrap().push((m.from.to_string(), n));
                }
            }
        }
        Ok(())
    }

    fn accepts_messages(&self) -> bool {
        true
    }
}

fn from_peer(session: u64, seq: u64, dest: &str, n: u64) -> Event {
    let data = LinkData { session, seq, message: Message::new(dest, TestUint64(n)) };
    Event::new(
        "net",
        "link",
        MessageReceived { from: NodeId::new("9"), message: Message::new("link", data) },
    )
}

#[test]
fn hostile_link_traffic_never_stops_the_node_and_genuine_messages_arrive_once() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(
        Node::builder("0")
            .passive("app", App(got.clone()))
            .passive("link", PerfectLink::new(NodeId::new("0"), 0))
            .active("timer", Timer::new()),
    )
    .unwrap();
    let garbage = Event::new(
        "net",
        "link",
        MessageReceived {
            from: NodeId::new("9"),
            message: Message {
                dest_module: ModuleId::new("link"),
                payload: mir_runtime::Payload::encoded("link.Data", vec![0xff; 7]),
            },
        },
    );
    let ack = LinkAck { session: 5, seq: 1 };
    let events = vec![
        from_peer(1, 0, "app", 10),
        from_peer(1, 0, "app", 10),            // duplicate
        from_peer(1, 1, "no-such-module", 11), // names a module the node does not have
        from_peer(1, u64::MAX, "app", 12),     // far ahead of the window
        garbage,
        Event::new(
            "net",
            "link",
            MessageReceived { from: NodeId::new("9"), message: Message::new("link", ack) },
        ),
        Event::new(
            "net",
            "link",
            MessageReceived { from: NodeId::new("9"), message: Message::new("link", LinkTick) },
        ),
        from_peer(2, 0, "app", 20), // the peer restarted: a new session
        Event::new("@node", "link", LinkForget { prefix: ModuleId::new("app") }),
    ];
    sim.inject(&NodeId::new("0"), events).unwrap();
    // The link's acks to node 9 go to an unknown node (dropped by the network), the node runs on.
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(*got.lock().unwrap(), vec![("9".into(), 10), ("9".into(), 20)]);
}

/// On the production executor: two nodes on tokio over the in-process transport, every message
/// of node 0's transport dropped with probability 1/2 (a lossy wrapper made with the adversary
/// layer). Through the perfect link, all 50 numbers arrive, each once.
#[tokio::test(flavor = "current_thread")]
async fn perfect_links_recover_losses_on_the_production_executor() {
    use mir_runtime::adversary::{Adversary, AdversaryCtx, ByzantineTransport, Outgoing};
    use mir_runtime::stdevents::{Init, SendMessage};
    use mir_runtime::transport::inprocess::InProcessNetwork;
    struct Sender;
    impl PassiveModule for Sender {
        fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
            for ev in events {
                if ev.is::<Init>() {
                    for n in 0..50 {
                        let message = Message::new("app", TestUint64(n));
                        out.send(
                            &ModuleId::new("link"),
                            SendMessage { destinations: vec![NodeId::new("1")], message },
                        );
                    }
                }
            }
            Ok(())
        }
    }
    let lossy = |ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
        out.retain(|_| !ctx.rng().chance(0.5))
    };
    let ids = vec![NodeId::new("0"), NodeId::new("1")];
    let net = InProcessNetwork::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let t0 = ByzantineTransport::new(
        net.transport(ids[0].clone()),
        Adversary::new(lossy),
        ids[0].clone(),
        ids.clone(),
        3,
    );
    let link =
        |me: &NodeId| PerfectLink::new(me.clone(), 0).retransmission(Duration::from_millis(5), 4);
    let n0 = Node::builder("0")
        .passive("app", Sender)
        .passive("link", link(&ids[0]))
        .active("timer", Timer::new())
        .active("net", t0)
        .build()
        .unwrap();
    let n1 = Node::builder("1")
        .passive("app", App(got.clone()))
        .passive("link", link(&ids[1]))
        .active("timer", Timer::new())
        .active("net", net.transport(ids[1].clone()))
        .build()
        .unwrap();
    net.connect(ids[0].clone(), n0.handle().sink());
    net.connect(ids[1].clone(), n1.handle().sink());
    let (h0, h1) = (n0.handle(), n1.handle());
    let (r0, r1) = (tokio::spawn(n0.run()), tokio::spawn(n1.run()));
    for _ in 0..1000 {
        if got.lock().unwrap().len() >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await; // time for duplicates to show up
    h0.stop();
    h1.stop();
    r0.await.unwrap().unwrap();
    r1.await.unwrap().unwrap();
    let mut numbers: Vec<u64> = got.lock().unwrap().iter().map(|(_, n)| *n).collect();
    numbers.sort();
    assert_eq!(numbers, (0..50).collect::<Vec<_>>(), "each number once");
}
