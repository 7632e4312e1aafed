//! The gRPC transport (tonic over rustls): nodes in different processes or on different machines.
//!
//! # Protocol
//!
//! The service is described in `mir-runtime/proto/mir_transport.proto` (for tools in any
//! language). One bidirectional stream (`/mir.transport.Transport/Connect`) per ordered pair of
//! nodes: node `a` opens a stream to `b` to send `a → b` messages, each a [`PeerMessage`]
//! (protobuf; the event payload inside stays in the [canonical encoding](crate::codec)).
//!
//! Every connection is **TLS 1.3 with mutual authentication by the transport keys pinned in the
//! membership** ([`tls`](super::tls)): a connection from or to a key the membership does not list
//! is refused and counted, the sender of every message is the member whose key authenticated the
//! channel (no frame names its sender, so a member cannot claim another's ID), and an attacker on
//! the path can neither read nor inject nor replay.
//!
//! # Limits (each a field of [`GrpcConfig`], with its default)
//!
//! | limit | default | when exceeded |
//! |---|---|---|
//! | messages queued per peer (`queue_capacity`) | 4096 | dropped, counted `overflow` |
//! | bytes queued per peer (`queue_bytes`) | 64 MiB | dropped, counted `overflow` |
//! | one message (`max_message_size`) | 16 MiB | sender drops it (`too_large`); receiver closes the stream (`frames_rejected`) |
//! | inbound connections in total (`max_connections`) | 256 | closed at accept (`connections_refused`) |
//! | inbound connections per remote IP (`max_connections_per_ip`) | 64 | closed at accept (`connections_refused`) |
//! | TCP + TLS handshake, and the first response (`handshake_timeout`) | 5 s | closed (`handshakes_rejected`); a client gives up and retries |
//! | a stream with no message (`idle_timeout`) | 300 s | the client closes it and reconnects when it has something to send; a server closes one idle for twice as long (`idle_closed`) |
//! | concurrent streams per connection and per member (`max_streams_per_member`) | 4 | refused (`streams_refused`) |
//! | HTTP/2 keepalive ping interval and answer deadline (`keepalive`) | 10 s | the connection is closed (both sides) |
//! | reconnection back-off (`reconnect`) | 50 ms doubling to 2 s | — |
//! | back-off after a failed `accept` (EMFILE, …) | 10 ms doubling to 1 s | counted `accept_errors` |
//!
//! **Worst-case memory a peer can make this node hold** in the transport: inbound, at most
//! `max_streams_per_member` streams, each holding one message of at most `max_message_size`
//! while it waits for room in the node (back-pressure: HTTP/2 flow control then stops the peer),
//! plus HTTP/2 buffers (tonic's defaults: 64 KiB stream and 1 MiB connection windows); outbound,
//! `queue_bytes` per peer — queued messages, the one being retried and those waiting for HTTP/2
//! all count until HTTP/2 takes them — plus what HTTP/2 holds within its flow-control window (a
//! peer that stops reading makes its own queue fill and then overflow; it never grows past the
//! budget; [`GrpcStats::queued_bytes`] shows the total). Connections that have not finished
//! the TLS handshake hold a socket and a rustls state for at most `handshake_timeout`, at most
//! `max_connections` of them.
//!
//! # Guarantees
//!
//! * Sending never blocks the node: a full queue drops and counts. Messages for a node outside
//!   the membership are dropped and counted (`not_connected`).
//! * A client reconnects after errors with exponential back-off; queued messages wait (bounded)
//!   and the message in flight when a connection broke is sent again first.
//! * Receiving applies back-pressure: a received message waits for room in the node.
//! * Everything a peer can get wrong (a bad handshake, an unknown key, garbage bytes, a malformed
//!   or oversized frame, a message for a module the node does not have) is dropped, counted in
//!   [`GrpcStats`] and logged at most at the 1st, 2nd, 4th, 8th, … occurrence per peer and
//!   reason ([`ratelog`](crate::ratelog)); the node keeps serving its peers.
//! * Messages to itself take the [local loopback](super#messages-to-itself).
//! * Reconfiguration: a [`MembershipUpdate`] event adds the nodes it lists that the transport
//!   did not know (their connections are accepted from then on, and they are dialled). Nodes
//!   are never removed (a node that leaves stops itself; the protocols count only their own
//!   memberships' votes), and a known node's address and key do not change.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Context as TaskContext, Poll, Service, StdError};
use tonic::{Request, Response, Status, Streaming};

