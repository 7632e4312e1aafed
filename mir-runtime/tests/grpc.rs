//! The gRPC transport on loopback: send and receive both ways, counted drops, reconnection to a
//! restarted peer, no connections after stop, bad input (a key outside the membership, a member's
//! key without its secret, garbage bytes, malformed and oversized frames) rejected and counted
//! while real peers are still served, and a man in the middle that relays bytes can neither read
//! nor inject.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::Collector;
use std::sync::{Arc, Mutex};

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::stdevents::{Message, MessageReceived, SendMessage, TestString, TestUint64};
use mir_runtime::transport::grpc::{GrpcConfig, GrpcHandle, GrpcTransport, PeerMessage};
use mir_runtime::transport::tls::TransportKey;
use mir_runtime::{Event, Exit, Node, NodeHandle, NodeId};
use prost::Message as _;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

struct Cluster {
    membership: Membership,
    keys: std::collections::BTreeMap<NodeId, TransportKey>,
}

fn cluster(n: usize) -> Cluster {
    let ids: Vec<NodeId> = (0..n).map(NodeId::from_index).collect();
    let keys: std::collections::BTreeMap<NodeId, NodeKeys> =
        ids.iter().map(|id| (id.clone(), NodeKeys::test(42, id))).collect();
    let nodes = ids.iter().map(|id| keys[id].member(id.clone(), free_addr(), 1)).collect();
    Cluster {
        membership: Membership { nodes },
        keys: keys.into_iter().map(|(id, k)| (id, k.transport)).collect(),
    }
}

struct Running {
    handle: NodeHandle,
    grpc: GrpcHandle,
    rec: Collector,
    run: tokio::task::JoinHandle<Result<Exit, mir_runtime::NodeError>>,
}

fn start(c: &Cluster, i: usize, tweak: impl FnOnce(&mut GrpcConfig)) -> Running {
    start_with(c, i, c.membership.clone(), tweak)
}

/// Node `i` with its own view of the membership (e.g. another address for a peer).
fn start_with(
    c: &Cluster,
    i: usize,
    membership: Membership,
    tweak: impl FnOnce(&mut GrpcConfig),
) -> Running {
    let id = NodeId::from_index(i);
    let mut cfg = GrpcConfig::new(id.clone(), membership, c.keys[&id].clone());
    tweak(&mut cfg);
    let transport = GrpcTransport::new(cfg).unwrap();
    let grpc = transport.handle();
    let rec = Collector::default();
    let node =
        Node::builder(id).passive("app", rec.clone()).active("net", transport).build().unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    Running { handle, grpc, rec, run }
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
        SendMessage { destinations, message: Message::new("app", TestUint64(n)) },
    )
}

fn received(r: &Collector) -> Vec<(String, u64)> {
    r.events()
        .iter()
        .filter_map(|e| e.get::<MessageReceived>())
        .map(|m| (m.from.to_string(), m.message.payload.decode::<TestUint64>().unwrap().unwrap().0))
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
    a.handle.inject((0..50).map(|n| send(&[1], n)).collect()).await.unwrap();
    b.handle.inject(vec![send(&[0, 1], 7), send(&[5], 8)]).await.unwrap(); // to 0, to itself, to a non-member
    wait_until(|| received(&b.rec).len() == 51 && received(&a.rec).len() == 1).await;
    let got_b = received(&b.rec);
    let from =
        |who: &str| got_b.iter().filter(|(f, _)| f == who).map(|(_, n)| *n).collect::<Vec<_>>();
    assert_eq!(from("0"), (0..50).collect::<Vec<_>>(), "in order, from node 0");
    assert_eq!(from("1"), vec![7], "to itself, without the network");
    assert_eq!(received(&a.rec), vec![("1".to_owned(), 7)]);
    assert_eq!(b.grpc.stats().transport.not_connected.load(Relaxed), 1, "node 5 is not a member");
    assert_eq!(a.grpc.stats().handshakes_rejected.load(Relaxed), 0);
    // Everything sent has left the queues' byte accounting.
    wait_until(|| a.grpc.stats().queued_bytes.load(Relaxed) == 0).await;
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_to_a_restarted_peer_and_nothing_listens_after_stop() {
    let c = cluster(2);
    let a =
        start(&c, 0, |cfg| cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100)));
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
    a.handle.inject(vec![send(&[1], 2), send(&[1], 3)]).await.unwrap();
    let b2 = start(&c, 1, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    wait_until(|| received(&b2.rec).len() == 2).await;
    assert_eq!(received(&b2.rec), vec![("0".to_owned(), 2), ("0".to_owned(), 3)]);
    // Messages that waited through the outage were counted once and released once.
    wait_until(|| a.grpc.stats().queued_bytes.load(Relaxed) == 0).await;
    stop(a).await;
    stop(b2).await;
}

