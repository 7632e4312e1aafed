//! The gRPC transport (tonic): nodes in different processes or on different machines.
//!
//! # Protocol
//!
//! One bidirectional stream (`/mir.Transport/Connect`) per ordered pair of nodes: node `a` opens a
//! stream to `b` to send `a → b` messages. Frames are the [canonical encoding](crate::codec) of
//! [`Frame`]:
//!
//! 1. the server sends a `Challenge` with a fresh random nonce;
//! 2. the client answers `Hello { from, to, signature }`, signing
//!    `("mir-grpc-hello", from, to, nonce)` with its key from the membership;
//! 3. the server checks that `from` is a member, `to` is itself and the signature is `from`'s, and
//!    answers `Welcome`; from then on every `Msg` on the stream is from `from` — **a node cannot
//!    claim another node's ID**, and a recorded handshake cannot be replayed (the nonce changes);
//! 4. the client sends `Msg` frames.
//!
//! # Guarantees and limits (at the time of writing)
//!
//! * Sending never blocks the node: each peer has a bounded queue (`queue_capacity`); when it is
//!   full the message is dropped and counted (`overflow`). Messages for a node outside the
//!   membership are dropped and counted (`not_connected`).
//! * A client reconnects after errors with exponential backoff (`reconnect`); queued messages wait
//!   (bounded) and the message in flight when a connection broke is sent again first.
//! * Receiving applies back-pressure: a received message waits for room in the node (so HTTP/2
//!   flow control slows the sender) instead of being dropped.
//! * Connections that do not start with the HTTP/2 preface within the handshake timeout (random
//!   bytes, other protocols, idle sockets) are closed before they reach gRPC. Frames over
//!   `max_message_size` are refused by tonic. All of these, malformed or truncated frames, bad
//!   handshakes and messages for modules the node does not have are dropped, logged and counted
//!   ([`GrpcStats`]); the node keeps serving its peers. Traffic is authenticated but **not
//!   encrypted**.
//! * A message for a member that is not connected (yet, or any more) waits in its bounded queue;
//!   one for a node outside the membership is an error of the sender, counted as `not_connected`.
//! * Messages to itself take the [local loopback](super#messages-to-itself): never the network,
//!   never dropped.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use k256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Context as TaskContext, Poll, Service, StdError};
use tonic::{Request, Response, Status, Streaming};

use crate::codec;
use crate::event::{Event, Payload};
use crate::executor::tokio::{EventSink, InjectError};
use crate::id::{ModuleId, NodeId};
use crate::membership::Membership;
use crate::module::{ActiveModule, Batch, Context, ModuleError, ModuleResult};
use crate::stdevents::{Init, Message, MessageReceived, SendMessage};
use crate::stdmodules::ecdsa::{sign, KeyRegistry};
use crate::transport::TransportStats;

const PATH: &str = "/mir.Transport/Connect";
const HELLO: &[u8] = b"mir-grpc-hello";

/// A frame on a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Server → client: sign this.
    Challenge {
        /// A fresh random nonce.
        nonce: Vec<u8>,
    },
    /// Client → server: who I am, proven.
    Hello {
        /// The client.
        from: NodeId,
        /// The server it means to talk to.
        to: NodeId,
        /// `from`'s signature of `("mir-grpc-hello", from, to, nonce)`.
        signature: Vec<u8>,
    },
    /// Server → client: authenticated.
    Welcome,
    /// Client → server: a message.
    Msg(Message),
}

fn hello_data(from: &NodeId, to: &NodeId, nonce: &[u8]) -> Vec<Vec<u8>> {
    vec![
        HELLO.to_vec(),
        from.as_str().as_bytes().to_vec(),
        to.as_str().as_bytes().to_vec(),
        nonce.to_vec(),
    ]
}

/// 32 unpredictable bytes: SHA-256 of OS-seeded hasher keys, a counter and the time.
fn nonce() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    for _ in 0..2 {
        let mut s = std::collections::hash_map::RandomState::new().build_hasher();
        s.write_u64(COUNTER.fetch_add(1, Relaxed));
        h.update(s.finish().to_le_bytes());
    }
    h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    h.finalize().to_vec()
}