use super::tls::{server_name, Tls, TransportKey};
use crate::core::{EventSink, InjectError};
use crate::event::{Event, Payload};
use crate::id::{ModuleId, NodeId};
use crate::membership::{Member, Membership};
use crate::module::{ActiveModule, Batch, Context, ModuleError, ModuleResult};
use crate::ratelog::{escaped, LogLimiter};
use crate::stdevents::{Init, MembershipUpdate, Message, MessageReceived, SendMessage};
use crate::transport::TransportStats;

const PATH: &str = "/mir.transport.Transport/Connect";

/// The longest payload type name accepted from a peer.
pub const MAX_TYPE_NAME: usize = 256;

/// One message on a stream: the `PeerMessage` of `proto/mir_transport.proto`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PeerMessage {
    /// The destination module's ID.
    #[prost(string, tag = "1")]
    pub dest_module: String,
    /// The payload's stable type name.
    #[prost(string, tag = "2")]
    pub payload_type: String,
    /// The payload in the canonical encoding.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
}

impl PeerMessage {
    /// The wire form of `m`.
    pub fn from_message(m: &Message) -> Self {
        PeerMessage {
            dest_module: m.dest_module.to_string(),
            payload_type: m.payload.name().to_owned(),
            payload: m.payload.encode_value(),
        }
    }

    /// Decodes and checks one frame: a valid module ID and a plausible type name.
    ///
    /// ```
    /// use mir_runtime::transport::grpc::PeerMessage;
    /// use mir_runtime::stdevents::{Message, TestUint64};
    /// use prost::Message as _;
    /// let m = Message::new("app", TestUint64(7));
    /// let bytes = PeerMessage::from_message(&m).encode_to_vec();
    /// assert_eq!(PeerMessage::decode_message(&bytes).unwrap(), m);
    /// assert!(PeerMessage::decode_message(&[0xff]).is_err());
    /// ```
    pub fn decode_message(bytes: &[u8]) -> Result<Message, String> {
        use prost::Message as _;
        let m = PeerMessage::decode(bytes).map_err(|e| format!("not a PeerMessage: {e}"))?;
        let dest_module = ModuleId::try_new(&m.dest_module)
            .map_err(|e| format!("bad destination module: {e}"))?;
        if m.payload_type.is_empty() || m.payload_type.len() > MAX_TYPE_NAME {
            return Err(format!(
                "payload type name of {} bytes (1 to {MAX_TYPE_NAME})",
                m.payload_type.len()
            ));
        }
        Ok(Message { dest_module, payload: Payload::encoded(m.payload_type, m.payload) })
    }
}

/// Settings of the gRPC transport (see the [limits](self#limits-each-a-field-of-grpcconfig-with-its-default)).
#[derive(Clone)]
pub struct GrpcConfig {
    /// This node.
    pub me: NodeId,
    /// All nodes: addresses, public keys.
    pub membership: Membership,
    /// This node's transport key (its public part must be this node's `transport_key` in the
    /// membership).
    pub transport_key: TransportKey,
    /// Messages queued per peer before overflow. Default 4096.
    pub queue_capacity: usize,
    /// Bytes queued per peer before overflow. Default 64 MiB.
    pub queue_bytes: usize,
    /// The largest message accepted or sent, in bytes. Default 16 MiB.
    pub max_message_size: usize,
    /// Reconnection back-off: first and longest wait. Default 50 ms and 2 s.
    pub reconnect: (Duration, Duration),
    /// How long a connection has for TCP and TLS handshakes and the first response. Default 5 s.
    pub handshake_timeout: Duration,
    /// A client closes its stream after sending nothing for this long (and opens a new one when
    /// it has something to send); a server closes an inbound stream that carried nothing for
    /// twice as long (a peer that does not close its own). Default 300 s.
    pub idle_timeout: Duration,
    /// HTTP/2 keepalive: ping interval, and how long an answer may take. Default 10 s.
    pub keepalive: Duration,
    /// Inbound connections at once. Default 256.
    pub max_connections: usize,
    /// Inbound connections at once from one IP address. Default 64.
    pub max_connections_per_ip: usize,
    /// Concurrent inbound streams per connection and per member. Default 4.
    pub max_streams_per_member: usize,
}

impl GrpcConfig {
    /// Settings with the defaults.
    pub fn new(me: NodeId, membership: Membership, transport_key: TransportKey) -> Self {
        GrpcConfig {
            me,
            membership,
            transport_key,
            queue_capacity: 4096,
            queue_bytes: 64 << 20,
            max_message_size: 16 << 20,
            reconnect: (Duration::from_millis(50), Duration::from_secs(2)),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            keepalive: Duration::from_secs(10),
            max_connections: 256,
            max_connections_per_ip: 64,
            max_streams_per_member: 4,
        }
    }
}