/// DER of an Ed25519 PKCS#8 v1 key and SubjectPublicKeyInfo up to the 32 key bytes (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// A server verifier that accepts any raw public key with a valid handshake signature.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A hand-made client: TLS presenting the raw public key `present` while signing with `secret`'s
/// key (an impostor when they differ), then the Connect stream carrying `frames`, then waits for
/// the server to close the stream (at most 5 s). `Err` if the connection or stream was refused.
async fn hand_made_client(
    addr: SocketAddr,
    present: [u8; 32],
    secret: &TransportKey,
    frames: Vec<Vec<u8>>,
) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut der = PKCS8_PREFIX.to_vec();
    let hex = secret.to_hex();
    der.extend((0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()));
    let key = provider
        .key_provider
        .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(der.into()))
        .unwrap();
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&present);
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![spki.into()], key));
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified),
        ));
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connector = tower_fn(move |_| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("mir-node").unwrap();
            let s = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("ready: {e}"))?;
    let (out, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/mir.transport.Transport/Connect");
    let resp = grpc
        .streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path,
            RawCodec,
        )
        .await
        .map_err(|e| format!("stream: {e}"))?;
    let mut inbound = resp.into_inner();
    for f in frames {
        out.send(f).await.unwrap();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), inbound.message()).await;
    Ok(())
}

/// `tower::service_fn` without the dependency.
fn tower_fn<F, Fut, T>(f: F) -> ServiceFn<F>
where
    F: FnMut(tonic::codegen::http::Uri) -> Fut,
    Fut: std::future::Future<Output = Result<T, std::io::Error>>,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, T> tonic::codegen::Service<tonic::codegen::http::Uri> for ServiceFn<F>