/// Settings of the gRPC transport.
#[derive(Clone)]
pub struct GrpcConfig {
    /// This node.
    pub me: NodeId,
    /// All nodes: addresses, public keys.
    pub membership: Membership,
    /// This node's signing key (must match its public key in the membership).
    pub key: SigningKey,
    /// Messages queued per peer before overflow. Default 4096.
    pub queue_capacity: usize,
    /// The largest frame accepted or sent, in bytes. Default 16 MiB.
    pub max_message_size: usize,
    /// Reconnection backoff: first and longest wait. Default 50 ms and 2 s.
    pub reconnect: (Duration, Duration),
    /// How long a peer has to complete the handshake. Default 5 s.
    pub handshake_timeout: Duration,
}

impl GrpcConfig {
    /// Settings with the defaults.
    pub fn new(me: NodeId, membership: Membership, key: SigningKey) -> Self {
        GrpcConfig {
            me,
            membership,
            key,
            queue_capacity: 4096,
            max_message_size: 16 << 20,
            reconnect: (Duration::from_millis(50), Duration::from_secs(2)),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of the gRPC transport beyond [`TransportStats`].
#[derive(Debug, Default)]
pub struct GrpcStats {
    /// The common counters.
    pub transport: TransportStats,
    /// Incoming connections refused at the handshake (bad signature, wrong or unknown ID,
    /// timeout, garbage).
    pub handshakes_rejected: AtomicU64,
    /// Frames after the handshake that could not be decoded (the connection is then closed).
    pub frames_rejected: AtomicU64,
    /// Messages received and handed to the node.
    pub received: AtomicU64,
}

/// A handle to observe and stop a running gRPC transport.
#[derive(Clone)]
pub struct GrpcHandle {
    connected: watch::Receiver<usize>,
    stop: Arc<watch::Sender<bool>>,
    stats: Arc<GrpcStats>,
    local: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

impl GrpcHandle {
    /// Waits until this node has authenticated outgoing connections to at least `n` peers, or
    /// `timeout` passes; returns whether it got there.
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Outgoing connections currently established.
    pub fn connected(&self) -> usize {
        *self.connected.borrow()
    }

    /// Stops the server and all connections (also happens when the transport is dropped).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The counters.
    pub fn stats(&self) -> &GrpcStats {
        &self.stats
    }

    /// The address the server listens on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock().expect("lock")
    }
}

/// The gRPC transport module. Register it as an active module (conventionally `net`).
pub struct GrpcTransport {
    cfg: GrpcConfig,
    registry: KeyRegistry,
    peers: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
    sink: Option<EventSink>,
    connected: Arc<watch::Sender<usize>>,
    handle: GrpcHandle,
}

/// Why a gRPC transport cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// This node is not in the membership.
    #[error("node {0} is not in the membership")]
    NotAMember(NodeId),
    /// A public key in the membership is bad.
    #[error(transparent)]
    Key(#[from] crate::stdmodules::ecdsa::KeyError),
    /// The signing key does not match this node's public key in the membership.
    #[error("the signing key of node {0} does not match its public key in the membership")]
    WrongKey(NodeId),
}

impl GrpcTransport {
    /// A transport for `cfg.me`. It listens and connects when the node starts (at `Init`).
    pub fn new(cfg: GrpcConfig) -> Result<Self, GrpcError> {
        let registry = cfg.membership.registry()?;
        let Some(me) = registry.get(&cfg.me) else {
            return Err(GrpcError::NotAMember(cfg.me.clone()));
        };
        if me != cfg.key.verifying_key() {
            return Err(GrpcError::WrongKey(cfg.me.clone()));
        }
        let (connected, connected_rx) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let handle = GrpcHandle {
            connected: connected_rx,
            stop: Arc::new(stop),
            stats: Arc::default(),
            local: Arc::default(),
        };
        Ok(GrpcTransport {
            cfg,
            registry,
            peers: BTreeMap::new(),
            sink: None,
            connected: Arc::new(connected),
            handle,
        })
    }

    /// A handle to observe and stop the transport.
    pub fn handle(&self) -> GrpcHandle {
        self.handle.clone()
    }

    fn start(&mut self, sink: EventSink) -> Result<(), ModuleError> {
        let addr = self
            .cfg
            .membership
            .get(&self.cfg.me)
            .expect("checked in new")
            .address;
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| {
            ModuleError::new(format!(
                "gRPC transport of node {}: cannot listen on {addr}: {e}",
                self.cfg.me
            ))
        })?;
        std_listener
            .set_nonblocking(true)
            .map_err(ModuleError::new)?;
        *self.handle.local.lock().expect("lock") = std_listener.local_addr().ok();
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(ModuleError::new)?;
        let server = Server(Arc::new(ServerState {
            me: self.cfg.me.clone(),
            registry: self.registry.clone(),
            sink: sink.clone(),
            stats: self.handle.stats.clone(),
            handshake_timeout: self.cfg.handshake_timeout,
            max: self.cfg.max_message_size,
            stop: self.handle.stop.subscribe(),
        }));
        let mut stop = self.handle.stop.subscribe();
        let incoming = screen_connections(
            listener,
            self.handle.stats.clone(),
            self.cfg.handshake_timeout,
            self.handle.stop.subscribe(),
        );
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(server, incoming, shutdown)
                .await
            {
                tracing::warn!(error = %e, "gRPC server ended with an error");
            }
        });
        for m in &self.cfg.membership.nodes {
            if m.id == self.cfg.me {
                continue;
            }
            let (tx, rx) = mpsc::channel(self.cfg.queue_capacity);
            self.peers.insert(m.id.clone(), tx);
            let client = Client {
                me: self.cfg.me.clone(),
                peer: m.id.clone(),
                addr: m.address,
                key: self.cfg.key.clone(),
                max: self.cfg.max_message_size,
                reconnect: self.cfg.reconnect,
                connected: self.connected.clone(),
                stop: self.handle.stop.subscribe(),
            };
            tokio::spawn(client.run(rx));
        }
        self.sink = Some(sink);
        Ok(())
    }

