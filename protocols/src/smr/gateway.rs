//! The client gateway: the gRPC client service of a node (`protocols/proto/smr_client.proto`),
//! as an active module (`clients`).
//!
//! ```text
//! upon Submit(client, n, payload) from a gRPC client do
//!     refuse at once a bad request (empty or long client ID, payload over the limit) and one
//!     over the waiting limits (per client and in all); answer at once a receipt still known
//!     else wait for its outcome; trigger NewTransactions([tx]) to the mempool
//!         (waiting for room in the node: back-pressure reaches the client)
//! upon TransactionsRejected from the mempool do answer the waiting submissions with the reason
//!     (already here: keep waiting, the receipt will come)
//! upon Applied(sn, receipts) from the application do answer the waiting submissions; unless
//!     empty, keep the batch for Deliveries and late receipts (the last `recent` non-empty
//!     batches) and stream it to followers
//! upon Restored(epoch, progress) do answer the waiting submissions the restored state holds
//!     ("restored": position and result unknown at this node)
//! upon Deliveries(from_sn) do stream the kept batches from from_sn, then each new one
//! ```
//!
//! **Limits** (a client that lies cannot stop the node nor hold unbounded memory): waiting
//! submissions per client and in all, payload and client-ID sizes, gRPC message size, concurrent
//! streams per connection, a deadline per submission (its outcome may never come: the client
//! asks again or another node), the kept batches; a follower too slow for the live stream loses
//! it (and resumes from its last sn). The mempool adds the per-client window and its capacity.
//!
//! The gateway runs on the production executor only (it needs an [`EventSink`]); in the
//! simulator it stays idle.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mir_runtime::{
    ActiveModule, Batch, Context, Event, EventSink, ModuleError, ModuleId, ModuleResult,
};
use tokio::sync::{broadcast, oneshot, watch};
use tonic::codegen::{http, BoxFuture, Context as TaskContext, Poll, Service, StdError};
use tonic::{Request, Response, Status};

use super::app::{Applied, Restored};
use super::service::{
    DeliveredTx, DeliveriesRequest, Delivery, ProstCodec, Reason, Receipt, SubmitReply,
    SubmitRequest, DELIVERIES, SUBMIT,
};
use crate::availability::mempool::{NewTransactions, RejectKind, TransactionsRejected};
use crate::availability::Tx;
use crate::ordering::iss::reconfig::Left;

/// Settings of the [`ClientGateway`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where clients connect (port 0: any free port, see [`GatewayHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Submissions waiting for their outcome, all clients together. Default 100,000.
    pub max_waiting: usize,
    /// Submissions waiting per client. Default 1,024.
    pub max_waiting_per_client: usize,
    /// Payload bytes of submissions on their way into the node (while it pushes back), all
    /// clients together. Default 64 MiB.
    pub max_entering_bytes: usize,
    /// Largest payload taken. Default 1 MiB.
    pub max_payload: usize,
    /// Longest client ID. Default 256 bytes.
    pub max_client_id: usize,
    /// Delivered non-empty batches kept for followers that resume and for late receipts.
    /// Default 1,024 (at most 1,048,576).
    pub recent: usize,
    /// ... and at most this many bytes of them (payloads and results). Default 64 MiB.
    pub recent_bytes: usize,
    /// Open Deliveries streams. Default 256.
    pub max_followers: usize,
    /// How long a submission waits for its outcome. Default 30 s.
    pub timeout: Duration,
    /// Concurrent requests per connection. Default 1,024.
    pub max_streams: u32,
}

impl GatewayConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        GatewayConfig {
            listen,
            max_waiting: 100_000,
            max_waiting_per_client: 1024,
            max_entering_bytes: 64 << 20,
            max_payload: 1 << 20,
            max_client_id: 256,
            recent: 1024,
            recent_bytes: 64 << 20,
            max_followers: 256,
            timeout: Duration::from_secs(30),
            max_streams: 1024,
        }
    }

    /// An error naming the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_waiting", self.max_waiting),
            ("max_waiting_per_client", self.max_waiting_per_client),
            ("max_entering_bytes", self.max_entering_bytes),
            ("max_payload", self.max_payload),
            ("max_client_id", self.max_client_id),
            ("recent", self.recent),
            ("recent_bytes", self.recent_bytes),
            ("max_followers", self.max_followers),
            ("max_streams", self.max_streams as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("gateway: {name} must be positive"));
            }
        }
        if self.recent > 1 << 20 {
            return Err("gateway: recent must be at most 1,048,576".into());
        }
        if self.max_payload.checked_add(self.max_client_id + 1024).is_none() {
            return Err("gateway: max_payload is too large".into());
        }
        if self.timeout.is_zero() {
            return Err("gateway: timeout must be positive".into());
        }
        Ok(())
    }
}

