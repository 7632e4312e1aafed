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