/// Counters of the gRPC transport beyond [`TransportStats`].
#[derive(Debug, Default)]
pub struct GrpcStats {
    /// The common counters.
    pub transport: TransportStats,
    /// Inbound connections that failed the TLS handshake (unknown key, a key without its
    /// secret, not TLS, too slow).
    pub handshakes_rejected: AtomicU64,
    /// Inbound connections closed at accept because of `max_connections` or
    /// `max_connections_per_ip`.
    pub connections_refused: AtomicU64,
    /// Failed `accept` calls (each followed by a back-off).
    pub accept_errors: AtomicU64,
    /// Streams refused because the member already had `max_streams_per_member`.
    pub streams_refused: AtomicU64,
    /// Inbound streams closed by this node for carrying nothing for twice `idle_timeout` (the
    /// peer should have closed them).
    pub idle_closed: AtomicU64,
    /// Frames that could not be decoded or were too large (the stream is then closed).
    pub frames_rejected: AtomicU64,
    /// Messages this node did not send because they exceed `max_message_size`.
    pub too_large: AtomicU64,
    /// Messages received and handed to the node.
    pub received: AtomicU64,
    /// Bytes waiting in the send queues now, all peers together (at most `queue_bytes` per
    /// peer).
    pub queued_bytes: AtomicUsize,
    /// Which peer-caused warnings were logged (exact counts per peer and reason).
    pub log: LogLimiter,
}

impl GrpcStats {
    /// Counts `reason` for `peer` and logs it at the 1st, 2nd, 4th, … occurrence.
    fn warn(&self, me: &NodeId, peer: &str, reason: &'static str, detail: &str) {
        if let Some(count) = self.log.occurred(peer, reason) {
            tracing::warn!(node = %me, peer = %escaped(peer), count, detail = %escaped(detail), "gRPC transport: {reason}");
        }
    }
}

/// A handle to observe and stop a running gRPC transport.
#[derive(Clone)]
pub struct GrpcHandle {
    connected: watch::Receiver<usize>,
    stop: Arc<watch::Sender<bool>>,
    stats: Arc<GrpcStats>,
    local: Arc<Mutex<Option<SocketAddr>>>,
    limits: Arc<Mutex<Limits>>,
}

impl GrpcHandle {
    /// Waits until this node has authenticated outgoing connections to at least `n` peers, or
    /// `timeout` passes; returns whether it got there.
    pub async fn wait_connected(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await.is_ok_and(|r| r.is_ok())
    }

    /// Outgoing connections currently established.
    pub fn connected(&self) -> usize {
        *self.connected.borrow()
    }

