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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::stdmodules::{EcdsaCrypto, Timer};
use mir_runtime::transport::grpc::{GrpcConfig, GrpcHandle, GrpcTransport};
use mir_runtime::wal::{disk::DirDisk, Wal};
use mir_runtime::{Exit, ModuleId, Node, NodeError, NodeHandle, NodeId};

use super::app::AppModule;
use super::gateway::{ClientGateway, GatewayConfig, GatewayHandle};
use super::Application;
use crate::availability::names as a;
use crate::ordering::iss::{self, NodeSettings};

/// The module name of the client gateway.
pub const CLIENTS: &str = "clients";
/// The module name of the application.
pub const APP: &str = "app";

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

    /// Threads checking and making signatures (default 2).
    pub fn crypto_threads(mut self, n: usize) -> Self {
        self.crypto_threads = n;
        self
    }

    /// Checks the settings and builds the node around `app`.
    pub fn build<A: Application>(self, app: A) -> Result<SmrNode, String> {
        let me = self.me.clone();
        let fail = |what: String| format!("node {me}: {what}");
        if self.membership.get(&me).is_none() {
            return Err(fail(format!(
                "not in the membership (members: {:?})",
                self.membership.ids().iter().map(|n| n.as_str().to_owned()).collect::<Vec<_>>()
            )));
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
        let registry = self.membership.registry().map_err(|e| fail(e.to_string()))?;
        let mut app = AppModule::new(app, me.clone());
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
            .passive_on_worker(
                a::CRYPTO,
                EcdsaCrypto::new(self.keys.signing.clone(), registry).threads(self.crypto_threads),
            )
            .active(a::TIMER, Timer::new());
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
        let transport = GrpcTransport::new(GrpcConfig::new(
            me.clone(),
            self.membership.clone(),
            self.keys.transport.clone(),
        ))
        .map_err(|e| fail(e.to_string()))?;
        let grpc = transport.handle();
        if let Some(dir) = &self.record {
            use mir_runtime::eventlog::{Recorder, RecorderConfig};
            let recorder =
                Recorder::new(RecorderConfig::new(dir), &me).map_err(|e| fail(e.to_string()))?;
            builder = builder.interceptor(recorder);
        }
        let node = builder.active(a::NET, transport).build().map_err(|e| fail(e.to_string()))?;
        Ok(SmrNode { node, grpc, gateway: gateway_handle, peers: self.membership.ids().len() - 1 })
    }
}

/// A built node, not running yet.
pub struct SmrNode {
    node: Node,
    grpc: GrpcHandle,
    gateway: Option<GatewayHandle>,
    peers: usize,
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
        RunningNode { handle, grpc: self.grpc, gateway: self.gateway, peers: self.peers, task }
    }
}

/// A running node.
pub struct RunningNode {
    handle: NodeHandle,
    grpc: GrpcHandle,
    gateway: Option<GatewayHandle>,
    peers: usize,
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

    /// Waits until the node is connected to every other member (at most `timeout`).
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
