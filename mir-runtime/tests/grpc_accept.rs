//! When `accept` fails (here: the process is out of file descriptors, EMFILE), the gRPC
//! transport backs off instead of spinning, counts the failures, and serves again once
//! descriptors are free. Alone in its test binary because it exhausts the process's descriptors.

#![cfg(unix)]

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::stdmodules::NullModule;
use mir_runtime::transport::grpc::{GrpcConfig, GrpcTransport};
use mir_runtime::{Node, NodeId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_failures_back_off_and_the_node_recovers() {
    let id = NodeId::from_index(0);
    let keys = NodeKeys::test(1, &id);
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let membership = Membership { nodes: vec![keys.member(id.clone(), addr, 1)] };
    let mut cfg = GrpcConfig::new(id.clone(), membership, keys.transport.clone());
    cfg.handshake_timeout = Duration::from_millis(200);
    let transport = GrpcTransport::new(cfg).unwrap();
    let grpc = transport.handle();
    let node =
        Node::builder(id).passive("app", NullModule).active("net", transport).build().unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    while grpc.local_addr().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Sockets made now (they hold their descriptors), connected once descriptors run out.
    let sockets: Vec<tokio::net::TcpSocket> =
        (0..3).map(|_| tokio::net::TcpSocket::new_v4().unwrap()).collect();
    // Lower the descriptor limit and use up what is left.
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit { rlim_cur: 512, rlim_max: old.rlim_max };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    let mut conns = Vec::new();
    for s in sockets {
        conns.push(s.connect(addr).await.unwrap()); // into the backlog; accept fails
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors = grpc.stats().accept_errors.load(Relaxed);
    // Back-off from 10 ms doubling to 1 s: about 8 tries in 2 s; spinning would make millions.
    assert!((1..=20).contains(&errors), "{errors} accept errors in 2 s");

    // Descriptors free again: the waiting connections are accepted (then closed at the
    // handshake deadline, since they say nothing).
    drop(filler);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let t0 = std::time::Instant::now();
    while grpc.stats().handshakes_rejected.load(Relaxed) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(10), "not accepted again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(conns);
    handle.stop();
    run.await.unwrap().unwrap();
}
