//! One builder for a whole node of the SMR system: the gRPC transport, k256 crypto, the timer,
//! the availability layer, ISS with PBFT and checkpointing, the write-ahead log, the
//! application and its client service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mir_runtime::{keys::NodeKeys, membership::Membership, NodeId};
//! use protocols::smr::{kv::KvStore, system::System};
//! let membership = Membership::from_toml_str(&std::fs::read_to_string("membership.toml")?, "membership.toml")?;
//! let me = NodeId::from_index(0);
//! let keys = NodeKeys::test(42, &me); // insecure test keys: demos only
//! let node = System::builder(me, membership, keys)
//!     .wal("data/node-0")
//!     .clients("127.0.0.1:7100".parse()?)
//!     .build(KvStore::default())?
//!     .start();
//! node.wait_connected(std::time::Duration::from_secs(30)).await;
//! // ... clients submit through protocols::smr::client::SmrClient ...
//! node.stop().await?;
//! # Ok(()) }
//! ```
//!
//! **Defaults** ([`NodeSettings::default`] and its parts): segments of 4 sequence numbers,
//! buckets, the simple leader policy, 1 s catch-up period, PBFT's timeouts, the mempool's limits
//! and a client window of 10,000 (see `availability::mempool::MempoolParams`); no WAL (crash
//! recovery off), no client service, crypto on 2 threads. [`SystemBuilder::build`] checks every
//! setting and names each mistake.
//!
//! **Reconfiguration** (`docs/smr.md`): an application whose [`Application::membership`] is
//! `Some` decides the membership; the node's transport and crypto learn new members from it. A
//! node added later is built with [`SystemBuilder::join_as`] and the membership that adds it;
//! a node removed from the membership sees [`RunningNode::left`] resolve once its part is done.
//! Signatures are made in a domain named after the **application's initial membership** (the
//! same at every node of the deployment, joiners included), or after `membership` when the
//! application does not reconfigure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::{Member, Membership};
use mir_runtime::stdmodules::{EcdsaCrypto, Timer};
use mir_runtime::transport::grpc::{GrpcConfig, GrpcHandle, GrpcTransport};
use mir_runtime::wal::{disk::DirDisk, Wal};
use mir_runtime::{
    Batch, Exit, ModuleId, ModuleResult, Node, NodeError, NodeHandle, NodeId, Outbox, PassiveModule,
};
use tokio::sync::watch;

use super::app::AppModule;
use super::gateway::{ClientGateway, GatewayConfig, GatewayHandle};
use super::Application;
use crate::availability::names as a;
use crate::ordering::iss::reconfig::Left;
use crate::ordering::iss::{self, NodeSettings};

/// The module name of the client gateway.
pub const CLIENTS: &str = "clients";
/// The module name of the application.
pub const APP: &str = "app";
/// The module that tells [`RunningNode::left`].
pub const LEFT: &str = "left";

/// Gets [`Left`] from the application module and tells [`RunningNode::left`].
struct LeftSignal(watch::Sender<Option<u64>>);

impl PassiveModule for LeftSignal {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(l) = ev.get::<Left>() {
                self.0.send_replace(Some(l.epoch));
            }
        }
        Ok(())
    }
}

/// Builds an SMR node ([`System::builder`]).
pub struct System;

impl System {
    /// A node `me` of `membership`, with its `keys`.
    pub fn builder(me: NodeId, membership: Membership, keys: NodeKeys) -> SystemBuilder {
        SystemBuilder {
            me,
            membership,
            keys,
            settings: NodeSettings::default(),
            wal: None,
            rejoin: false,
            gateway: None,
            record: None,
            crypto_threads: 2,
            joining: None,
            observers: Vec::new(),
        }
    }
}

/// The settings of a node being built (see [`System::builder`]).
pub struct SystemBuilder {
    me: NodeId,
    membership: Membership,
    keys: NodeKeys,
    settings: NodeSettings,
    wal: Option<PathBuf>,
    rejoin: bool,
    gateway: Option<GatewayConfig>,
    record: Option<PathBuf>,
    crypto_threads: usize,
    joining: Option<Member>,
    observers: Vec<(String, Box<dyn PassiveModule>)>,
}