where
    F: FnMut(tonic::codegen::http::Uri) -> Fut,
    Fut: std::future::Future<Output = Result<T, std::io::Error>>,
{
    type Response = T;
    type Error = std::io::Error;
    type Future = Fut;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Fut {
        (self.0)(uri)
    }
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

fn frame(dest: &str, n: u64) -> Vec<u8> {
    PeerMessage::from_message(&Message::new(dest, TestUint64(n))).encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostors_garbage_and_oversized_frames_are_rejected_and_counted() {
    let c = cluster(3);
    let b = start(&c, 1, |cfg| cfg.max_message_size = 4096);
    let a = start(&c, 0, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    let addr_b = c.membership.nodes[1].address;
    let key = |i: usize| c.keys[&NodeId::from_index(i)].clone();
    let rejected = || b.grpc.stats().handshakes_rejected.load(Relaxed);

    // A key the membership does not list: refused.
    let stranger = TransportKey::generate().unwrap();
    let r = hand_made_client(addr_b, stranger.public_key(), &stranger, vec![frame("app", 1)]).await;
    assert!(r.is_err(), "{r:?}");
    wait_until(|| rejected() >= 1).await;
    // Node 2 presenting node 0's key (without node 0's secret): refused.
    let before = rejected();
    let r = hand_made_client(addr_b, key(0).public_key(), &key(2), vec![frame("app", 2)]).await;
    assert!(r.is_err(), "{r:?}");
    wait_until(|| rejected() > before).await;
    // The real node 2: accepted, and its message is from "2" (the key says who it is).
    hand_made_client(addr_b, key(2).public_key(), &key(2), vec![frame("app", 3)]).await.unwrap();
    wait_until(|| received(&b.rec).contains(&("2".to_owned(), 3))).await;
    assert!(!received(&b.rec).iter().any(|(_, n)| *n < 3));

    // A truncated frame from an authenticated peer (the last field's value is cut off):
    // rejected, counted, the stream closed.
    let whole = frame("app", 4);
    hand_made_client(addr_b, key(2).public_key(), &key(2), vec![whole[..whole.len() - 1].to_vec()])
        .await
        .unwrap();
    wait_until(|| b.grpc.stats().frames_rejected.load(Relaxed) == 1).await;

    // Random bytes on the port: no TLS handshake, closed and counted.
    let before = rejected();
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr_b).unwrap();
        let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1000));
    }
    wait_until(|| rejected() > before).await;
    // An oversized message from a real peer: refused by the receiver, the stream closes.
    let big = Event::new(
        "app",
        "net",
        SendMessage {
            destinations: vec![NodeId::new("1")],
            message: Message::new("app", TestString("x".repeat(10_000))),
        },
    );
    a.handle.inject(vec![big]).await.unwrap();
    wait_until(|| b.grpc.stats().frames_rejected.load(Relaxed) >= 2).await;

    // Node 1 still serves its real peers: node 0 reconnects and is heard.
    a.handle.inject(vec![send(&[1], 99)]).await.unwrap();
    wait_until(|| received(&b.rec).contains(&("0".to_owned(), 99))).await;
    // Peer-caused warnings were counted exactly, and logged only at powers of two.
    assert_eq!(b.grpc.stats().log.count("2", "malformed frame; stream closed"), 1);
    stop(a).await;
    stop(b).await;
}

/// What a test relay does to the bytes it copies.
#[derive(Clone, Default)]
struct RelayControl {
    /// Everything the client sent.
    tap: Arc<Mutex<Vec<u8>>>,
    /// While set, the next chunk from the client gets one bit flipped (once).
    tamper: Arc<std::sync::atomic::AtomicBool>,
    /// While set, nothing is copied either way (the sockets stay open): a silent path.
    freeze: Arc<std::sync::atomic::AtomicBool>,
}

/// Copies bytes between each client and `server` as `ctl` says.
async fn relay(listener: tokio::net::TcpListener, server: SocketAddr, ctl: RelayControl) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
            continue;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut ur, mut uw) = upstream.into_split();
        let c = ctl.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = cr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                while c.freeze.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                c.tap.lock().unwrap().extend_from_slice(&buf[..n]);
                if c.tamper.swap(false, Relaxed) {
                    buf[n / 2] ^= 0x01;
                }
                if uw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let c = ctl.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = ur.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                while c.freeze.load(Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Node 0 reaches node 1 through a relay that records and alters bytes: it reads nothing, and
/// what it alters never arrives as a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_can_neither_read_nor_inject() {
    let c = cluster(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut via_relay = c.membership.clone();
    via_relay.nodes[1].address = listener.local_addr().unwrap();
    let ctl = RelayControl::default();
    let (tap, tamper) = (ctl.tap.clone(), ctl.tamper.clone());
    tokio::spawn(relay(listener, c.membership.nodes[1].address, ctl));
    let b = start(&c, 1, |_| {});
    let a = start_with(&c, 0, via_relay, |cfg| {
        cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100))
    });
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    let secret = |n: u64| {
        Event::new(
            "app",
            "net",
            SendMessage {
                destinations: vec![NodeId::new("1")],
                message: Message::new("app", TestString(format!("SECRET-{n}-PAYLOAD"))),
            },
        )
    };
    let strings = |r: &Collector| -> Vec<String> {
        r.events()
            .iter()
            .filter_map(|e| e.get::<MessageReceived>())
            .map(|m| m.message.payload.decode::<TestString>().unwrap().unwrap().0)
            .collect()
    };
    a.handle.inject(vec![secret(1)]).await.unwrap();
    wait_until(|| strings(&b.rec) == ["SECRET-1-PAYLOAD"]).await;
    // The relay saw only ciphertext.
    let seen = tap.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(!seen.windows(6).any(|w| w == b"SECRET"), "plaintext on the wire");
    assert!(!seen.windows(3).any(|w| w == b"app"), "plaintext on the wire");

    // One flipped bit in the next record: the record fails its check, the connection breaks,
    // nothing altered is delivered; node 0 reconnects and later messages arrive.
    tamper.store(true, Relaxed);
    a.handle.inject(vec![secret(2)]).await.unwrap();
    wait_until(|| !tamper.load(Relaxed)).await;
    for n in 3..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.handle.inject(vec![secret(n)]).await.unwrap();
    }
    wait_until(|| strings(&b.rec).iter().any(|s| s == "SECRET-5-PAYLOAD")).await;
    let got = strings(&b.rec);
    let genuine: Vec<String> = (1..6).map(|n| format!("SECRET-{n}-PAYLOAD")).collect();
    assert!(got.iter().all(|s| genuine.contains(s)), "only genuine messages arrive: {got:?}");
    assert!(got.iter().all(|m| received_from(&b.rec, m) == "0"), "and all from node 0");
    stop(a).await;
    stop(b).await;
}

