//! A member that asks for large batches and never reads the answers cannot grow a correct node's
//! memory past the transport's per-peer byte budget.
//!
//! Four availability nodes over gRPC (TLS, test keys). Node 0 makes a certificate for a ~800 KB
//! batch. "Node 3" is Byzantine: it connects to node 0 as itself and asks for that batch 40
//! times, while the address node 0 has for it accepts TCP connections and never reads. Each
//! answer (~800 KB) waits in node 0's queue to node 3, which holds at most `queue_bytes` (4 MiB
//! here): the rest is dropped and counted, and node 0 keeps serving the correct nodes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use examples::availability::{self as avail, AvailabilityReport, CreateBatch};
use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::stdevents::Message;
use mir_dsl::mir_runtime::transport::grpc::{GrpcConfig, GrpcTransport, PeerClient};
use mir_dsl::mir_runtime::{Event, NodeId};
use protocols::availability::msc::RequestBatchMessage;
use protocols::availability::{Config, Tx};

const BUDGET: usize = 4 << 20;

fn wait_for<T>(
    rx: &mpsc::Receiver<AvailabilityReport>,
    mut pick: impl FnMut(AvailabilityReport) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = rx.recv_timeout(left).expect("a report within 60 s");
        if let Some(t) = pick(r) {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_cannot_grow_a_nodes_memory_past_the_budget() {
    let ports = examples::cluster::free_ports(4).unwrap();
    let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports, 42).unwrap();
    let membership = Membership::from_toml_str(&toml, "generated").unwrap();
    // Where node 0 thinks node 3 is: a listener that accepts and never reads.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut view0 = membership.clone();
    view0.nodes[3].address = sink.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = sink.accept().await {
            held.push(s);
        }
    });

    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut grpc0 = None;
    for i in 0..3 {
        let id = NodeId::from_index(i);
        let keys = NodeKeys::test(42, &id);
        let view = if i == 0 { &view0 } else { &membership };
        let mut cfg = GrpcConfig::new(id.clone(), view.clone(), keys.transport.clone());
        cfg.queue_bytes = BUDGET;
        let transport = GrpcTransport::new(cfg).unwrap();
        if i == 0 {
            grpc0 = Some(transport.handle());
        }
        let node = avail::demo_modules(id, view, keys.signing, &Config::default(), tx.clone())
            .unwrap()
            .active("net", transport)
            .build()
            .unwrap();
        handles.push(node.handle());
        tokio::spawn(node.run());
    }
    let grpc0 = grpc0.unwrap();
    assert!(grpc0.wait_connected(2, Duration::from_secs(20)).await);

    // A certificate for a batch of 200 × (3 + 8 + 4000) bytes.
    let txs: Vec<Tx> = (0..200).map(|i| Tx::new("big", i, vec![7u8; 4000])).collect();
    handles[0].inject(vec![Event::new("@node", "app", CreateBatch { txs })]).await.unwrap();
    let cert = tokio::task::block_in_place(|| {
        wait_for(&rx, |r| match r {
            AvailabilityReport::Cert { cert, .. } => Some(cert),
            _ => None,
        })
    });
    let batch_id = cert.batches[0].batch_id.clone();

    // Byzantine node 3 asks node 0 for the batch 40 times.
    let me3 = NodeKeys::test(42, &NodeId::from_index(3));
    let mut byz = PeerClient::connect(
        membership.nodes[0].address,
        &me3.transport,
        membership.nodes[0].transport_key,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    for _ in 0..40 {
        let ask = RequestBatchMessage { batch_id: batch_id.clone() };
        byz.send(&Message::new("availability/0", ask)).await.unwrap();
    }
    // The answers pile up to the budget, no further.
    let stats = grpc0.stats();
    let t0 = Instant::now();
    let mut peak = 0;
    while stats.transport.overflow.load(Relaxed) < 30 {
        peak = peak.max(stats.queued_bytes.load(Relaxed));
        assert!(t0.elapsed() < Duration::from_secs(30), "answers not dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    peak = peak.max(stats.queued_bytes.load(Relaxed));
    assert!(peak <= BUDGET, "{peak} bytes queued for one peer");
    assert!(peak >= BUDGET / 2, "the queue did fill ({peak} bytes)");

    // Node 0 still works with the correct nodes: it makes another certificate.
    let more: Vec<Tx> = (0..3).map(|i| Tx::new("small", i, "x")).collect();
    handles[0].inject(vec![Event::new("@node", "app", CreateBatch { txs: more })]).await.unwrap();
    let second = tokio::task::block_in_place(|| {
        wait_for(&rx, |r| match r {
            AvailabilityReport::Cert { cert, .. } => Some(cert),
            _ => None,
        })
    });
    assert_ne!(second.batches[0].batch_id, batch_id);
    for h in &handles {
        h.stop();
    }
}