    /// Inbound connections currently open (handshaking or established).
    pub fn inbound_connections(&self) -> usize {
        self.limits.lock().expect("lock").total
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

/// A peer's send queue: frames and the bytes they hold.
struct PeerQueue {
    tx: mpsc::Sender<Bytes>,
    bytes: Arc<AtomicUsize>,
}

/// The gRPC transport module. Register it as an active module (conventionally `net`).
pub struct GrpcTransport {
    cfg: GrpcConfig,
    tls: Tls,
    peers: BTreeMap<NodeId, PeerQueue>,
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
    /// The transport key does not match this node's `transport_key` in the membership.
    #[error("the transport key of node {0} does not match its transport_key in the membership")]
    WrongKey(NodeId),
    /// The TLS settings cannot be built.
    #[error(transparent)]
    Tls(#[from] super::tls::TransportKeyError),
}

impl GrpcTransport {
    /// A transport for `cfg.me`. It listens and connects when the node starts (at `Init`).
    pub fn new(cfg: GrpcConfig) -> Result<Self, GrpcError> {
        let Some(me) = cfg.membership.get(&cfg.me) else {
            return Err(GrpcError::NotAMember(cfg.me.clone()));
        };
        if me.transport_key != cfg.transport_key.public_key() {
            return Err(GrpcError::WrongKey(cfg.me.clone()));
        }
        let tls = Tls::new(&cfg.transport_key, &cfg.membership.transport_keys())?;
        let (connected, connected_rx) = watch::channel(0);
        let (stop, _) = watch::channel(false);
        let handle = GrpcHandle {
            connected: connected_rx,
            stop: Arc::new(stop),
            stats: Arc::default(),
            local: Arc::default(),
            limits: Arc::default(),
        };
        Ok(GrpcTransport {
            cfg,
            tls,
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
        let addr = self.cfg.membership.get(&self.cfg.me).expect("checked in new").address;
        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| {
            ModuleError::new(format!(
                "gRPC transport of node {}: cannot listen on {addr}: {e}",
                self.cfg.me
            ))
        })?;
        std_listener.set_nonblocking(true).map_err(ModuleError::new)?;
        *self.handle.local.lock().expect("lock") = std_listener.local_addr().ok();
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(ModuleError::new)?;
        let state = Arc::new(ServerState {
            me: self.cfg.me.clone(),
            sink: sink.clone(),
            stats: self.handle.stats.clone(),
            cfg: self.cfg.clone(),
            tls: self.tls.clone(),
            streams: Mutex::default(),
            stop: self.handle.stop.subscribe(),
        });
        let mut stop = self.handle.stop.subscribe();
        let incoming = accept_connections(listener, state.clone(), self.handle.limits.clone());
        let server = Server(state);
        let keepalive = self.cfg.keepalive;
        let streams = u32::try_from(self.cfg.max_streams_per_member).unwrap_or(u32::MAX);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(keepalive))
                .http2_keepalive_timeout(Some(keepalive))
                .max_concurrent_streams(Some(streams))
                .serve_with_incoming_shutdown(server, incoming, shutdown)
                .await
            {
                tracing::warn!(error = %e, "gRPC server ended with an error");
            }
        });
        for m in self.cfg.membership.nodes.clone() {
            self.connect(&m);
        }
        self.sink = Some(sink);
        Ok(())
    }

    /// Opens the queue and the client task to peer `m` (not to itself).
    fn connect(&mut self, m: &Member) {
        if m.id == self.cfg.me || self.peers.contains_key(&m.id) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.cfg.queue_capacity.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        self.peers.insert(m.id.clone(), PeerQueue { tx, bytes: bytes.clone() });
        let client = Client {
            me: self.cfg.me.clone(),
            peer: m.id.clone(),
            addr: m.address,
            tls: self.tls.client(&m.id).expect("one client config per member"),
            cfg: self.cfg.clone(),
            queued: bytes,
            stats: self.handle.stats.clone(),
            connected: self.connected.clone(),
            stop: self.handle.stop.subscribe(),
        };
        tokio::spawn(client.run(rx));
    }

    /// Reconfiguration: accepts and dials the members it did not know. A known member keeps its
    /// address and key (a change is logged and ignored).
    fn update(&mut self, u: MembershipUpdate) {
        for m in u.members {
            if let Some(known) = self.cfg.membership.get(&m.id) {
                if known.address != m.address || known.transport_key != m.transport_key {
                    tracing::warn!(
                        node = %m.id,
                        "a membership update changes a known node's address or key: ignored"
                    );
                }
                continue;
            }
            if let Err(e) = self.tls.add_member(&m.id, &m.transport_key) {
                tracing::warn!(node = %m.id, error = %e, "a new member's transport key is unusable");
                continue;
            }
            tracing::info!(node = %m.id, address = %m.address, "new member");
            self.cfg.membership.nodes.push(m.clone());
            if self.sink.is_some() {
                self.connect(&m);
            }
        }
    }

    fn send(&mut self, send: SendMessage, cx: &mut Context<'_>) {
        use prost::Message as _;
        let stats = &self.handle.stats;
        let message = Message {
            dest_module: send.message.dest_module,
            payload: Payload::encoded(
                send.message.payload.name(),
                send.message.payload.encode_value(),
            ),
        };
        let mut frame: Option<Bytes> = None;
        for dest in send.destinations {
            stats.transport.sent.fetch_add(1, Relaxed);
            if dest == self.cfg.me {
                super::loopback(cx, &stats.transport, dest, &message);
                continue;
            }
            let Some(q) = self.peers.get(&dest) else {
                stats.transport.not_connected.fetch_add(1, Relaxed);
                stats.warn(
                    &self.cfg.me,
                    dest.as_str(),
                    "message for a node outside the membership dropped",
                    "",
                );
                continue;
            };
            let bytes = frame
                .get_or_insert_with(|| PeerMessage::from_message(&message).encode_to_vec().into())
                .clone(); // shared, not copied, per destination
            let len = bytes.len();
            if len > self.cfg.max_message_size {
                stats.too_large.fetch_add(1, Relaxed);
                stats.warn(
                    &self.cfg.me,
                    dest.as_str(),
                    "message larger than max_message_size not sent",
                    message.payload.name(),
                );
                continue;
            }
            if q.bytes.load(Relaxed) + len > self.cfg.queue_bytes {
                stats.transport.overflow.fetch_add(1, Relaxed);
                stats.warn(
                    &self.cfg.me,
                    dest.as_str(),
                    "queue to peer over its byte budget; message dropped",
                    "",
                );
                continue;
            }
            q.bytes.fetch_add(len, Relaxed);
            stats.queued_bytes.fetch_add(len, Relaxed);
            if let Err(e) = q.tx.try_send(bytes) {
                q.bytes.fetch_sub(len, Relaxed);
                stats.queued_bytes.fetch_sub(len, Relaxed);
                match e {
                    mpsc::error::TrySendError::Full(_) => {
                        stats.transport.overflow.fetch_add(1, Relaxed)
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        stats.transport.not_connected.fetch_add(1, Relaxed)
                    }
                };
                stats.warn(&self.cfg.me, dest.as_str(), "queue to peer full; message dropped", "");
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
            if let Some(u) = ev.get::<MembershipUpdate>() {
                self.update(u.clone());
                continue;
            }
            match ev.into_payload::<SendMessage>() {
                Ok(s) => self.send(s, cx),
                Err(e) => {
                    return Err(ModuleError::new(format!(
                        "the gRPC transport only handles mir.SendMessage and mir.MembershipUpdate ({e})"
                    )))
                }
            }
        }
        Ok(())
    }
}

// ---- accepting connections ----

/// Inbound connections open now, in total and per remote IP.
#[derive(Debug, Default)]
struct Limits {
    total: usize,
    per_ip: BTreeMap<IpAddr, usize>,
}

/// One open inbound connection (released when the connection is dropped).
struct ConnGuard {
    limits: Arc<Mutex<Limits>>,
    ip: IpAddr,
}

impl ConnGuard {
    /// Takes a place for a connection from `ip`, if the limits allow.
    fn take(limits: &Arc<Mutex<Limits>>, ip: IpAddr, cfg: &GrpcConfig) -> Option<Self> {
        let mut l = limits.lock().expect("lock");
        let from_ip = l.per_ip.get(&ip).copied().unwrap_or(0);
        if l.total >= cfg.max_connections || from_ip >= cfg.max_connections_per_ip {
            return None;
        }
        l.total += 1;
        *l.per_ip.entry(ip).or_default() += 1;
        Some(ConnGuard { limits: limits.clone(), ip })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.total -= 1;
        if let Some(n) = l.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                l.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Who is on the other end of an inbound connection (from the TLS handshake).
#[derive(Debug, Clone)]
struct PeerInfo {
    node: NodeId,
}

/// An authenticated inbound connection.
struct PeerStream {
    io: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    _guard: ConnGuard,
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

/// Accepts TCP connections within the limits and passes on those that complete the TLS
/// handshake with a member's pinned key within the handshake timeout; the others are closed,
/// logged (rate-limited) and counted, without ever reaching the gRPC server.
fn accept_connections(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    limits: Arc<Mutex<Limits>>,
) -> ReceiverStream<std::io::Result<PeerStream>> {
    const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls.server.clone());
    let mut stop = state.stop.clone();
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let (stream, remote) = match accepted {
                Ok(a) => {
                    backoff = FIRST_BACKOFF;
                    a
                }
                Err(e) => {
                    // Out of file descriptors, or a transient error: wait instead of spinning.
                    state.stats.accept_errors.fetch_add(1, Relaxed);
                    state.stats.warn(&state.me, "-", "accept failed", &e.to_string());
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Some(guard) = ConnGuard::take(&limits, remote.ip(), &state.cfg) else {
                state.stats.connections_refused.fetch_add(1, Relaxed);
                state.stats.warn(
                    &state.me,
                    &remote.ip().to_string(),
                    "connection over the limits closed",
                    "",
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (tx, state, acceptor) = (tx.clone(), state.clone(), acceptor.clone());
            tokio::spawn(async move {
                let peer = remote.to_string();
                let tls = match tokio::time::timeout(
                    state.cfg.handshake_timeout,
                    acceptor.accept(stream),
                )
                .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        state.stats.handshakes_rejected.fetch_add(1, Relaxed);
                        return state.stats.warn(
                            &state.me,
                            &peer,
                            "TLS handshake failed",
                            &e.to_string(),
                        );
                    }
                    Err(_) => {
                        state.stats.handshakes_rejected.fetch_add(1, Relaxed);
                        return state.stats.warn(&state.me, &peer, "TLS handshake timed out", "");
                    }
                };
                let Some(node) = state.tls.peer_of(tls.get_ref().1.peer_certificates()) else {
                    state.stats.handshakes_rejected.fetch_add(1, Relaxed);
                    return state.stats.warn(
                        &state.me,
                        &peer,
                        "TLS peer without a member's key",
                        "",
                    );
                };
                let _ = tx
                    .send(Ok(PeerStream { io: tls, info: PeerInfo { node }, _guard: guard }))
                    .await;
            });
        }
    });
    ReceiverStream::new(rx)
}

// ---- the wire: raw frames ----

#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
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
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

// ---- the server side ----

struct ServerState {
    me: NodeId,
    sink: EventSink,
    stats: Arc<GrpcStats>,
    cfg: GrpcConfig,
    tls: Tls,
    /// Open inbound streams per member.
    streams: Mutex<BTreeMap<NodeId, usize>>,
    stop: watch::Receiver<bool>,
}

/// One open inbound stream of a member (released when the stream ends).
struct StreamGuard {
    state: Arc<ServerState>,
    node: NodeId,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut s = self.state.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.get_mut(&self.node) {
            *n -= 1;
            if *n == 0 {
                s.remove(&self.node);
            }
        }
    }
}

#[derive(Clone)]
struct Server(Arc<ServerState>);

impl tonic::server::NamedService for Server {
    const NAME: &'static str = "mir.transport.Transport";
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
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                Ok(Status::unimplemented("unknown method").into_http())
            });
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .max_decoding_message_size(state.cfg.max_message_size)
                .max_encoding_message_size(state.cfg.max_message_size);
            Ok(grpc.streaming(Stream(state), req).await)
        })
    }
}