/// What the gateway counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GatewayStats {
    /// Submissions received.
    pub submitted: u64,
    /// Receipts sent.
    pub receipts: u64,
    /// Rejections sent, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Submissions that waited past the timeout.
    pub timed_out: u64,
}

/// A handle to a running gateway: its address, statistics, and stopping it.
#[derive(Clone)]
pub struct GatewayHandle {
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
}

impl GatewayHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The counts so far.
    pub fn stats(&self) -> GatewayStats {
        self.shared.lock().stats.clone()
    }

    /// What waits here now: (submissions waiting for an outcome, clients with one,
    /// payload bytes still on their way into the node). All three go back to 0 when the
    /// submissions end, however they end (an outcome, the deadline, a client that went away).
    pub fn waiting(&self) -> (usize, usize, usize) {
        let s = self.shared.lock();
        (s.total, s.per_client.len(), s.entering_bytes)
    }

    /// Stops serving clients.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

type Key = (String, u64);

#[derive(Default)]
struct State {
    /// Submissions waiting for an outcome.
    waiting: BTreeMap<Key, Vec<oneshot::Sender<SubmitReply>>>,
    per_client: BTreeMap<String, usize>,
    total: usize,
    /// Payload bytes of submissions on their way into the node (waiting for room).
    entering_bytes: usize,
    /// The last delivered batches, by sn, and the receipts they hold.
    recent: VecDeque<Arc<Delivery>>,
    /// Their bytes.
    recent_bytes: usize,
    /// The highest sn of a batch no longer kept.
    evicted: Option<u64>,
    /// Open Deliveries streams.
    followers: usize,
    receipts: BTreeMap<Key, (u64, u32, Vec<u8>)>,
    stats: GatewayStats,
    /// This node left the membership: submissions are refused (`UNAVAILABLE`).
    left: bool,
}

struct Shared {
    id: ModuleId,
    mempool: ModuleId,
    cfg: GatewayConfig,
    sink: OnceLock<EventSink>,
    state: Mutex<State>,
    live: broadcast::Sender<Arc<Delivery>>,
    /// Set when the gateway stops (ends the Deliveries streams).
    stop: watch::Receiver<bool>,
}

/// A submission waiting for its outcome; dropped however the submission ends, it removes its
/// waiter (if still there) and its bytes from the counts.
struct Waiter {
    shared: Arc<Shared>,
    key: Key,
    rx: Option<oneshot::Receiver<SubmitReply>>,
    /// Payload bytes counted as entering the node (0 once injected).
    entering: usize,
}

