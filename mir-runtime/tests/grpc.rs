//! The gRPC transport on loopback: send and receive both ways, counted drops, reconnection to a
//! restarted peer, no connections after stop, and bad input (wrong identity, bad signature,
//! garbage bytes, oversized frames) rejected and counted while real peers are still served.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::Recorder;
use k256::ecdsa::SigningKey;
use mir_runtime::membership::{Member, Membership};
use mir_runtime::stdevents::{Message, MessageReceived, SendMessage, TestUint64};
use mir_runtime::stdmodules::ecdsa::test_keys;
use mir_runtime::transport::grpc::{GrpcConfig, GrpcHandle, GrpcTransport};
use mir_runtime::{Event, Exit, Node, NodeHandle, NodeId};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Cluster {
    membership: Membership,
    keys: std::collections::BTreeMap<NodeId, SigningKey>,
}

fn cluster(n: usize) -> Cluster {
    let ids: Vec<NodeId> = (0..n).map(NodeId::from_index).collect();
    let (keys, registry) = test_keys(42, &ids);
    let nodes = ids
        .iter()
        .map(|id| Member {
            id: id.clone(),
            address: free_addr(),
            public_key: registry
                .get(id)
                .unwrap()
                .to_encoded_point(true)
                .as_bytes()
                .to_vec(),
            weight: 1,
        })
        .collect();
    Cluster {
        membership: Membership { nodes },
        keys,
    }
}

struct Running {
    handle: NodeHandle,
    grpc: GrpcHandle,
    rec: Recorder,
    run: tokio::task::JoinHandle<Result<Exit, mir_runtime::NodeError>>,
}

fn start(c: &Cluster, i: usize, tweak: impl FnOnce(&mut GrpcConfig)) -> Running {
    let id = NodeId::from_index(i);
    let mut cfg = GrpcConfig::new(id.clone(), c.membership.clone(), c.keys[&id].clone());
    tweak(&mut cfg);
    let transport = GrpcTransport::new(cfg).unwrap();
    let grpc = transport.handle();
    let rec = Recorder::default();
    let node = Node::builder(id)
        .passive("app", rec.clone())
        .active("net", transport)
        .build()
        .unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    Running {
        handle,
        grpc,
        rec,
        run,
    }
}

async fn stop(r: Running) {
    r.handle.stop();
    assert_eq!(r.run.await.unwrap(), Ok(Exit::Stopped));
}

fn send(to: &[usize], n: u64) -> Event {
    let destinations = to.iter().map(|i| NodeId::from_index(*i)).collect();
    Event::new(
        "app",
        "net",
        SendMessage {
            destinations,
            message: Message::new("app", TestUint64(n)),
        },
    )
}