/// The sender of the received test string `s`.
fn received_from(r: &Collector, s: &str) -> String {
    r.events()
        .iter()
        .filter_map(|e| e.get::<MessageReceived>())
        .find(|m| {
            m.message.payload.decode::<TestString>().ok().flatten().map(|t| t.0)
                == Some(s.to_owned())
        })
        .map(|m| m.from.to_string())
        .unwrap()
}

#[test]
fn bad_configuration_is_refused() {
    let c = cluster(2);
    let wrong = GrpcTransport::new(GrpcConfig::new(
        NodeId::new("0"),
        c.membership.clone(),
        TransportKey::generate().unwrap(),
    ));
    assert!(wrong.err().unwrap().to_string().contains("does not match its transport_key"));
    let outsider = GrpcTransport::new(GrpcConfig::new(
        NodeId::new("9"),
        c.membership.clone(),
        c.keys[&NodeId::new("0")].clone(),
    ));
    assert_eq!(outsider.err().unwrap().to_string(), "node 9 is not in the membership");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_while_traffic_flows_starts_receiving() {
    let c = cluster(3);
    let a =
        start(&c, 0, |cfg| cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100)));
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
    let transport =
        GrpcTransport::new(GrpcConfig::new(id.clone(), c.membership.clone(), c.keys[&id].clone()))
            .unwrap();
    let grpc = transport.handle();
    let (app, got) = common::self_sender("0", 5000);
    let cfg = mir_runtime::NodeConfig {
        inject_capacity: 1,
        max_batch_size: 1,
        ..mir_runtime::NodeConfig::default()
    };
    let node =
        Node::builder(id).config(cfg).passive("app", app).active("net", transport).build().unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    wait_until(|| got.lock().unwrap().len() == 5000).await;
    handle.stop();
    assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
    assert_eq!(*got.lock().unwrap(), (0..5000).collect::<Vec<_>>());
    assert_eq!(grpc.stats().transport.overflow.load(Relaxed), 0);
}

// ---- limits: each one holds ----

