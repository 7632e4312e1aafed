//! The SMR system over gRPC (issue 17): four nodes built with [`System::builder`] on loopback,
//! the key-value store, the client service, and the Rust client. Clients get receipts (one log
//! position per transaction, results of the log order), follow the log, retry on another node
//! when theirs is down, and a client that lies gets rejections while the others go on.
#![cfg(feature = "system")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::{Member, Membership};
use mir_runtime::NodeId;
use protocols::availability::Tx;
use protocols::ordering::iss::NodeSettings;
use protocols::ordering::pbft::PbftConfig;
use protocols::smr::client::{ClientError, SmrClient};
use protocols::smr::gateway::GatewayConfig;
use protocols::smr::kv::KvStore;
use protocols::smr::service::{Reason, SubmitReply, SubmitRequest};
use protocols::smr::system::{RunningNode, System};
use protocols::smr::Application;

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Four nodes with client services; their client addresses.
async fn cluster() -> (Vec<RunningNode>, Vec<SocketAddr>) {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let peers = free_addrs(4);
    let members: Vec<Member> = ids
        .iter()
        .zip(&peers)
        .map(|(id, a)| NodeKeys::test(7, id).member(id.clone(), *a, 1))
        .collect();
    let membership = Membership { nodes: members };
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    for id in &ids {
        // Short view-change timeouts: a stopped node's segments end as ⊥ within seconds.
        let settings = NodeSettings {
            pbft: PbftConfig {
                sn_timeout: Duration::from_secs(1),
                segment_timeout: Some(Duration::from_secs(2)),
                ..PbftConfig::default()
            },
            ..NodeSettings::default()
        };
        // Small client windows and waiting limits, so that the flood below meets them.
        let mut settings = settings;
        settings.availability.mempool.client_window = 256;
        settings.availability.mempool.batch_timeout = Duration::from_millis(20);
        let mut gateway = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
        gateway.max_waiting_per_client = 128;
        let built = System::builder(id.clone(), membership.clone(), NodeKeys::test(7, id))
            .settings(settings)
            .clients_with(gateway)
            .build(KvStore::default())
            .unwrap();
        clients.push(built.clients().unwrap().local_addr());
        nodes.push(built.start());
    }
    for n in &nodes {
        assert!(n.wait_connected(Duration::from_secs(30)).await, "the nodes did not connect");
    }
    (nodes, clients)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_receipts_follow_the_log_and_liars_get_rejections() {
    let (nodes, addrs) = cluster().await;

    // Eight clients, two per node, five commands each over three keys.
    let mut commands: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
    let mut tasks = Vec::new();
    for c in 0..8usize {
        let id = format!("client-{c}");
        let mut client = SmrClient::new(id.clone(), addrs.clone()).prefer(c);
        let cmds: Vec<Vec<u8>> = (0..5u64)
            .map(|i| match i % 3 {
                0 => format!("put k{} {id}.{i}", i % 3).into_bytes(),
                1 => format!("get k{}", (i + c as u64) % 3).into_bytes(),
                _ => format!("del k{}", i % 2).into_bytes(),
            })
            .collect();
        for (i, cmd) in cmds.iter().enumerate() {
            commands.insert((id.clone(), i as u64), cmd.clone());
        }
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for cmd in cmds {
                let n = client.next_tx_no();
                let r = client.submit(cmd).await.expect("a receipt");
                receipts.push(((id.clone(), n), r));
            }
            receipts
        }));
    }
    let mut receipts = BTreeMap::new();
    for t in tasks {
        for (k, r) in t.await.unwrap() {
            receipts.insert(k, r);
        }
    }
    assert_eq!(receipts.len(), 40);
    // One position per transaction; the results are those of the log order.
    let mut by_position: Vec<_> = receipts.iter().map(|(k, r)| ((r.sn, r.index), k, r)).collect();
    by_position.sort_by_key(|(p, _, _)| *p);
    by_position.windows(2).for_each(|w| assert!(w[0].0 < w[1].0, "two at {:?}", w[0].0));
    let mut replay = KvStore::default();
    for (_, k, r) in &by_position {
        let tx = Tx::new(k.0.as_str(), k.1, commands[*k].clone());
        assert_eq!(replay.apply(&tx), r.result, "{k:?}");
    }

    // A follower of node 2 sees every transaction, in the same positions.
    let mut follower = SmrClient::new("follower", addrs.clone()).prefer(2);
    let mut stream = follower.deliveries(0).await.unwrap();
    let mut seen = 0;
    while seen < 40 {
        let d = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the log goes on")
            .unwrap()
            .expect("open");
        for (i, t) in d.txs.iter().enumerate() {
            let r = &receipts[&(t.client_id.clone(), t.tx_no)];
            assert_eq!((r.sn, r.index as usize, &r.result), (d.sn, i, &t.result));
            assert_eq!(t.payload, commands[&(t.client_id.clone(), t.tx_no)]);
            seen += 1;
        }
    }

    // Submitting an ordered transaction again gives its receipt, not a second ordering.
    let mut again = SmrClient::new("client-0", addrs.clone());
    let r = again.submit_numbered(3, commands[&("client-0".into(), 3)].clone()).await.unwrap();
    assert_eq!(r, receipts[&("client-0".to_string(), 3)]);

    // A liar: an empty ID, a huge payload, a number far outside its window, a flood.
    let mut liar = SmrClient::new("", addrs.clone());
    let e = liar.submit(b"get x".to_vec()).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { reason: Reason::Invalid, .. }), "{e}");
    let mut liar = SmrClient::new("liar", addrs.clone());
    let e = liar.submit(vec![b'x'; 2 << 20]).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { reason: Reason::TooLarge, .. }), "{e}");
    let e = liar.submit_numbered(1 << 40, b"get x".to_vec()).await.unwrap_err();
    assert!(matches!(e, ClientError::Rejected { reason: Reason::OutsideWindow, .. }), "{e}");
    // The flood: 1,000 submissions at once over one connection, numbers 0..1000 (the window
    // takes 256 at a time, the gateway lets 128 wait; the rest are refused); meanwhile an honest
    // client gets its receipts.
    let flood = tokio::spawn(flood_node(addrs[0], 1000));
    let mut honest = SmrClient::new("honest", addrs.clone());
    for i in 0..5 {
        honest.submit(format!("put h{i} {i}").into_bytes()).await.expect("honest receipt");
    }
    let outcomes = flood.await.unwrap();
    let count = |k: &str| outcomes.get(k).copied().unwrap_or(0);
    assert!(count("receipt") > 0, "{outcomes:?}");
    let refused = count("MempoolFull") + count("OutsideWindow");
    assert!(refused > 0, "{outcomes:?}");
    assert_eq!(count("receipt") + refused, 1000, "{outcomes:?}");

    // Node 0 stops: a client that starts there goes on through the others.
    let mut nodes = nodes;
    let first = nodes.remove(0);
    first.stop().await.unwrap();
    let mut moving = SmrClient::new("mover", addrs.clone()).prefer(0);
    let r = moving.submit(b"put moved yes".to_vec()).await.expect("through another node");
    assert_eq!(r.result, b"-");

    let stats = nodes[0].clients().unwrap().stats();
    assert!(stats.submitted > 0);
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// Submits transactions 0..n of client "flood" to one node, all at once; counts the outcomes.
async fn flood_node(addr: SocketAddr, n: u64) -> BTreeMap<String, u64> {
    use protocols::smr::service::{Outcome, ProstCodec, SUBMIT};
    use tonic::codegen::http::uri::PathAndQuery;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..n {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        calls.push(tokio::spawn(async move {
            grpc.ready().await.map_err(|e| e.to_string())?;
            let req = SubmitRequest {
                client_id: "flood".into(),
                tx_no: i,
                payload: format!("put f{i} x").into_bytes(),
                signature: vec![],
            };
            let codec = ProstCodec::<SubmitRequest, SubmitReply>::default();
            grpc.unary(tonic::Request::new(req), PathAndQuery::from_static(SUBMIT), codec)
                .await
                .map(|r| r.into_inner())
                .map_err(|e| e.to_string())
        }));
    }
    let mut out = BTreeMap::new();
    for c in calls {
        let key = match c.await.unwrap() {
            Ok(SubmitReply { outcome: Some(Outcome::Receipt(_)) }) => "receipt".to_string(),
            Ok(SubmitReply { outcome: Some(Outcome::Rejection(r)) }) => {
                format!("{:?}", Reason::try_from(r.reason).unwrap_or(Reason::Unknown))
            }
            Ok(_) => "empty".into(),
            Err(e) => format!("error: {e}"),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Signing clients (`smr::signed`): their ID is their key; a signed submission gets a receipt, a
/// forged or unsigned one in their name is refused as INVALID, and so is a signature from a
/// client whose ID is not a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_clients_are_checked() {
    let (nodes, addrs) = cluster().await;
    let key = NodeKeys::test(3, &NodeId::new("alice")).signing;
    let mut alice = SmrClient::signing(key, addrs.clone());
    let r = alice.submit(b"put owner alice".to_vec()).await.expect("a receipt");
    assert_eq!(r.result, b"-");
    // Someone else in alice's name: no signature, then a made-up one.
    for signature in [vec![], vec![7; 64]] {
        let req = SubmitRequest {
            client_id: alice.id().to_owned(),
            tx_no: 1,
            payload: b"put owner mallory".to_vec(),
            signature,
        };
        assert_eq!(submit_raw(addrs[0], req).await, "Invalid");
    }
    let req = SubmitRequest {
        client_id: "bob".into(),
        tx_no: 0,
        payload: b"put owner bob".to_vec(),
        signature: vec![7; 64],
    };
    assert_eq!(submit_raw(addrs[0], req).await, "Invalid");
    let r = alice.submit(b"get owner".to_vec()).await.expect("a receipt");
    assert_eq!(r.result, b"+alice");
    for n in nodes {
        n.stop().await.unwrap();
    }
}

/// One submission; its outcome as `flood_node` names them.
async fn submit_raw(addr: SocketAddr, req: SubmitRequest) -> String {
    use protocols::smr::service::{Outcome, ProstCodec, SUBMIT};
    use tonic::codegen::http::uri::PathAndQuery;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = ProstCodec::<SubmitRequest, SubmitReply>::default();
    let reply = grpc
        .unary(tonic::Request::new(req), PathAndQuery::from_static(SUBMIT), codec)
        .await
        .unwrap()
        .into_inner();
    match reply.outcome {
        Some(Outcome::Receipt(_)) => "receipt".into(),
        Some(Outcome::Rejection(r)) => {
            format!("{:?}", Reason::try_from(r.reason).unwrap_or(Reason::Unknown))
        }
        None => "empty".into(),
    }
}

/// Back-pressure with clients that go away: two of the four nodes stop, so nothing is ordered
/// and submissions to node 0 wait (up to the gateway's per-client limit, then MEMPOOL_FULL).
/// Twenty clients fill it over their own connections and go away without waiting for
/// outcomes; everything they left waiting is gone at once, long before the 30 s deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_clients_that_go_away_are_gone() {
    let (mut nodes, addrs) = cluster().await;
    for n in nodes.split_off(2) {
        n.stop().await.unwrap();
    }
    let gateway = nodes[0].clients().unwrap();
    let mut calls = Vec::new();
    for c in 0..20u64 {
        for i in 0..10u64 {
            let req = SubmitRequest {
                client_id: format!("leaver-{c}"),
                tx_no: i,
                payload: format!("put l{c}.{i} x").into_bytes(),
                signature: vec![],
            };
            calls.push(tokio::spawn(submit_raw(addrs[0], req)));
        }
    }
    // They wait (nothing can be ordered without a strong quorum).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gateway.waiting().0 < 200 {
        assert!(tokio::time::Instant::now() < deadline, "waiting: {:?}", gateway.waiting());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.waiting().1, 20);
    // The clients go away.
    for c in &calls {
        c.abort();
    }
    for c in calls {
        let _ = c.await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gateway.waiting() != (0, 0, 0) {
        assert!(tokio::time::Instant::now() < deadline, "left waiting: {:?}", gateway.waiting());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.stats().timed_out, 0, "gone because the clients went, not by deadline");
    for n in nodes {
        n.stop().await.unwrap();
    }
}
