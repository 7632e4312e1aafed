//! The ISS demo: a replicated log of client transactions, ordered by ISS over PBFT and the
//! availability layer, over gRPC with real k256 signatures.
//!
//! Each node runs ISS and what it needs ([`protocols::ordering::iss::add_to`]: the availability
//! layer, the PBFT and checkpoint factories, ISS), `crypto` (k256 on worker threads), `timer`,
//! `net` (gRPC) and `app` ([`IssApp`], below): it reports every ordered batch to the program and
//! answers checkpoint snapshots with a digest of everything it applied.

use std::sync::mpsc;

use mir_dsl::mir_runtime::stdmodules::hasher;
use mir_dsl::mir_runtime::{Batch, ModuleId, ModuleResult, NodeId, Outbox, PassiveModule};
use protocols::availability::batchfetcher::{NewOrderedBatch, RestoreState, SnapshotRequest};
use protocols::availability::mempool::TransactionsRejected;
use protocols::ordering::checkpoint::{AppSnapshot, StableCheckpoint};
use protocols::ordering::iss::{self, EpochStarted, NodeSettings};

use crate::cluster::DemoNode;
use mir_dsl::mir_runtime::wal::Wal;

/// What the app reports to the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssReport {
    /// Batch `sn` was delivered on `node`: these transactions (client, number), duplicates removed.
    Batch {
        /// The node.
        node: NodeId,
        /// The sequence number.
        sn: u64,
        /// The transactions.
        txs: Vec<(String, u64)>,
    },
    /// Epoch `epoch` started on `node` with these leaders.
    Epoch {
        /// The node.
        node: NodeId,
        /// The epoch.
        epoch: u64,
        /// Its leaders.
        leaders: Vec<NodeId>,
    },
    /// A checkpoint became stable on `node`.
    Stable {
        /// The node.
        node: NodeId,
        /// The epoch it starts.
        epoch: u64,
    },
    /// `node` restored the state of a stable checkpoint from its peers (state transfer): the
    /// batches before epoch `epoch` are in that state, not reported one by one.
    Restored {
        /// The node.
        node: NodeId,
        /// The epoch the checkpoint starts.
        epoch: u64,
    },
    /// The application's state on `node` after a batch or a restore: transactions applied in
    /// all (this run's and, restored, the earlier ones') and the digest chained over them.
    Applied {
        /// The node.
        node: NodeId,
        /// Transactions applied.
        applied: u64,
        /// The digest over every transaction applied, in order.
        digest: Vec<u8>,
    },
    /// The mempool of `node` refused transactions: (client, number, reason) of each.
    Rejected {
        /// The node.
        node: NodeId,
        /// What was refused.
        rejected: Vec<(String, u64, String)>,
    },
}

/// The demo's application: a digest chained over every transaction applied, and their count.
/// Its snapshot is the digest (32 bytes) and the count (8 bytes, little endian).
pub struct IssApp {
    me: NodeId,
    state: Vec<u8>,
    applied: u64,
    report: mpsc::Sender<IssReport>,
}

impl IssApp {
    /// The app of node `me`; reports go to `report`.
    pub fn new(me: NodeId, report: mpsc::Sender<IssReport>) -> Self {
        IssApp { me, state: vec![0; 32], applied: 0, report }
    }

    fn snapshot(&self) -> Vec<u8> {
        [&self.state[..], &self.applied.to_le_bytes()].concat()
    }

    fn applied(&self) -> IssReport {
        IssReport::Applied {
            node: self.me.clone(),
            applied: self.applied,
            digest: self.state.clone(),
        }
    }
}

