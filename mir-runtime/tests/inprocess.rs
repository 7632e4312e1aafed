//! The in-process transport: delivery (encoded, FIFO, with the sender's ID) and counted drops.

mod common;

use std::time::Duration;

use common::{id, Collector, FnModule};
use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage, TestUint64};
use mir_runtime::transport::inprocess::InProcessNetwork;
use mir_runtime::{Event, Node, NodeConfig, NodeId, Outbox};

fn send(out: &mut Outbox, to: &str, module: &str, n: u64) {
    out.send(
        &id("net"),
        SendMessage {
            destinations: vec![NodeId::new(to)],
            message: Message::new(module, TestUint64(n)),
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_order_and_counts_what_it_cannot_deliver() {
    let net = InProcessNetwork::new();
    let t0 = net.transport(NodeId::new("0"));
    let stats = t0.stats();
    let sender = FnModule(|ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            for n in 0..100 {
                send(out, "1", "app", n);
            }
            send(out, "9", "app", 0); // not connected
            send(out, "1", "zzz", 0); // no such module there
        }
        Ok(())
    });
    let n0 = Node::builder("0").passive("app", sender).active("net", t0).build().unwrap();
    let rec = Collector::default();
    let cfg = NodeConfig { inject_capacity: 256, ..NodeConfig::default() };
    let n1 = Node::builder("1")
        .config(cfg)
        .passive("app", rec.clone())
        .active("net", net.transport(NodeId::new("1")))
        .build()
        .unwrap();
    net.connect(NodeId::new("1"), n1.handle().sink());
    net.connect(NodeId::new("0"), n0.handle().sink());
    let (h0, h1) = (n0.handle(), n1.handle());
    let (r0, r1) = (tokio::spawn(n0.run()), tokio::spawn(n1.run()));
    for _ in 0..1000 {
        if rec.count() == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h0.stop();
    h1.stop();
    r0.await.unwrap().unwrap();
    r1.await.unwrap().unwrap();
    let got: Vec<u64> = rec
        .events()
        .iter()
        .filter_map(|e| e.get::<MessageReceived>())
        .map(|m| {
            assert_eq!(m.from, NodeId::new("0"));
            assert!(m.message.payload.is_encoded(), "payloads travel encoded");
            m.message.payload.decode::<TestUint64>().unwrap().unwrap().0
        })
        .collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>(), "in order");
    assert_eq!(stats.snapshot(), (101, 1, 0, 1), "(sent, not connected, overflow, rejected)");
}

#[tokio::test]
async fn a_full_destination_drops_and_counts_instead_of_blocking() {
    let net = InProcessNetwork::new();
    let t0 = net.transport(NodeId::new("0"));
    let stats = t0.stats();
    let sender = FnModule(|ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            for n in 0..10 {
                send(out, "1", "app", n);
            }
        }
        Ok(())
    });
    let n0 = Node::builder("0").passive("app", sender).active("net", t0).build().unwrap();
    // Node 1 is built but not running: its injection channel (4 batches of 1 event) fills up.
    let cfg = NodeConfig { inject_capacity: 4, max_batch_size: 1, ..NodeConfig::default() };
    let n1 = Node::builder("1").config(cfg).passive("app", Collector::default()).build().unwrap();
    net.connect(NodeId::new("1"), n1.handle().sink());
    let h0 = n0.handle();
    let r0 = tokio::spawn(n0.run());
    for _ in 0..1000 {
        if stats.snapshot().0 == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h0.stop();
    r0.await.unwrap().unwrap();
    assert_eq!(stats.snapshot(), (10, 0, 6, 0), "4 queued, 6 overflowed, the sender never blocked");
    drop(n1);
}

/// Messages to itself take the local loopback: never dropped, even when the node's injection
/// channel could hold only one event (the transport used to inject them with `try_inject`).
#[tokio::test]
async fn messages_to_itself_are_never_dropped() {
    let net = InProcessNetwork::new();
    let t0 = net.transport(NodeId::new("0"));
    let stats = t0.stats();
    let (app, got) = common::self_sender("0", 5000);
    let cfg = NodeConfig { inject_capacity: 1, max_batch_size: 1, ..NodeConfig::default() };
    let n0 = Node::builder("0").config(cfg).passive("app", app).active("net", t0).build().unwrap();
    net.connect(NodeId::new("0"), n0.handle().sink());
    let h0 = n0.handle();
    let r0 = tokio::spawn(n0.run());
    for _ in 0..1000 {
        if got.lock().unwrap().len() == 5000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h0.stop();
    r0.await.unwrap().unwrap();
    assert_eq!(*got.lock().unwrap(), (0..5000).collect::<Vec<_>>());
    assert_eq!(stats.snapshot(), (5000, 0, 0, 0));
}