    fn send(&mut self, send: SendMessage, cx: &mut Context<'_>) {
        let stats = &self.handle.stats.transport;
        let message = Message {
            dest_module: send.message.dest_module,
            payload: Payload::encoded(
                send.message.payload.name(),
                send.message.payload.encode_value(),
            ),
        };
        let mut frame: Option<Vec<u8>> = None;
        for dest in send.destinations {
            stats.sent.fetch_add(1, Relaxed);
            if dest == self.cfg.me {
                super::loopback(cx, stats, dest, &message);
                continue;
            }
            let Some(tx) = self.peers.get(&dest) else {
                stats.not_connected.fetch_add(1, Relaxed);
                tracing::warn!(node = %self.cfg.me, dest = %dest, "gRPC transport: not a member; message dropped");
                continue;
            };
            let bytes = frame
                .get_or_insert_with(|| codec::encode(&Frame::Msg(message.clone())))
                .clone();
            if let Err(e) = tx.try_send(bytes) {
                match e {
                    mpsc::error::TrySendError::Full(_) => stats.overflow.fetch_add(1, Relaxed),
                    mpsc::error::TrySendError::Closed(_) => {
                        stats.not_connected.fetch_add(1, Relaxed)
                    }
                };
                tracing::warn!(node = %self.cfg.me, dest = %dest, "gRPC transport: queue to peer full; message dropped");
            }
        }
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

impl ActiveModule for GrpcTransport {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                let Some(sink) = cx.sink() else {
                    return Err(ModuleError::new(
                        "the gRPC transport runs on the production executor only",
                    ));
                };
                self.start(sink)?;
                continue;
            }
            match ev.into_payload::<SendMessage>() {
                Ok(s) => self.send(s, cx),
                Err(e) => {
                    return Err(ModuleError::new(format!(
                        "the gRPC transport only handles mir.SendMessage ({e})"
                    )))
                }
            }
        }
        Ok(())
    }
}

// ---- accepting connections ----

/// What every HTTP/2 connection starts with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepts TCP connections and passes on only those that start like HTTP/2 within the handshake
/// timeout; the others (random bytes, other protocols, idle sockets) are closed, logged and
/// counted as rejected handshakes, without ever reaching the gRPC server.
fn screen_connections(
    listener: tokio::net::TcpListener,
    stats: Arc<GrpcStats>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<std::io::Result<tokio::net::TcpStream>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC transport: accept failed");
                    continue;
                }
            };
            let (tx, stats) = (tx.clone(), stats.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 24];
                let ok = tokio::time::timeout(timeout, async {
                    loop {
                        match stream.peek(&mut buf).await {
                            Ok(n) if n >= H2_PREFACE.len() => return buf == *H2_PREFACE,
                            Ok(n) if n == 0 || buf[..n] != H2_PREFACE[..n] => return false,
                            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                            Err(_) => return false,
                        }
                    }
                })
                .await
                .unwrap_or(false);
                if ok {
                    let _ = tx.send(Ok(stream)).await;
                } else {
                    stats.handshakes_rejected.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, "gRPC transport: connection that does not speak HTTP/2 closed");
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