/// A TCP connection from `ip` (a loopback address) to `to` that says nothing.
async fn silent_connection(ip: [u8; 4], to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_total_and_per_ip_limits_are_closed_at_accept() {
    let c = cluster(2);
    let b = start(&c, 1, |cfg| {
        cfg.max_connections = 3;
        cfg.max_connections_per_ip = 2;
        cfg.handshake_timeout = Duration::from_secs(30);
    });
    let addr = c.membership.nodes[1].address;
    wait_until(|| b.grpc.local_addr().is_some()).await; // listening
    let refused = || b.grpc.stats().connections_refused.load(Relaxed);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(silent_connection([127, 0, 0, 2], addr).await);
    }
    wait_until(|| refused() == 1).await; // the third from 127.0.0.2
    held.push(silent_connection([127, 0, 0, 3], addr).await);
    held.push(silent_connection([127, 0, 0, 4], addr).await);
    wait_until(|| refused() == 2).await; // the fourth in all
    assert_eq!(b.grpc.inbound_connections(), 3);
    // Closing them frees the places: node 0 gets in.
    drop(held);
    wait_until(|| b.grpc.inbound_connections() == 0).await;
    let a = start(&c, 0, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    a.handle.inject(vec![send(&[1], 1)]).await.unwrap();
    wait_until(|| received(&b.rec) == [("0".to_owned(), 1)]).await;
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_finish_the_handshake_is_closed_at_the_deadline() {
    use tokio::io::AsyncReadExt;
    let c = cluster(1);
    let b = start(&c, 0, |cfg| cfg.handshake_timeout = Duration::from_millis(300));
    wait_until(|| b.grpc.local_addr().is_some()).await; // listening
    let mut s = silent_connection([127, 0, 0, 1], c.membership.nodes[0].address).await;
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 16];
    // The server closes it (read returns end of stream or an error) after the deadline.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed within 10 s");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    wait_until(|| b.grpc.stats().handshakes_rejected.load(Relaxed) == 1).await;
    wait_until(|| b.grpc.inbound_connections() == 0).await;
    stop(b).await;
}

/// A client closes its idle stream itself and comes back when it has something to send; nothing
/// is lost on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_closes_its_stream_and_comes_back_when_it_has_something_to_send() {
    let c = cluster(2);
    let b = start(&c, 1, |_| {});
    let a = start(&c, 0, |cfg| cfg.idle_timeout = Duration::from_millis(100));
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    for round in 0..5u64 {
        a.handle.inject(vec![send(&[1], round)]).await.unwrap();
        wait_until(|| received(&b.rec).len() == round as usize + 1).await;
        wait_until(|| a.grpc.connected() == 0).await; // closed after 100 ms of silence
    }
    let got: Vec<u64> = received(&b.rec).iter().map(|(_, n)| *n).collect();
    assert_eq!(got, (0..5).collect::<Vec<_>>());
    assert_eq!(b.grpc.stats().idle_closed.load(Relaxed), 0, "the client closed first");
    stop(a).await;
    stop(b).await;
}

/// A peer that keeps a stream open and silent is cut off by the server after twice the idle
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closes_a_stream_its_peer_leaves_idle() {
    let c = cluster(3);
    let b = start(&c, 1, |cfg| cfg.idle_timeout = Duration::from_millis(100));
    wait_until(|| b.grpc.local_addr().is_some()).await;
    let key2 = c.keys[&NodeId::from_index(2)].clone();
    let t0 = std::time::Instant::now();
    // Sends nothing and waits (at most 5 s) for the server to end the stream.
    hand_made_client(c.membership.nodes[1].address, key2.public_key(), &key2, vec![])
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(4), "closed by the server, not the 5 s wait");
    wait_until(|| b.grpc.stats().idle_closed.load(Relaxed) == 1).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_member_are_capped() {
    let c = cluster(3);
    let b = start(&c, 1, |cfg| cfg.max_streams_per_member = 1);
    let a = start(&c, 0, |_| {});
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    // Node 0 already has its stream; a second one with its key is refused.
    let key0 = c.keys[&NodeId::from_index(0)].clone();
    let addr = c.membership.nodes[1].address;
    let r = hand_made_client(addr, key0.public_key(), &key0, vec![frame("app", 7)]).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(b.grpc.stats().streams_refused.load(Relaxed), 1);
    // Another member still gets its own.
    let key2 = c.keys[&NodeId::from_index(2)].clone();
    hand_made_client(addr, key2.public_key(), &key2, vec![frame("app", 8)]).await.unwrap();
    wait_until(|| received(&b.rec).contains(&("2".to_owned(), 8))).await;
    assert!(!received(&b.rec).contains(&("0".to_owned(), 7)));
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_drops_a_path_that_went_silent_and_the_client_reconnects() {
    let c = cluster(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut via_relay = c.membership.clone();
    via_relay.nodes[1].address = listener.local_addr().unwrap();
    let ctl = RelayControl::default();
    tokio::spawn(relay(listener, c.membership.nodes[1].address, ctl.clone()));
    let b = start(&c, 1, |_| {});
    let a = start_with(&c, 0, via_relay, |cfg| {
        cfg.keepalive = Duration::from_millis(200);
        cfg.handshake_timeout = Duration::from_millis(500);
        cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(100));
    });
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    // The path goes silent (no reset, no FIN): only keepalive can tell.
    ctl.freeze.store(true, Relaxed);
    wait_until(|| a.grpc.connected() == 0).await;
    ctl.freeze.store(false, Relaxed);
    assert!(a.grpc.wait_connected(1, Duration::from_secs(10)).await);
    a.handle.inject(vec![send(&[1], 5)]).await.unwrap();
    wait_until(|| received(&b.rec).contains(&("0".to_owned(), 5))).await;
    stop(a).await;
    stop(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_never_answers_does_not_wedge_reconnection() {
    let c = cluster(2);
    // "Node 1" accepts TCP connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut view = c.membership.clone();
    view.nodes[1].address = silent.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            count.fetch_add(1, Relaxed);
            held.push(s);
        }
    });
    let a = start_with(&c, 0, view, |cfg| {
        cfg.handshake_timeout = Duration::from_millis(200);
        cfg.reconnect = (Duration::from_millis(20), Duration::from_millis(50));
    });
    // The client gives up on each attempt at the deadline and tries again.
    wait_until(|| accepted.load(Relaxed) >= 3).await;
    assert_eq!(a.grpc.connected(), 0);
    stop(a).await;
}