impl Waiter {
    fn entered(&mut self) {
        let mut s = self.shared.lock();
        s.entering_bytes -= std::mem::take(&mut self.entering);
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        drop(self.rx.take()); // closes this waiter's sender
        let mut s = self.shared.lock();
        s.entering_bytes -= std::mem::take(&mut self.entering);
        let Some(ws) = s.waiting.get_mut(&self.key) else { return };
        let before = ws.len();
        ws.retain(|w| !w.is_closed());
        let gone = before - ws.len();
        if ws.is_empty() {
            s.waiting.remove(&self.key);
        }
        s.total -= gone;
        if let Some(c) = s.per_client.get_mut(&self.key.0) {
            *c -= gone;
            if *c == 0 {
                s.per_client.remove(&self.key.0);
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers every submission waiting for `key`.
    fn answer(&self, s: &mut State, key: &Key, reply: &SubmitReply) {
        if let Some(waiters) = s.waiting.remove(key) {
            s.total -= waiters.len();
            if let Some(c) = s.per_client.get_mut(&key.0) {
                *c -= waiters.len();
                if *c == 0 {
                    s.per_client.remove(&key.0);
                }
            }
            for w in waiters {
                let _ = w.send(reply.clone());
            }
        }
    }

    fn count_rejection(s: &mut State, reason: Reason) {
        *s.stats.rejected.entry(format!("{reason:?}")).or_default() += 1;
    }

    /// Submit: check, wait for the outcome.
    async fn submit(self: Arc<Self>, r: SubmitRequest) -> Result<SubmitReply, Status> {
        let cfg = &self.cfg;
        let reject = |reason: Reason, detail: String| {
            Self::count_rejection(&mut self.lock(), reason);
            Ok(SubmitReply::rejection(reason, detail))
        };
        self.lock().stats.submitted += 1;
        if self.lock().left {
            // Nothing submitted here would be ordered any more.
            return Err(Status::unavailable("this node left the membership; try another node"));
        }
        if r.client_id.is_empty() || r.client_id.len() > cfg.max_client_id {
            let detail = format!("the client ID must have 1 to {} bytes", cfg.max_client_id);
            return reject(Reason::Invalid, detail);
        }
        if r.payload.len() > cfg.max_payload {
            let detail =
                format!("{} bytes is over the limit of {}", r.payload.len(), cfg.max_payload);
            return reject(Reason::TooLarge, detail);
        }
        if r.signature.len() > 128 {
            return reject(Reason::Invalid, "the signature is over 128 bytes".into());
        }
        // The transaction, built once: checked here, submitted below.
        let tx = Tx::new(r.client_id.as_str(), r.tx_no, r.payload).with_signature(r.signature);
        if let Err(e) = super::signed::check(&tx) {
            return reject(Reason::Invalid, e);
        }
        let key: Key = (r.client_id.clone(), r.tx_no);
        let bytes = tx.data.len() + r.client_id.len() + tx.signature.len();
        let rx = {
            let mut s = self.lock();
            if let Some((sn, index, result)) = s.receipts.get(&key).cloned() {
                s.stats.receipts += 1;
                return Ok(SubmitReply::receipt(sn, index, result));
            }
            let mine = s.per_client.get(&r.client_id).copied().unwrap_or(0);
            if mine >= cfg.max_waiting_per_client
                || s.total >= cfg.max_waiting
                || s.entering_bytes + bytes > cfg.max_entering_bytes
            {
                drop(s);
                let detail = "too many submissions waiting here; wait for their outcomes, or \
                              try another node"
                    .to_string();
                return reject(Reason::MempoolFull, detail);
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.entry(key.clone()).or_default().push(tx);
            *s.per_client.entry(r.client_id.clone()).or_default() += 1;
            s.total += 1;
            s.entering_bytes += bytes;
            rx
        };
        // From here on, however this future ends (an outcome, the deadline, or the client going
        // away while the node pushes back), the guard takes its waiter out.
        let mut waiter = Waiter { shared: self.clone(), key, rx: Some(rx), entering: bytes };
        let Some(sink) = self.sink.get() else {
            return Err(Status::unavailable("the node is not running"));
        };
        let ev =
            Event::new(self.id.clone(), self.mempool.clone(), NewTransactions { txs: vec![tx] });
        let outcome = async {
            sink.inject(vec![ev]).await.map_err(|_| Status::unavailable("the node stopped"))?;
            waiter.entered();
            let rx = waiter.rx.as_mut().expect("taken only on drop");
            rx.await.map_err(|_| Status::unavailable("the node stopped"))
        };
        match tokio::time::timeout(cfg.timeout, outcome).await {
            Ok(r) => r,
            Err(_) => {
                self.lock().stats.timed_out += 1;
                Err(Status::deadline_exceeded(
                    "no outcome in time; submit it again (here or elsewhere)",
                ))
            }
        }
    }

    fn applied(&self, a: &Applied) {
        let mut s = self.lock();
        let mut txs = Vec::with_capacity(a.receipts.len());
        for r in &a.receipts {
            let key: Key = (r.client.0.clone(), r.tx_no);
            let reply = SubmitReply::receipt(a.sn, r.index, r.result.clone());
            if s.waiting.contains_key(&key) {
                s.stats.receipts += s.waiting[&key].len() as u64;
            }
            self.answer(&mut s, &key, &reply);
            s.receipts.insert(key, (a.sn, r.index, r.result.clone()));
            txs.push(DeliveredTx {
                client_id: r.client.0.clone(),
                tx_no: r.tx_no,
                payload: r.data.clone(),
                result: r.result.clone(),
            });
        }
        if txs.is_empty() {
            return; // an empty batch: nothing to follow (an idle cluster makes many)
        }
        let d = Arc::new(Delivery { sn: a.sn, txs });
        s.recent_bytes += delivery_bytes(&d);
        s.recent.push_back(d.clone());
        while s.recent.len() > self.cfg.recent
            || (s.recent_bytes > self.cfg.recent_bytes && s.recent.len() > 1)
        {
            if let Some(old) = s.recent.pop_front() {
                s.recent_bytes -= delivery_bytes(&old);
                s.evicted = Some(old.sn);
                for t in &old.txs {
                    s.receipts.remove(&(t.client_id.clone(), t.tx_no));
                }
            }
        }
        drop(s);
        let _ = self.live.send(d); // nobody following: fine
    }

    fn rejected(&self, r: &TransactionsRejected) {
        let mut s = self.lock();
        for x in &r.rejected {
            let key: Key = (x.client.0.clone(), x.tx_no);
            let reason = match x.kind {
                // Waiting here already: its receipt will come.
                RejectKind::Present => continue,
                RejectKind::Delivered => {
                    if let Some((sn, index, result)) = s.receipts.get(&key).cloned() {
                        let n = s.waiting.get(&key).map_or(0, Vec::len) as u64;
                        s.stats.receipts += n;
                        self.answer(&mut s, &key, &SubmitReply::receipt(sn, index, result));
                        continue;
                    }
                    Reason::Duplicate
                }
                RejectKind::TooLarge => Reason::TooLarge,
                RejectKind::OutsideWindow => Reason::OutsideWindow,
                RejectKind::Full => Reason::MempoolFull,
            };
            if s.waiting.contains_key(&key) {
                Self::count_rejection(&mut s, reason);
            }
            self.answer(&mut s, &key, &SubmitReply::rejection(reason, x.reason.clone()));
        }
    }

    fn restored(&self, r: &Restored) {
        let mut s = self.lock();
        let keys: Vec<Key> = s
            .waiting
            .keys()
            .filter(|(c, n)| {
                r.client_progress.contains(&crate::availability::ClientId(c.clone()), *n)
            })
            .cloned()
            .collect();
        let reply = SubmitReply {
            outcome: Some(super::service::Outcome::Receipt(Receipt {
                sn: 0,
                index: 0,
                result: Vec::new(),
                restored: true,
            })),
        };
        for k in keys {
            s.stats.receipts += s.waiting[&k].len() as u64;
            self.answer(&mut s, &k, &reply);
        }
    }

    /// Deliveries: the kept batches from `from`, then the live ones; a follower that falls
    /// behind the live stream is served from the kept batches again, and one that asks for
    /// batches no longer kept gets `OUT_OF_RANGE`.
    fn follow(
        self: &Arc<Self>,
        from: u64,
    ) -> Result<tokio_stream::wrappers::ReceiverStream<Result<Delivery, Status>>, Status> {
        {
            let mut s = self.lock();
            if s.followers >= self.cfg.max_followers {
                return Err(Status::resource_exhausted("too many followers of this node"));
            }
            s.followers += 1;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shared = self.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let serve = async {
                let mut next = from;
                loop {
                    let mut live = shared.live.subscribe(); // before reading `recent`: no gap
                    let (kept, evicted) = {
                        let s = shared.lock();
                        let kept: Vec<Arc<Delivery>> =
                            s.recent.iter().filter(|d| d.sn >= next).cloned().collect();
                        (kept, s.evicted)
                    };
                    if let Some(e) = evicted.filter(|e| *e >= next) {
                        let status = Status::out_of_range(format!(
                            "batches up to sn {e} are no longer kept here (from sn {next} asked); \
                             ask another node, or follow from sn {}",
                            e + 1
                        ));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    for d in kept {
                        next = d.sn + 1;
                        if tx.send(Ok((*d).clone())).await.is_err() {
                            return;
                        }
                    }
                    loop {
                        match live.recv().await {
                            Ok(d) if d.sn < next => continue, // sent from `recent` already
                            Ok(d) => {
                                next = d.sn + 1;
                                if tx.send(Ok((*d).clone())).await.is_err() {
                                    return;
                                }
                            }
                            // Fell behind the live stream: from the kept batches again.
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    let _ = tx.send(Err(Status::unavailable("the client service stopped"))).await;
                }
            }
            shared.lock().followers -= 1;
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// The bytes a kept batch holds.
fn delivery_bytes(d: &Delivery) -> usize {
    d.txs.iter().map(|t| t.client_id.len() + t.payload.len() + t.result.len() + 16).sum()
}

/// The gateway module (register it as `clients`, and make the application send it receipts:
/// [`AppModule::receipts_to`](super::app::AppModule::receipts_to)).
pub struct ClientGateway {
    shared: Arc<Shared>,
    listener: Option<std::net::TcpListener>,
    stop: Arc<watch::Sender<bool>>,
    handle: GatewayHandle,
}

impl ClientGateway {
    /// A gateway with `cfg`, registered as `id`, submitting to `mempool`; binds its address now
    /// (an error if it cannot, or for a bad setting).
    pub fn new(cfg: GatewayConfig, id: ModuleId, mempool: ModuleId) -> Result<Self, String> {
        cfg.validate()?;
        let listener = std::net::TcpListener::bind(cfg.listen)
            .map_err(|e| format!("client gateway: cannot listen on {}: {e}", cfg.listen))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let (live, _) = broadcast::channel(cfg.recent.clamp(16, 4096));
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            id,
            mempool,
            cfg,
            sink: OnceLock::new(),
            state: Mutex::default(),
            live,
            stop: stop_rx,
        });
        let stop = Arc::new(stop);
        let handle = GatewayHandle { local, shared: shared.clone(), stop: stop.clone() };
        Ok(ClientGateway { shared, listener: Some(listener), stop, handle })
    }

    /// The handle (address, statistics, stop).
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    fn start(&mut self, sink: EventSink) -> Result<(), ModuleError> {
        let _ = self.shared.sink.set(sink);
        let Some(listener) = self.listener.take() else { return Ok(()) };
        listener.set_nonblocking(true).map_err(ModuleError::new)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ModuleError::new)?;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let server = Server(self.shared.clone());
        let mut stop = self.stop.subscribe();
        let cfg = &self.shared.cfg;
        let streams = cfg.max_streams;
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = tonic::transport::Server::builder()
                .max_concurrent_streams(Some(streams))
                .serve_with_incoming_shutdown(server, incoming, shutdown)
                .await
            {
                tracing::warn!(error = %e, "the client service ended with an error");
            }
        });
        Ok(())
    }
}

impl Drop for ClientGateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl ActiveModule for ClientGateway {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        if self.listener.is_some() {
            if let Some(sink) = cx.sink() {
                self.start(sink)?;
            }
        }
        for ev in events {
            if let Some(a) = ev.get::<Applied>() {
                self.shared.applied(a);
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                self.shared.rejected(r);
            } else if let Some(r) = ev.get::<Restored>() {
                self.shared.restored(r);
            } else if ev.get::<Left>().is_some() {
                self.shared.lock().left = true;
            }
        }
        Ok(())
    }
}

// ---- the gRPC service ----

#[derive(Clone)]
struct Server(Arc<Shared>);

impl tonic::server::NamedService for Server {
    const NAME: &'static str = super::service::SERVICE;
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
        let shared = self.0.clone();
        let limit = shared.cfg.max_payload.saturating_add(shared.cfg.max_client_id + 1024);
        match req.uri().path() {
            SUBMIT => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<SubmitReply, SubmitRequest>::default())
                        .max_decoding_message_size(limit);
                Ok(grpc.unary(SubmitSvc(shared), req).await)
            }),
            DELIVERIES => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<Delivery, DeliveriesRequest>::default())
                        .max_decoding_message_size(1024);
                Ok(grpc.server_streaming(FollowSvc(shared), req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

struct SubmitSvc(Arc<Shared>);

impl Service<Request<SubmitRequest>> for SubmitSvc {
    type Response = Response<SubmitReply>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<SubmitRequest>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { shared.submit(req.into_inner()).await.map(Response::new) })
    }
}

struct FollowSvc(Arc<Shared>);

impl Service<Request<DeliveriesRequest>> for FollowSvc {
    type Response = Response<tokio_stream::wrappers::ReceiverStream<Result<Delivery, Status>>>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<DeliveriesRequest>) -> Self::Future {
        let stream = self.0.follow(req.into_inner().from_sn);
        Box::pin(async move { stream.map(Response::new) })
    }
}
