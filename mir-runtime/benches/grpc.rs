//! gRPC transport throughput between two nodes on loopback: messages per second and MB/s for
//! 64-byte and 512-byte payloads, with at most `--window` messages in flight (so nothing is
//! dropped for overflow).
//!
//! Run: `cargo bench -p mir-runtime --bench grpc` (options: `-- --messages N --window W`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::stdevents::{Message, MessageReceived, SendMessage};
use mir_runtime::transport::grpc::{GrpcConfig, GrpcTransport};
use mir_runtime::{Batch, Event, ModuleResult, Node, NodeId, Outbox, PassiveModule};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Blob(Vec<u8>);
mir_runtime::payload!(Blob = "bench.Blob");

struct Count(Arc<AtomicU64>);
impl PassiveModule for Count {
    fn accepts_messages(&self) -> bool {
        true
    }
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let n = events.filter(|e| e.is::<MessageReceived>()).count();
        self.0.fetch_add(n as u64, Relaxed);
        Ok(())
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn main() {
    let mut messages: u64 = 200_000;
    let mut window: u64 = 2048;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--messages" => {
                messages = args.next().and_then(|v| v.parse().ok()).expect("--messages N")
            }
            "--window" => window = args.next().and_then(|v| v.parse().ok()).expect("--window W"),
            "--bench" => {}
            other => eprintln!("ignoring argument {other}"),
        }
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("gRPC transport, 2 nodes on loopback, window {window}");
    println!("{:>8} {:>12} {:>10} {:>10}", "payload", "messages/s", "MB/s", "dropped");
    for size in [64usize, 512] {
        rt.block_on(async {
            let ids = [NodeId::new("0"), NodeId::new("1")];
            let keys: Vec<NodeKeys> = ids.iter().map(|id| NodeKeys::test(1, id)).collect();
            let nodes =
                ids.iter().zip(&keys).map(|(id, k)| k.member(id.clone(), free_addr(), 1)).collect();
            let membership = Membership { nodes };
            let got = Arc::new(AtomicU64::new(0));
            let mut handles = Vec::new();
            let mut grpcs = Vec::new();
            let mut runs = Vec::new();
            for (id, k) in ids.iter().zip(&keys) {
                let t = GrpcTransport::new(GrpcConfig::new(
                    id.clone(),
                    membership.clone(),
                    k.transport.clone(),
                ))
                .unwrap();
                grpcs.push(t.handle());
                let node = Node::builder(id.clone())
                    .passive("app", Count(got.clone()))
                    .active("net", t)
                    .build()
                    .unwrap();
                handles.push(node.handle());
                runs.push(tokio::spawn(node.run()));
            }
            assert!(grpcs[0].wait_connected(1, Duration::from_secs(10)).await);
            let payload = vec![7u8; size];
            let msg = |_: u64| {
                Event::new(
                    "app",
                    "net",
                    SendMessage {
                        destinations: vec![ids[1].clone()],
                        message: Message::new("app", Blob(payload.clone())),
                    },
                )
            };
            let t0 = Instant::now();
            let mut sent = 0u64;
            while got.load(Relaxed) < messages {
                let in_flight = sent - got.load(Relaxed);
                if sent < messages && in_flight < window {
                    let n = (window - in_flight).min(messages - sent).min(512);
                    handles[0].inject((0..n).map(msg).collect()).await.unwrap();
                    sent += n;
                } else {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            let dt = t0.elapsed().as_secs_f64();
            let dropped = grpcs[0].stats().transport.overflow.load(Relaxed);
            println!(
                "{:>7}B {:>12.0} {:>10.1} {:>10}",
                size,
                messages as f64 / dt,
                messages as f64 * size as f64 / dt / 1e6,
                dropped
            );
            for h in &handles {
                h.stop();
            }
            for r in runs {
                r.await.unwrap().unwrap();
            }
        });
    }
}