#[derive(Clone)]
struct Stream(Arc<ServerState>);

impl Service<Request<Streaming<Bytes>>> for Stream {
    type Response = Response<ReceiverStream<Result<Bytes, Status>>>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let Some(PeerInfo { node }) = req.extensions().get::<PeerInfo>().cloned() else {
                return Err(Status::unauthenticated("not an authenticated connection"));
            };
            {
                let mut s = state.streams.lock().expect("lock");
                let open = s.entry(node.clone()).or_default();
                if *open >= state.cfg.max_streams_per_member {
                    drop(s);
                    state.stats.streams_refused.fetch_add(1, Relaxed);
                    state.stats.warn(
                        &state.me,
                        node.as_str(),
                        "stream over the per-member limit refused",
                        "",
                    );
                    return Err(Status::resource_exhausted("too many streams"));
                }
                *open += 1;
            }
            let guard = StreamGuard { state: state.clone(), node: node.clone() };
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(serve_stream(state, node, req.into_inner(), tx, guard));
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

/// Hands every message of an authenticated stream to the node. Ending this function ends the
/// response stream, which tells the client the stream is closed.
async fn serve_stream(
    state: Arc<ServerState>,
    from: NodeId,
    mut inbound: Streaming<Bytes>,
    _out: mpsc::Sender<Result<Bytes, Status>>,
    _guard: StreamGuard,
) {
    let mut stop = state.stop.clone();
    let peer = from.as_str();
    loop {
        let next = tokio::select! {
            m = tokio::time::timeout(state.cfg.idle_timeout * 2, inbound.message()) => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        let bytes = match next {
            Err(_) => {
                state.stats.idle_closed.fetch_add(1, Relaxed);
                tracing::debug!(node = %state.me, %peer, "gRPC transport: idle stream closed");
                return;
            }
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return,
            Ok(Err(e))
                if matches!(
                    e.code(),
                    tonic::Code::OutOfRange
                        | tonic::Code::InvalidArgument
                        | tonic::Code::Internal
                        | tonic::Code::ResourceExhausted
                ) =>
            {
                // An oversized or malformed gRPC frame.
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                return state.stats.warn(&state.me, peer, "bad frame; stream closed", e.message());
            }
            Ok(Err(e)) => {
                // The peer went away (stopped, crashed, network): it will reconnect.
                tracing::debug!(node = %state.me, %peer, error = %e, "gRPC transport: connection lost");
                return;
            }
        };
        let message = match PeerMessage::decode_message(&bytes) {
            Ok(m) => m,
            Err(e) => {
                state.stats.frames_rejected.fetch_add(1, Relaxed);
                return state.stats.warn(&state.me, peer, "malformed frame; stream closed", &e);
            }
        };
        let ev = Event::new(
            ModuleId::node(),
            message.dest_module.clone(),
            MessageReceived { from: from.clone(), message },
        );
        match state.sink.inject(vec![ev]).await {
            Ok(()) => {
                state.stats.received.fetch_add(1, Relaxed);
            }
            Err(InjectError::UnknownDestination { dest, .. }) => {
                state.stats.transport.rejected.fetch_add(1, Relaxed);
                state.stats.warn(
                    &state.me,
                    peer,
                    "message for a module this node does not have dropped",
                    dest.as_str(),
                );
            }
            Err(_) => return, // the node stopped
        }
    }
}

// ---- the client side ----

/// Dials one peer: TCP, then TLS with the peer's pinned key.
#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

impl Service<http::Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (addr, tls) = (self.addr, self.tls.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(server_name(), tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

struct Client {
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    cfg: GrpcConfig,
    /// Bytes waiting in this peer's queue (shared with the sender).
    queued: Arc<AtomicUsize>,
    stats: Arc<GrpcStats>,
    connected: Arc<watch::Sender<usize>>,
    stop: watch::Receiver<bool>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A message of `len` bytes left a peer's queue.
fn took(queued: &AtomicUsize, stats: &GrpcStats, len: usize) {
    queued.fetch_sub(len, Relaxed);
    stats.queued_bytes.fetch_sub(len, Relaxed);
}

/// The stream of frames HTTP/2 sends: a message leaves its peer's queue budget when HTTP/2 takes
/// it (or when the stream ends without sending it).
struct Outgoing {
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
    stats: Arc<GrpcStats>,
}

impl tokio_stream::Stream for Outgoing {
    type Item = Bytes;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Bytes>> {
        let next = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(m)) = &next {
            took(&self.queued, &self.stats, m.len());
        }
        next
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(m) = self.rx.try_recv() {
            took(&self.queued, &self.stats, m.len());
        }
    }
}

/// How a client's session ended.
enum End {
    /// The transport stopped, or the node is gone: stop for good.
    Stop,
    /// The server closed the stream: reconnect.
    Closed,
    /// Nothing to send for `idle_timeout`: this side closed the stream; reconnect when there
    /// is something to send.
    Idle,
}

impl Client {
    async fn run(mut self, mut queue: mpsc::Receiver<Bytes>) {
        let mut backoff = self.cfg.reconnect.0;
        let mut pending: Option<Bytes> = None;
        loop {
            if *self.stop.borrow() {
                return;
            }
            match self.session(&mut queue, &mut pending).await {
                Ok(End::Stop) => return,
                Ok(End::Closed) => backoff = self.cfg.reconnect.0,
                Ok(End::Idle) => {
                    backoff = self.cfg.reconnect.0;
                    // Wait for something to send before connecting again.
                    tokio::select! {
                        m = queue.recv() => match m {
                            Some(m) => pending = Some(m),
                            None => return,
                        },
                        _ = self.stop.wait_for(|s| *s) => return,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(node = %self.me, peer = %self.peer, error = %e, "gRPC transport: connection attempt failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(self.cfg.reconnect.1);
        }
    }

    /// One connection: TLS, the stream, then forward the queue.
    async fn session(
        &mut self,
        queue: &mut mpsc::Receiver<Bytes>,
        pending: &mut Option<Bytes>,
    ) -> Result<End, BoxError> {
        let deadline = self.cfg.handshake_timeout;
        let connector =
            Connector { addr: self.addr, tls: tokio_rustls::TlsConnector::from(self.tls.clone()) };
        // The URI only names the peer in requests; the connector decides where to dial.
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(deadline)
            .http2_keep_alive_interval(self.cfg.keepalive)
            .keep_alive_timeout(self.cfg.keepalive)
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_with_connector(connector).await?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(self.cfg.max_message_size)
            .max_encoding_message_size(self.cfg.max_message_size);
        tokio::time::timeout(deadline, grpc.ready())
            .await
            .map_err(|_| "the peer did not get ready in time")??;
        // Up to 64 messages wait for HTTP/2 here; they stay counted in the peer's queue bytes
        // until HTTP/2 takes them (`Outgoing`), so the byte budget covers them too.
        let (out, out_rx) = mpsc::channel::<Bytes>(64);
        let outgoing =
            Outgoing { rx: out_rx, queued: self.queued.clone(), stats: self.stats.clone() };
        let resp = tokio::time::timeout(
            deadline,
            grpc.streaming(
                Request::new(outgoing),
                http::uri::PathAndQuery::from_static(PATH),
                RawCodec,
            ),
        )
        .await
        .map_err(|_| "the peer did not answer the stream in time")??;
        let mut inbound = resp.into_inner();
        self.connected.send_modify(|c| *c += 1);
        let res = self.forward(queue, pending, &out, &mut inbound).await;
        self.connected.send_modify(|c| *c -= 1);
        res
    }

    async fn forward(
        &mut self,
        queue: &mut mpsc::Receiver<Bytes>,
        pending: &mut Option<Bytes>,
        out: &mpsc::Sender<Bytes>,
        inbound: &mut Streaming<Bytes>,
    ) -> Result<End, BoxError> {
        loop {
            if pending.is_none() {
                tokio::select! {
                    m = queue.recv() => match m {
                        Some(m) => *pending = Some(m),
                        None => return Ok(End::Stop),
                    },
                    _ = self.stop.wait_for(|s| *s) => return Ok(End::Stop),
                    r = inbound.message() => {
                        r?;
                        return Ok(End::Closed); // the server closed the stream
                    }
                    // Nothing to send for a while: close our side cleanly (nothing is in
                    // flight, so nothing can be lost) rather than wait for the server to.
                    _ = tokio::time::sleep(self.cfg.idle_timeout) => return Ok(End::Idle),
                }
            }
            let frame = pending.clone().expect("set above");
            tokio::select! {
                r = out.send(frame) => {
                    r?;
                    *pending = None;
                }
                _ = self.stop.wait_for(|s| *s) => return Ok(End::Stop),
                r = inbound.message() => {
                    r?;
                    return Ok(End::Closed); // the server closed the stream
                }
            }
        }
    }
}

// ---- a standalone client ----

/// One authenticated stream to one node, outside any node: for tools and tests that speak the
/// peer protocol as a member (its `key` must be listed in the node's membership; the node sees
/// every message as sent by that member).
///
/// ```no_run
/// # async fn f(addr: std::net::SocketAddr, key: mir_runtime::transport::tls::TransportKey, server: [u8; 32]) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use mir_runtime::stdevents::{Message, TestUint64};
/// use mir_runtime::transport::grpc::PeerClient;
/// let mut c = PeerClient::connect(addr, &key, server, std::time::Duration::from_secs(5)).await?;
/// c.send(&Message::new("app", TestUint64(7))).await?;
/// # Ok(()) }
/// ```
pub struct PeerClient {
    out: mpsc::Sender<Bytes>,
    inbound: Streaming<Bytes>,
}

impl PeerClient {
    /// Connects to the node at `addr` whose transport key is `server_key`, as the member whose
    /// transport key is `key`; gives up after `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        key: &TransportKey,
        server_key: [u8; 32],
        timeout: Duration,
    ) -> Result<Self, BoxError> {
        let connector = Connector {
            addr,
            tls: tokio_rustls::TlsConnector::from(super::tls::client_config(key, server_key)?),
        };
        let connect = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_with_connector(connector)
                .await?;
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await?;
            let (out, out_rx) = mpsc::channel::<Bytes>(1);
            let resp = grpc
                .streaming(
                    Request::new(ReceiverStream::new(out_rx)),
                    http::uri::PathAndQuery::from_static(PATH),
                    RawCodec,
                )
                .await?;
            Ok::<_, BoxError>(PeerClient { out, inbound: resp.into_inner() })
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| "connecting timed out")?
    }

    /// Sends `m`.
    pub async fn send(&mut self, m: &Message) -> Result<(), BoxError> {
        use prost::Message as _;
        self.send_frame(PeerMessage::from_message(m).encode_to_vec()).await
    }

    /// Sends `frame` as it is (which may be garbage: for tests of the receiver).
    pub async fn send_frame(&mut self, frame: Vec<u8>) -> Result<(), BoxError> {
        self.out.send(frame.into()).await.map_err(|_| "the stream is closed".into())
    }

    /// Waits at most `wait` for the node to end the stream; whether it did.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        matches!(tokio::time::timeout(wait, self.inbound.message()).await, Ok(Ok(None) | Err(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.proto` file describes exactly the messages the Rust side derives.
    #[test]
    fn the_proto_file_matches_the_rust_types() {
        let proto = include_str!("../../proto/mir_transport.proto");
        for line in [
            "package mir.transport;",
            "service Transport {",
            "rpc Connect(stream PeerMessage) returns (stream Ack);",
            "message PeerMessage {",
            "string dest_module = 1;",
            "string payload_type = 2;",
            "bytes payload = 3;",
            "message Ack {}",
        ] {
            assert!(proto.contains(line), "the .proto lacks {line:?}");
        }
        assert_eq!(PATH, "/mir.transport.Transport/Connect");
        // Field numbers and wire types: a hand-written protobuf encoding decodes as expected.
        let bytes = [
            0x0a, 3, b'a', b'p', b'p', // 1: "app"
            0x12, 1, b't', // 2: "t"
            0x1a, 2, 1, 2, // 3: [1, 2]
        ];
        let m = PeerMessage::decode_message(&bytes).unwrap();
        assert_eq!(m.dest_module.as_str(), "app");
        assert_eq!(m.payload.name(), "t");
        assert_eq!(m.payload.encode_value(), [1, 2]);
    }
}