impl PassiveModule for IssApp {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            let me = self.me.clone();
            let report = if let Some(b) = ev.get::<NewOrderedBatch>() {
                for t in &b.txs {
                    let parts = [
                        self.state.clone(),
                        t.client.0.as_bytes().to_vec(),
                        t.tx_no.to_le_bytes().to_vec(),
                        t.data.clone(),
                    ];
                    self.state = hasher::digest(&parts);
                    self.applied += 1;
                }
                let _ = self.report.send(self.applied());
                let txs = b.txs.iter().map(|t| (t.client.0.clone(), t.tx_no)).collect();
                IssReport::Batch { node: me, sn: b.sn, txs }
            } else if let Some(s) = ev.get::<SnapshotRequest>() {
                out.send(
                    &ModuleId::new(iss::names::ISS),
                    AppSnapshot { epoch: s.epoch, data: self.snapshot() },
                );
                continue;
            } else if let Some(r) = ev.get::<RestoreState>() {
                // A strong quorum certified this state (or this node logged it): it replaces
                // this node's.
                if r.app.len() != 40 {
                    tracing::error!(bytes = r.app.len(), "a restored state that is not this app's");
                    continue;
                }
                self.state = r.app[..32].to_vec();
                self.applied = u64::from_le_bytes(r.app[32..].try_into().expect("8 bytes"));
                let _ = self.report.send(self.applied());
                IssReport::Restored { node: me, epoch: r.epoch }
            } else if let Some(e) = ev.get::<EpochStarted>() {
                IssReport::Epoch { node: me, epoch: e.epoch, leaders: e.leaders.clone() }
            } else if let Some(c) = ev.get::<StableCheckpoint>() {
                IssReport::Stable { node: me, epoch: c.epoch }
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                let rejected = r
                    .rejected
                    .iter()
                    .map(|x| (x.client.0.clone(), x.tx_no, x.reason.clone()))
                    .collect();
                IssReport::Rejected { node: me, rejected }
            } else {
                continue; // log entries (`OrderedEntry`) and the rest: the batches say it all
            };
            let _ = self.report.send(report);
        }
        Ok(())
    }
}

/// Builds node `me` of the demo over gRPC (and records its events under `record`, if given;
/// with a write-ahead log, if given: see [`demo_modules`]).
pub fn demo_node(
    me: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    keys: mir_dsl::mir_runtime::keys::NodeKeys,
    settings: &NodeSettings,
    report: mpsc::Sender<IssReport>,
    record: Option<&std::path::Path>,
    wal: Option<Wal>,
) -> Result<DemoNode, Box<dyn std::error::Error>> {
    let builder = demo_modules(me.clone(), membership, keys.signing, settings, report, wal)?;
    crate::cluster::over_grpc(&me, membership, keys.transport, builder, record)
}

/// The demo node's modules without a transport (add one named `net`, or hand the builder to the
/// simulator): app, k256 crypto on worker threads, timer, and ISS with everything it needs; with
/// `wal` (make it with [`wal_in`]), crash recovery ([`iss::add_to_with_wal`]).
pub fn demo_modules(
    me: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    key: k256::ecdsa::SigningKey,
    settings: &NodeSettings,
    report: mpsc::Sender<IssReport>,
    wal: Option<Wal>,
) -> Result<mir_dsl::mir_runtime::NodeBuilder, Box<dyn std::error::Error>> {
    use mir_dsl::mir_runtime::stdmodules::{EcdsaCrypto, Timer};
    use mir_dsl::mir_runtime::Node;
    let registry = membership.registry()?;
    let builder = Node::builder(me.clone())
        .passive("app", IssApp::new(me.clone(), report))
        .passive_on_worker("crypto", EcdsaCrypto::new(key, registry).threads(2))
        .active("timer", Timer::new());
    Ok(match wal {
        Some(wal) => iss::add_to_with_wal(builder, me, membership.weights(), settings, wal)?,
        None => iss::add_to(builder, me, membership.weights(), settings)?,
    })
}

/// A write-ahead log in directory `dir` (created if missing), syncing once per batch, for the
/// ISS module of [`demo_modules`].
pub fn wal_in(dir: &std::path::Path) -> std::io::Result<Wal> {
    let disk = mir_dsl::mir_runtime::wal::disk::DirDisk::new(dir)?;
    Ok(Wal::new(disk, ModuleId::new(iss::names::ISS)))
}