fn received(r: &Recorder) -> Vec<(String, u64)> {
    r.events()
        .iter()
        .filter_map(|e| e.get::<MessageReceived>())
        .map(|m| {
            (
                m.from.to_string(),
                m.message.payload.decode::<TestUint64>().unwrap().unwrap().0,
            )
        })
        .collect()
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_receive_both_ways_with_authenticated_senders() {
    let c = cluster(2);
    let (a, b) = (start(&c, 0, |_| {}), start(&c, 1, |_| {}));
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    assert!(b.grpc.wait_connected(1, Duration::from_secs(10)).await);
    a.handle
        .inject((0..50).map(|n| send(&[1], n)).collect())
        .await
        .unwrap();
    b.handle
        .inject(vec![send(&[0, 1], 7), send(&[5], 8)])
        .await
        .unwrap(); // to 0, to itself, to a non-member
    wait_until(|| received(&b.rec).len() == 51 && received(&a.rec).len() == 1).await;
    let got_b = received(&b.rec);
    let from = |who: &str| {
        got_b
            .iter()
            .filter(|(f, _)| f == who)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        from("0"),
        (0..50).collect::<Vec<_>>(),
        "in order, from node 0"
    );
    assert_eq!(from("1"), vec![7], "to itself, without the network");
    assert_eq!(received(&a.rec), vec![("1".to_owned(), 7)]);
    assert_eq!(
        b.grpc.stats().transport.not_connected.load(Relaxed),
        1,
        "node 5 is not a member"
    );
    assert_eq!(a.grpc.stats().handshakes_rejected.load(Relaxed), 0);
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_restarted_peer_and_nothing_listens_after_stop() {
    let c = cluster(2);
    let a = start(&c, 0, |cfg| {
        cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100))
    });
    let b = start(&c, 1, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    a.handle.inject(vec![send(&[1], 1)]).await.unwrap();
    wait_until(|| received(&b.rec).len() == 1).await;
    let addr = c.membership.nodes[1].address;
    stop(b).await;
    // Nothing listens on the stopped node's address any more.
    wait_until(|| std::net::TcpStream::connect(addr).is_err()).await;
    wait_until(|| a.grpc.connected() == 0).await;
    // Messages sent while the peer is down wait in the bounded queue.
    a.handle
        .inject(vec![send(&[1], 2), send(&[1], 3)])
        .await
        .unwrap();
    let b2 = start(&c, 1, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    wait_until(|| received(&b2.rec).len() == 2).await;
    assert_eq!(
        received(&b2.rec),
        vec![("0".to_owned(), 2), ("0".to_owned(), 3)]
    );
    stop(a).await;
    stop(b2).await;
}

/// A hand-made client that performs the handshake as `claimed`, signing with `key`.
async fn impostor(
    addr: SocketAddr,
    claimed: &str,
    to: &str,
    key: &SigningKey,
) -> Result<(), String> {
    impostor_then(addr, claimed, to, key, None).await
}

/// The same, then sends `frame` as raw bytes after the handshake (and waits for the server to
/// close the stream).
async fn impostor_then(
    addr: SocketAddr,
    claimed: &str,
    to: &str,
    key: &SigningKey,
    frame: Option<Vec<u8>>,
) -> Result<(), String> {
    use mir_runtime::transport::grpc::Frame;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let (out, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/mir.Transport/Connect");
    let resp = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            RawCodec,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut inbound = resp.into_inner();
    let challenge = inbound
        .message()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no challenge")?;
    let Frame::Challenge { nonce } = mir_runtime::codec::decode::<Frame>("f", &challenge).unwrap()
    else {
        panic!()
    };
    let data = vec![
        b"mir-grpc-hello".to_vec(),
        claimed.as_bytes().to_vec(),
        to.as_bytes().to_vec(),
        nonce,
    ];
    let signature = mir_runtime::stdmodules::ecdsa::sign(key, &data);
    out.send(mir_runtime::codec::encode(&Frame::Hello {
        from: NodeId::new(claimed),
        to: NodeId::new(to),
        signature,
    }))
    .await
    .unwrap();
    match inbound.message().await {
        Ok(Some(b)) if mir_runtime::codec::decode::<Frame>("f", &b).unwrap() == Frame::Welcome => {}
        other => return Err(format!("refused: {other:?}")),
    }
    if let Some(f) = frame {
        out.send(f).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await;
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct RawCodec;
impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}
impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}
impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostors_garbage_and_oversized_frames_are_rejected_and_counted() {
    let c = cluster(3);
    let b = start(&c, 1, |cfg| cfg.max_message_size = 4096);
    let a = start(&c, 0, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    let addr_b = c.membership.nodes[1].address;
    let key = |i: usize| c.keys[&NodeId::from_index(i)].clone();

    // Node 2 claiming to be node 0 (signing with its own key): refused.
    assert!(impostor(addr_b, "0", "1", &key(2)).await.is_err());
    // A non-member: refused. A Hello for another node: refused.
    assert!(impostor(addr_b, "7", "1", &key(2)).await.is_err());
    assert!(impostor(addr_b, "2", "0", &key(2)).await.is_err());
    // The real node 2 is accepted.
    assert!(impostor(addr_b, "2", "1", &key(2)).await.is_ok());
    assert_eq!(b.grpc.stats().handshakes_rejected.load(Relaxed), 3);
    // A truncated message frame from an authenticated peer: rejected, counted, connection closed.
    let whole = mir_runtime::codec::encode(&mir_runtime::transport::grpc::Frame::Msg(
        Message::new("app", TestUint64(5)),
    ));
    impostor_then(
        addr_b,
        "2",
        "1",
        &key(2),
        Some(whole[..whole.len() - 3].to_vec()),
    )
    .await
    .unwrap();
    wait_until(|| b.grpc.stats().frames_rejected.load(Relaxed) == 1).await;

    // Random bytes on the port: closed before reaching gRPC, counted.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr_b).unwrap();
        let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1000));
    }
    wait_until(|| b.grpc.stats().handshakes_rejected.load(Relaxed) == 4).await;
    // An oversized message from a real peer: refused by the receiver, the connection closes.
    let big = Event::new(
        "app",
        "net",
        SendMessage {
            destinations: vec![NodeId::new("1")],
            message: Message::new(
                "app",
                mir_runtime::stdevents::TestString("x".repeat(10_000)),
            ),
        },
    );
    a.handle.inject(vec![big]).await.unwrap();
    wait_until(|| b.grpc.stats().frames_rejected.load(Relaxed) >= 2).await;

    // Node 1 still serves its real peers: node 0 reconnects and is heard.
    a.handle.inject(vec![send(&[1], 99)]).await.unwrap();
    wait_until(|| received(&b.rec).contains(&("0".to_owned(), 99))).await;
    stop(a).await;
    stop(b).await;
}

#[test]
fn bad_configuration_is_refused() {
    let c = cluster(2);
    let (other, _) = test_keys(7, &[NodeId::new("0")]);
    let wrong = GrpcTransport::new(GrpcConfig::new(
        NodeId::new("0"),
        c.membership.clone(),
        other[&NodeId::new("0")].clone(),
    ));
    assert!(wrong
        .err()
        .unwrap()
        .to_string()
        .contains("does not match its public key"));
    let outsider = GrpcTransport::new(GrpcConfig::new(
        NodeId::new("9"),
        c.membership.clone(),
        c.keys[&NodeId::new("0")].clone(),
    ));
    assert_eq!(
        outsider.err().unwrap().to_string(),
        "node 9 is not in the membership"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_while_traffic_flows_starts_receiving() {
    let c = cluster(3);
    let a = start(&c, 0, |cfg| {
        cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100))
    });
    let b = start(&c, 1, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    // Node 0 keeps sending to 1 and 2 while node 2 is not up yet, then after it joins.
    let mut late = None;
    for round in 0..60u64 {
        a.handle.inject(vec![send(&[1, 2], round)]).await.unwrap();
        if round == 20 {
            late = Some(start(&c, 2, |_| {}));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = late.unwrap();
    wait_until(|| received(&b.rec).len() == 60).await;
    wait_until(|| received(&late.rec).iter().any(|(_, n)| *n == 59)).await;
    let got: Vec<u64> = received(&late.rec).iter().map(|(_, n)| *n).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(
        received(&b.rec).iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        (0..60).collect::<Vec<_>>()
    );
    stop(a).await;
    stop(b).await;
    stop(late).await;
}

/// Messages to itself take the local loopback: never dropped, even when the node's injection
/// channel could hold only one event (the transport used to inject them with `try_inject`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_itself_are_never_dropped() {
    let c = cluster(1);
    let id = NodeId::from_index(0);
    let transport = GrpcTransport::new(GrpcConfig::new(
        id.clone(),
        c.membership.clone(),
        c.keys[&id].clone(),
    ))
    .unwrap();
    let grpc = transport.handle();
    let (app, got) = common::self_sender("0", 5000);
    let cfg = mir_runtime::NodeConfig {
        inject_capacity: 1,
        max_batch_size: 1,
        ..mir_runtime::NodeConfig::default()
    };
    let node = Node::builder(id)
        .config(cfg)
        .passive("app", app)
        .active("net", transport)
        .build()
        .unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    wait_until(|| got.lock().unwrap().len() == 5000).await;
    handle.stop();
    assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
    assert_eq!(*got.lock().unwrap(), (0..5000).collect::<Vec<_>>());
    assert_eq!(grpc.stats().transport.overflow.load(Relaxed), 0);
}