impl SystemBuilder {
    /// The protocols' settings (ISS, PBFT, checkpointing, availability layer).
    pub fn settings(mut self, settings: NodeSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Crash recovery: a write-ahead log in directory `dir` (created if missing; a node built
    /// again on it resumes from it).
    pub fn wal(mut self, dir: impl Into<PathBuf>) -> Self {
        self.wal = Some(dir.into());
        self
    }

    /// This node lost its disk after it took part: rejoin without acting in any epoch it may
    /// have acted in (`docs/recovery.md`, "Amnesia").
    pub fn rejoin(mut self, rejoin: bool) -> Self {
        self.rejoin = rejoin;
        self
    }

    /// Serve clients on `addr` with the gateway's default limits.
    pub fn clients(mut self, addr: SocketAddr) -> Self {
        self.gateway = Some(GatewayConfig::new(addr));
        self
    }

    /// Serve clients with these settings.
    pub fn clients_with(mut self, cfg: GatewayConfig) -> Self {
        self.gateway = Some(cfg);
        self
    }

    /// Record every event under `dir` (for mircat, replay and the trace viewer).
    pub fn record(mut self, dir: impl Into<PathBuf>) -> Self {
        self.record = Some(dir.into());
        self
    }

    /// This node is not in `membership` yet: it joins when the application's membership adds
    /// it (`entry` is its entry there: its address, keys and weight). Until then it takes no
    /// part; it fetches the state certified by the members of `membership` (so give it the
    /// membership that adds it) and follows from there.
    pub fn join_as(mut self, entry: Member) -> Self {
        self.joining = Some(entry);
        self
    }

    /// Registers `module` as `name`; it gets what the application module reports: `Applied`
    /// (each batch's receipts), `Restored` and `Left` (e.g. to print them).
    pub fn observe(mut self, name: &str, module: impl PassiveModule) -> Self {
        self.observers.push((name.to_owned(), Box::new(module)));
        self
    }

    /// Threads checking and making signatures (default 2).
    pub fn crypto_threads(mut self, n: usize) -> Self {
        self.crypto_threads = n;
        self
    }

    /// Checks the settings and builds the node around `app`.
    pub fn build<A: Application>(self, app: A) -> Result<SmrNode, String> {
        let me = self.me.clone();
        let fail = |what: String| format!("node {me}: {what}");
        let members =
            || self.membership.ids().iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>();
        match (&self.joining, self.membership.get(&me)) {
            (None, None) => {
                return Err(fail(format!(
                    "not in the membership (members: {:?}; a node that joins later needs join_as)",
                    members()
                )))
            }
            (Some(_), Some(_)) => {
                return Err(fail(format!(
                    "join_as, but already in the membership (members: {:?})",
                    members()
                )))
            }
            (Some(entry), None) if entry.id != me => {
                return Err(fail(format!("join_as an entry of node {}", entry.id)))
            }
            _ => {}
        }
        if self.joining.is_some() && app.membership().is_none() {
            return Err(fail(
                "join_as, but the application never changes the membership (Application::membership)"
                    .into(),
            ));
        }
        if self.rejoin && self.joining.is_some() {
            return Err(fail(
                "join_as and rejoin: a node that never took part has nothing to forget".into(),
            ));
        }
        if self.crypto_threads == 0 {
            return Err(fail("crypto_threads must be positive".into()));
        }
        if let Some(dir) = &self.wal {
            if dir.exists() && !dir.is_dir() {
                return Err(fail(format!("the WAL path {} is not a directory", dir.display())));
            }
        }
        if let Some(g) = &self.gateway {
            g.validate().map_err(fail)?;
        }
        let mut settings = self.settings.clone();
        settings.iss.rejoin = self.rejoin;
        settings.availability.destination = Some(APP.into());
        // The transport and crypto know this node too when it joins later.
        let mut known = self.membership.clone();
        known.nodes.extend(self.joining.iter().cloned());
        let registry = known.registry().map_err(|e| fail(e.to_string()))?;
        let genesis = match app.membership() {
            Some(nodes) => Membership { nodes },
            None => self.membership.clone(),
        };
        let deployment =
            genesis.registry().map_err(|e| fail(format!("the application's membership: {e}")))?;
        let (left_tx, left_rx) = watch::channel(None);
        let mut app = AppModule::new(app, me.clone())
            .check_clients(super::signed::check)
            .membership_updates_to(vec![ModuleId::new(a::NET), ModuleId::new(a::CRYPTO)])
            .receipts_to(ModuleId::new(LEFT));
        for (name, _) in &self.observers {
            let id = ModuleId::try_new(name).map_err(|e| fail(format!("observer {name}: {e}")))?;
            app = app.receipts_to(id);
        }
        let gateway = match &self.gateway {
            Some(cfg) => {
                app = app.receipts_to(ModuleId::new(CLIENTS));
                let g = ClientGateway::new(
                    cfg.clone(),
                    ModuleId::new(CLIENTS),
                    ModuleId::new(a::MEMPOOL),
                )
                .map_err(fail)?;
                Some(g)
            }
            None => None,
        };
        let gateway_handle = gateway.as_ref().map(ClientGateway::handle);
        let mut builder = Node::builder(me.clone())
            .passive(APP, app)
            .passive(LEFT, LeftSignal(left_tx))
            .passive_on_worker(
                a::CRYPTO,
                EcdsaCrypto::new(self.keys.signing.clone(), registry)
                    .deployment(deployment.fingerprint())
                    .threads(self.crypto_threads),
            )
            .active(a::TIMER, Timer::new());
        for (name, module) in self.observers {
            builder = builder.passive(&name, module);
        }
        if let Some(g) = gateway {
            builder = builder.active(CLIENTS, g);
        }
        let weights = self.membership.weights();
        builder = match &self.wal {
            Some(dir) => {
                let disk = DirDisk::new(dir)
                    .map_err(|e| fail(format!("the WAL directory {}: {e}", dir.display())))?;
                let wal = Wal::new(disk, ModuleId::new(iss::names::ISS));
                iss::add_to_with_wal(builder, me.clone(), weights, &settings, wal).map_err(fail)?
            }
            None => iss::add_to(builder, me.clone(), weights, &settings).map_err(fail)?,
        };
        let peers = self.membership.ids().into_iter().filter(|n| *n != me).count();
        let transport =
            GrpcTransport::new(GrpcConfig::new(me.clone(), known, self.keys.transport.clone()))
                .map_err(|e| fail(e.to_string()))?;
        let grpc = transport.handle();
        if let Some(dir) = &self.record {
            use mir_runtime::eventlog::{Recorder, RecorderConfig};
            let recorder =
                Recorder::new(RecorderConfig::new(dir), &me).map_err(|e| fail(e.to_string()))?;
            builder = builder.interceptor(recorder);
        }
        let node = builder.active(a::NET, transport).build().map_err(|e| fail(e.to_string()))?;
        Ok(SmrNode { node, grpc, gateway: gateway_handle, peers, left: left_rx })
    }
}

/// A built node, not running yet.
pub struct SmrNode {
    node: Node,
    grpc: GrpcHandle,
    gateway: Option<GatewayHandle>,
    peers: usize,
    left: watch::Receiver<Option<u64>>,
}

impl SmrNode {
    /// The node's handle (inject events, stop it).
    pub fn handle(&self) -> NodeHandle {
        self.node.handle()
    }

    /// The client service, if any (its address and counts).
    pub fn clients(&self) -> Option<GatewayHandle> {
        self.gateway.clone()
    }

    /// Runs the node on the current tokio runtime.
    pub fn start(self) -> RunningNode {
        let handle = self.node.handle();
        let task = tokio::spawn(self.node.run());
        RunningNode {
            handle,
            grpc: self.grpc,
            gateway: self.gateway,
            peers: self.peers,
            left: self.left,
            task,
        }
    }
}

/// A running node.
pub struct RunningNode {
    handle: NodeHandle,
    grpc: GrpcHandle,
    gateway: Option<GatewayHandle>,
    peers: usize,
    left: watch::Receiver<Option<u64>>,
    task: tokio::task::JoinHandle<Result<Exit, NodeError>>,
}

impl RunningNode {
    /// The node's handle.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The transport's handle (connections, statistics).
    pub fn transport(&self) -> &GrpcHandle {
        &self.grpc
    }

    /// The client service, if any (its address and counts).
    pub fn clients(&self) -> Option<GatewayHandle> {
        self.gateway.clone()
    }

    /// Resolves when this node has left the membership (the application removed it and the
    /// checkpoint of its last epoch is stable), with the first epoch without it. Never resolves
    /// for a node that stays.
    pub fn left(&self) -> impl std::future::Future<Output = u64> + Send + 'static {
        let mut rx = self.left.clone();
        async move {
            loop {
                if let Some(e) = *rx.borrow_and_update() {
                    return e;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Waits until the node is connected to every other member it started with (at most
    /// `timeout`).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.grpc.wait_connected(self.peers, timeout).await
    }

    /// Stops the node (and its client service) and waits for it; its error, if it failed.
    pub async fn stop(self) -> Result<(), String> {
        if let Some(g) = &self.gateway {
            g.stop();
        }
        self.handle.stop();
        match self.task.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the node's task failed: {e}")),
        }
    }
}
