//! The availability demo: transactions in, a certificate out, the batch read back from the
//! certificate on another node, over gRPC with k256 signatures.
//!
//! Each node runs the availability layer ([`protocols::availability::add_to`]: mempool, batch
//! DB, the multisig collector factory, batch fetcher, hasher), plus `crypto` (k256 on a worker
//! thread), `timer`, `net` (gRPC) and `app` ([`AvailabilityApp`], below, in the DSL), which turns
//! the program's commands into requests and reports the answers.

use std::sync::mpsc;

use mir_dsl::mir_runtime::stdevents::Init;
use mir_dsl::mir_runtime::{payload, ModuleId, NodeId};
use mir_dsl::{protocol, Ctx, Handled, Weight};
use protocols::availability::mempool::{NewTransactions, TransactionsRejected};
use protocols::availability::msc::{
    CertVerified, NewCert, ProvideTransactions, RequestCert, RequestTransactions, VerifyCert,
};
use protocols::availability::{new_epoch_instance, Cert, Tx};
use serde::{Deserialize, Serialize};

use crate::cluster::DemoNode;

/// Command: submit `txs` to this node's mempool and ask for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBatch {
    /// The transactions.
    pub txs: Vec<Tx>,
}

/// Command: verify `cert` and read its batch on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadBatch {
    /// The certificate.
    pub cert: Cert,
}

payload!(CreateBatch = "demo.CreateBatch", ReadBatch = "demo.ReadBatch");

/// What the app reports to the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvailabilityReport {
    /// A certificate was made on `node`.
    Cert {
        /// The node.
        node: NodeId,
        /// The certificate.
        cert: Cert,
    },
    /// The mempool of `node` refused transactions.
    Rejected {
        /// The node.
        node: NodeId,
        /// (tx number, reason) of each.
        rejected: Vec<(u64, String)>,
    },
    /// A certificate was read on `node`: its transactions.
    Batch {
        /// The node.
        node: NodeId,
        /// The transactions.
        txs: Vec<Tx>,
    },
    /// A certificate was invalid on `node`.
    Invalid {
        /// The node.
        node: NodeId,
        /// Why.
        error: String,
    },
}

/// Waiting for a certificate.
#[derive(Debug)]
pub struct CertFor;
/// Verifying a certificate before reading it.
#[derive(Debug)]
pub struct Verifying {
    cert: Cert,
}
/// Reading a certificate's batch.
#[derive(Debug)]
pub struct Reading;

/// The demo's application module.
pub struct AvailabilityApp {
    me: NodeId,
    membership: Vec<(NodeId, Weight)>,
    instance: ModuleId,
    report: mpsc::Sender<AvailabilityReport>,
}

impl AvailabilityApp {
    /// The app of node `me`; reports go to `report`.
    pub fn new(
        me: NodeId,
        membership: Vec<(NodeId, Weight)>,
        report: mpsc::Sender<AvailabilityReport>,
    ) -> Self {
        AvailabilityApp { me, membership, instance: ModuleId::new("availability/0"), report }
    }
}

#[protocol]
impl AvailabilityApp {
    /// upon Init do create the multisig collector of epoch 0
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
        ctx.emit(&ModuleId::new("availability"), new_epoch_instance(0, &self.membership));
        Ok(())
    }

    /// upon CreateBatch(txs) do submit txs; request a certificate
    #[upon(event)]
    fn create(&mut self, ctx: &mut Ctx<Self>, c: CreateBatch) -> Handled {
        ctx.emit(&ModuleId::new("mempool"), NewTransactions { txs: c.txs });
        let inst = self.instance.clone();
        ctx.request(&inst, RequestCert::new(), CertFor);
        Ok(())
    }

    /// upon NewCert(cert) do report it
    #[upon(response)]
    fn cert(&mut self, _ctx: &mut Ctx<Self>, c: NewCert, _w: CertFor) -> Handled {
        let _ = self.report.send(AvailabilityReport::Cert { node: self.me.clone(), cert: c.cert });
        Ok(())
    }

    /// upon TransactionsRejected do report them
    #[upon(event)]
    fn rejected(&mut self, _ctx: &mut Ctx<Self>, r: TransactionsRejected) -> Handled {
        let rejected = r.rejected.into_iter().map(|r| (r.tx_no, r.reason)).collect();
        let _ = self.report.send(AvailabilityReport::Rejected { node: self.me.clone(), rejected });
        Ok(())
    }

    /// upon ReadBatch(cert) do verify it first
    #[upon(event)]
    fn read(&mut self, ctx: &mut Ctx<Self>, r: ReadBatch) -> Handled {
        let inst = self.instance.clone();
        ctx.request(&inst, VerifyCert::new(r.cert.clone()), Verifying { cert: r.cert });
        Ok(())
    }

    /// … if valid, ask for its transactions
    #[upon(response)]
    fn verified(&mut self, ctx: &mut Ctx<Self>, v: CertVerified, w: Verifying) -> Handled {
        if !v.valid {
            let _ = self.report.send(AvailabilityReport::Invalid {
                node: self.me.clone(),
                error: v.error.unwrap_or_default(),
            });
            return Ok(());
        }
        let inst = self.instance.clone();
        ctx.request(&inst, RequestTransactions::new(w.cert), Reading);
        Ok(())
    }

    /// … and report them
    #[upon(response)]
    fn batch(&mut self, _ctx: &mut Ctx<Self>, p: ProvideTransactions, _r: Reading) -> Handled {
        let _ = self.report.send(AvailabilityReport::Batch { node: self.me.clone(), txs: p.txs });
        Ok(())
    }
}

/// Builds node `me` of the demo.
pub fn demo_node(
    me: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    keys: mir_dsl::mir_runtime::keys::NodeKeys,
    config: &protocols::availability::Config,
    report: mpsc::Sender<AvailabilityReport>,
) -> Result<DemoNode, Box<dyn std::error::Error>> {
    let builder = demo_modules(me.clone(), membership, keys.signing, config, report)?;
    crate::cluster::over_grpc(&me, membership, keys.transport, builder, None)
}

/// The demo node's modules without a transport (add one named `net`, or hand the builder to the
/// simulator, which adds its own): app, k256 crypto on a worker thread, timer and the
/// availability layer.
pub fn demo_modules(
    me: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    key: k256::ecdsa::SigningKey,
    config: &protocols::availability::Config,
    report: mpsc::Sender<AvailabilityReport>,
) -> Result<mir_dsl::mir_runtime::NodeBuilder, Box<dyn std::error::Error>> {
    use mir_dsl::mir_runtime::stdmodules::{EcdsaCrypto, Timer};
    use mir_dsl::mir_runtime::Node;
    let registry = membership.registry()?;
    let app = AvailabilityApp::new(me.clone(), membership.weights(), report);
    let builder = Node::builder(me.clone())
        .passive("app", mir_dsl::DslModule::new(app))
        .passive_on_worker("crypto", EcdsaCrypto::new(key, registry).threads(2))
        .active("timer", Timer::new());
    Ok(protocols::availability::add_to(builder, me, config)?)
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}