// ---- the wire: raw frames ----

#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

// ---- the server side ----

struct ServerState {
    me: NodeId,
    registry: KeyRegistry,
    sink: EventSink,
    stats: Arc<GrpcStats>,
    handshake_timeout: Duration,
    max: usize,
    stop: watch::Receiver<bool>,
}

#[derive(Clone)]
struct Server(Arc<ServerState>);

impl tonic::server::NamedService for Server {
    const NAME: &'static str = "mir.Transport";
}

impl<B> Service<http::Request<B>> for Server
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let state = self.0.clone();
        if req.uri().path() != PATH {
            return Box::pin(async move {
                state.stats.handshakes_rejected.fetch_add(1, Relaxed);
                Ok(Status::unimplemented("unknown method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(state.max)
                .max_encoding_message_size(state.max);
            Ok(grpc.streaming(Stream(state), req).await)
        })
    }
}

#[derive(Clone)]
struct Stream(Arc<ServerState>);

impl Service<Request<Streaming<Vec<u8>>>> for Stream {
    type Response = Response<ReceiverStream<Result<Vec<u8>, Status>>>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Vec<u8>>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(2);
            tokio::spawn(serve_stream(state, req.into_inner(), tx));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// Handshake, then hand every message to the node.
async fn serve_stream(
    state: Arc<ServerState>,
    mut inbound: Streaming<Vec<u8>>,
    out: mpsc::Sender<Result<Vec<u8>, Status>>,
) {
    let reject = |why: String| {
        state.stats.handshakes_rejected.fetch_add(1, Relaxed);
        tracing::warn!(node = %state.me, reason = %why, "gRPC transport: connection refused at the handshake");
    };
    let nonce = nonce();
    if out
        .send(Ok(codec::encode(&Frame::Challenge {
            nonce: nonce.clone(),
        })))
        .await
        .is_err()
    {
        return;
    }
    let hello = match tokio::time::timeout(state.handshake_timeout, inbound.message()).await {
        Err(_) => return reject("no Hello before the timeout".into()),
        Ok(Err(e)) => return reject(format!("stream error: {e}")),
        Ok(Ok(None)) => return reject("closed before Hello".into()),
        Ok(Ok(Some(bytes))) => codec::decode::<Frame>("mir.grpc.Frame", &bytes),
    };
    let from = match hello {
        Ok(Frame::Hello {
            from,
            to,
            signature,
        }) => {
            if to != state.me {
                return reject(format!("Hello for node {to}, this is node {}", state.me));
            }
            if let Some(e) =
                state
                    .registry
                    .check(&from, &hello_data(&from, &to, &nonce), &signature)
            {
                let _ = out.send(Err(Status::unauthenticated("bad Hello"))).await;
                return reject(format!("Hello claiming to be {from}: {e}"));
            }
            from
        }
        Ok(other) => return reject(format!("expected Hello, got {other:?}")),
        Err(e) => return reject(format!("malformed Hello: {e}")),
    };
    if out.send(Ok(codec::encode(&Frame::Welcome))).await.is_err() {
        return;
    }
    let mut stop = state.stop.clone();
    loop {
        let next = tokio::select! {
            m = inbound.message() => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        let bytes = match next {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e)
                if matches!(
                    e.code(),
                    tonic::Code::OutOfRange | tonic::Code::InvalidArgument | tonic::Code::Internal
                ) =>
            {
                // An oversized or malformed gRPC frame.
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                tracing::warn!(node = %state.me, peer = %from, error = %e, "gRPC transport: bad frame; connection closed");
                return;
            }
            Err(e) => {
                // The peer went away (stopped, crashed, network): it will reconnect.
                tracing::debug!(node = %state.me, peer = %from, error = %e, "gRPC transport: connection lost");
                return;
            }
        };
        let message = match codec::decode::<Frame>("mir.grpc.Frame", &bytes) {
            Ok(Frame::Msg(m)) => m,
            Ok(other) => {
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                tracing::warn!(node = %state.me, peer = %from, frame = ?other, "gRPC transport: unexpected frame; connection closed");
                return;
            }
            Err(e) => {
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                tracing::warn!(node = %state.me, peer = %from, error = %e, "gRPC transport: malformed frame; connection closed");
                return;
            }
        };
        let ev = Event::new(
            ModuleId::node(),
            message.dest_module.clone(),
            MessageReceived {
                from: from.clone(),
                message,
            },
        );
        match state.sink.inject(vec![ev]).await {
            Ok(()) => {
                state.stats.received.fetch_add(1, Relaxed);
            }
            Err(InjectError::UnknownDestination { dest, .. }) => {
                state.stats.transport.rejected.fetch_add(1, Relaxed);
                tracing::warn!(node = %state.me, peer = %from, module = %dest, "gRPC transport: message for a module this node does not have; dropped");
            }
            Err(_) => return, // the node stopped
        }
    }
}

// ---- the client side ----

struct Client {
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    key: SigningKey,
    max: usize,
    reconnect: (Duration, Duration),
    connected: Arc<watch::Sender<usize>>,
    stop: watch::Receiver<bool>,
}

impl Client {
    async fn run(mut self, mut queue: mpsc::Receiver<Vec<u8>>) {
        let mut backoff = self.reconnect.0;
        let mut pending: Option<Vec<u8>> = None;
        loop {
            if *self.stop.borrow() {
                return;
            }
            match self.session(&mut queue, &mut pending).await {
                Ok(true) => return, // stopped or the node is gone
                Ok(false) => backoff = self.reconnect.0,
                Err(e) => {
                    tracing::debug!(node = %self.me, peer = %self.peer, error = %e, "gRPC transport: connection attempt failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(self.reconnect.1);
        }
    }

    /// One connection: handshake, then forward the queue. `Ok(true)`: stop for good.
    async fn session(
        &mut self,
        queue: &mut mpsc::Receiver<Vec<u8>>,
        pending: &mut Option<Vec<u8>>,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(1));
        let channel = endpoint.connect().await?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.max)
            .max_encoding_message_size(self.max);
        grpc.ready().await?;
        let (out, out_rx) = mpsc::channel::<Vec<u8>>(64);
        let resp = grpc
            .streaming(
                Request::new(ReceiverStream::new(out_rx)),
                http::uri::PathAndQuery::from_static(PATH),
                RawCodec,
            )
            .await?;
        let mut inbound = resp.into_inner();
        let Some(bytes) = inbound.message().await? else {
            return Err("closed before the challenge".into());
        };
        let Frame::Challenge { nonce } = codec::decode::<Frame>("mir.grpc.Frame", &bytes)? else {
            return Err("expected a challenge".into());
        };
        let signature = sign(&self.key, &hello_data(&self.me, &self.peer, &nonce));
        out.send(codec::encode(&Frame::Hello {
            from: self.me.clone(),
            to: self.peer.clone(),
            signature,
        }))
        .await?;
        match inbound.message().await? {
            Some(b) if codec::decode::<Frame>("mir.grpc.Frame", &b)? == Frame::Welcome => {}
            _ => return Err("handshake refused".into()),
        }
        self.connected.send_modify(|c| *c += 1);
        let res = self.forward(queue, pending, &out, &mut inbound).await;
        self.connected.send_modify(|c| *c -= 1);
        res
    }

    async fn forward(
        &mut self,
        queue: &mut mpsc::Receiver<Vec<u8>>,
        pending: &mut Option<Vec<u8>>,
        out: &mpsc::Sender<Vec<u8>>,
        inbound: &mut Streaming<Vec<u8>>,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        loop {
            if pending.is_none() {
                tokio::select! {
                    m = queue.recv() => match m {
                        Some(m) => *pending = Some(m),
                        None => return Ok(true),
                    },
                    _ = self.stop.wait_for(|s| *s) => return Ok(true),
                    r = inbound.message() => {
                        r?;
                        return Ok(false); // the server closed the stream
                    }
                }
            }
            let frame = pending.clone().expect("set above");
            tokio::select! {
                r = out.send(frame) => {
                    r?;
                    *pending = None;
                }
                _ = self.stop.wait_for(|s| *s) => return Ok(true),
            }
        }
    }
}