/// Node `i` with a perfect link (`link`) and a timer between its app and the gRPC transport.
fn start_linked(c: &Cluster, i: usize) -> Running {
    use mir_runtime::stdmodules::{PerfectLink, Timer};
    let id = NodeId::from_index(i);
    let cfg = GrpcConfig::new(id.clone(), c.membership.clone(), c.keys[&id].clone());
    let transport = GrpcTransport::new(cfg).unwrap();
    let grpc = transport.handle();
    let rec = Collector::default();
    let link = PerfectLink::new(id.clone(), 0).retransmission(Duration::from_millis(20), 5);
    let node = Node::builder(id)
        .passive("app", rec.clone())
        .passive("link", link)
        .active("timer", Timer::new())
        .active("net", transport)
        .build()
        .unwrap();
    let handle = node.handle();
    let run = tokio::spawn(node.run());
    Running { handle, grpc, rec, run }
}

/// Perfect links over gRPC: the receiver goes away (its connections break) while the sender keeps
/// sending; when it is back on its address, the link's retransmissions deliver what it missed,
/// each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perfect_links_deliver_across_a_broken_and_restored_connection() {
    let c = cluster(2);
    let to_link = |n: u64| {
        let message = Message::new("app", TestUint64(n));
        Event::new(
            "app",
            "link",
            SendMessage { destinations: vec![NodeId::from_index(1)], message },
        )
    };
    let a = start_linked(&c, 0);
    let b = start_linked(&c, 1);
    a.handle.inject((0..10).map(to_link).collect()).await.unwrap();
    wait_until(|| received(&b.rec).len() == 10).await;
    stop(b).await;
    // Sent while node 1 is down: the transport cannot deliver them; the link keeps them.
    a.handle.inject((10..20).map(to_link).collect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = start_linked(&c, 1);
    wait_until(|| received(&b.rec).len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // time for any duplicate to show up
    let mut got: Vec<u64> = received(&b.rec)
        .into_iter()
        .map(|(from, n)| {
            assert_eq!(from, "0");
            n
        })
        .collect();
    got.sort();
    // What it missed, each once. Messages 0..10 come again only if their acknowledgements had
    // not reached node 0 when node 1 stopped (timing: it happens on a loaded machine); the new
    // incarnation forgot them, so getting them once more is right, and still each only once.
    let missed: Vec<u64> = got.iter().copied().filter(|n| *n >= 10).collect();
    assert_eq!(missed, (10..20).collect::<Vec<_>>(), "what it missed, each once: {got:?}");
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique, got, "a message delivered twice to one incarnation");
    stop(a).await;
    stop(b).await;
}
