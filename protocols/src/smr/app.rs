//! An [`Application`] as a node's `app` module.
//!
//! ```text
//! upon NewOrderedBatch(sn, txs) from the batch fetcher do
//!     for each tx (index i): result := app.apply(tx), or "!" and why if the client check
//!         (e.g. its signature, `smr::signed`) fails
//!     trigger Applied(sn, [(client, tx_no, i, result)]) to the receipts module, if any
//! upon SnapshotRequest(e) do
//!     if app.membership() changed since the last boundary: send NewMembership(e, it) to ISS and
//!         MembershipUpdate(it) to the transport and crypto (reconfiguration)
//!     send AppSnapshot(e, app.snapshot()) to ISS
//! upon RestoreState(e, progress, s) do app.restore(s) (an error stops the node: another app);
//!     trigger Restored(e, progress) to the receipts module, if any;
//!     MembershipUpdate(app.membership()) to the transport and crypto
//! upon Left(e) from ISS do forward it to the receipts module (this node is no longer a member)
//! ```
//!
//! The batch fetcher delivers each transaction once (duplicates removed by client progress), in
//! log order, with the snapshot requests between the same batches at every node; so every
//! correct node's application goes through the same states.

use mir_runtime::{
    payload, Batch, ModuleError, ModuleId, ModuleResult, NodeId, Outbox, PassiveModule,
};
use serde::{Deserialize, Serialize};

use super::Application;
use crate::availability::batchfetcher::{NewOrderedBatch, RestoreState, SnapshotRequest};
use crate::availability::{ClientId, ClientProgress, Tx};
use crate::ordering::checkpoint::AppSnapshot;
use crate::ordering::iss::reconfig::Left;
#[cfg(feature = "system")]
use crate::ordering::iss::reconfig::NewMembership;
#[cfg(feature = "system")]
use mir_runtime::{membership::Member, stdevents::MembershipUpdate};

/// A check of each ordered transaction before it is applied ([`AppModule::check_clients`]).
pub type ClientCheck = fn(&Tx) -> Result<(), String>;

/// One applied transaction: who sent it, its place in the log, and what it returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The client.
    pub client: ClientId,
    /// The client's number for it.
    pub tx_no: u64,
    /// Its index in the batch of its sequence number.
    pub index: u32,
    /// Its payload.
    pub data: Vec<u8>,
    /// What the application returned.
    pub result: Vec<u8>,
}

/// The transactions of batch `sn`, applied (to the receipts module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The log position of the batch.
    pub sn: u64,
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
}

/// This node's application jumped to the state at the start of epoch `epoch` (a state transfer,
/// or a restart from its WAL): the transactions in `client_progress` are in it, without
/// receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The epoch the state starts.
    pub epoch: u64,
    /// What was delivered before it.
    pub client_progress: ClientProgress,
}

payload!(Applied = "smr.Applied", Restored = "smr.Restored");

/// Runs an [`Application`] as a passive module (register it as the availability layer's
/// destination, `app` by default).
///
/// ```
/// use mir_runtime::{testing::apply, Event, ModuleId, NodeId};
/// use protocols::availability::batchfetcher::NewOrderedBatch;
/// use protocols::availability::Tx;
/// use protocols::smr::app::{AppModule, Applied};
/// use protocols::smr::kv::KvStore;
///
/// let mut m = AppModule::new(KvStore::default(), NodeId::from_index(0))
///     .receipts_to(ModuleId::new("clients"));
/// let batch = NewOrderedBatch { sn: 7, txs: vec![Tx::new("alice", 0, "put k v")] };
/// let out = apply(&mut m, ModuleId::new("app"), vec![Event::new("batchfetcher", "app", batch)])
///     .unwrap();
/// let applied: Applied = out[0].payload.decode().unwrap().unwrap();
/// assert_eq!((applied.sn, applied.receipts[0].result.as_slice()), (7, &b"-"[..]));
/// ```
pub struct AppModule<A> {
    app: A,
    me: NodeId,
    iss: ModuleId,
    receipts: Vec<ModuleId>,
    /// Where membership updates go (the transport and crypto).
    #[cfg(feature = "system")]
    members_to: Vec<ModuleId>,
    /// The application's membership at the last boundary (or start, or restore).
    #[cfg(feature = "system")]
    announced: Option<Vec<Member>>,
    /// Checks each transaction before it is applied.
    check: Option<ClientCheck>,
    applied: u64,
}

impl<A: Application> AppModule<A> {
    /// `app` on node `me`; snapshots go to `iss` (see [`AppModule::iss`]), receipts nowhere.
    pub fn new(app: A, me: NodeId) -> Self {
        let iss = ModuleId::new(crate::ordering::iss::names::ISS);
        #[cfg(feature = "system")]
        let announced = app.membership();
        AppModule {
            app,
            me,
            iss,
            receipts: Vec::new(),
            #[cfg(feature = "system")]
            members_to: Vec::new(),
            #[cfg(feature = "system")]
            announced,
            check: None,
            applied: 0,
        }
    }

    /// Sends [`Applied`], [`Restored`] and [`Left`] to `module` (the client gateway), and to
    /// the modules given in earlier calls.
    pub fn receipts_to(mut self, module: ModuleId) -> Self {
        self.receipts.push(module);
        self
    }

    /// Sends [`MembershipUpdate`]s to these modules (the transport and crypto of a node whose
    /// application reconfigures).
    #[cfg(feature = "system")]
    pub fn membership_updates_to(mut self, modules: Vec<ModuleId>) -> Self {
        self.members_to = modules;
        self
    }

    /// Checks every ordered transaction with `check` before applying it (the same at every
    /// node): one that fails is not applied, and its result is `!` and the reason. The SMR
    /// system checks client signatures this way (`smr::signed::check`).
    pub fn check_clients(mut self, check: ClientCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// Sends snapshots to `module` instead of `iss`.
    pub fn iss(mut self, module: ModuleId) -> Self {
        self.iss = module;
        self
    }

    /// The application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// Transactions applied since this module started.
    pub fn applied(&self) -> u64 {
        self.applied
    }
}

impl<A: Application> AppModule<A> {
    fn to_receipts<T: mir_runtime::EventPayload + Clone>(&self, out: &mut Outbox, value: T) {
        if let Some((last, rest)) = self.receipts.split_last() {
            for to in rest {
                out.send(to, value.clone());
            }
            out.send(last, value);
        }
    }

    /// At the boundary of `epoch`: a membership that changed since the last boundary goes to
    /// ISS (it takes effect `config_offset` epochs later) and to the transport and crypto.
    #[cfg(feature = "system")]
    fn announce(&mut self, epoch: u64, out: &mut Outbox) {
        let now = self.app.membership();
        if now != self.announced {
            if let Some(members) = &now {
                let weights = members.iter().map(|m| (m.id.clone(), m.weight)).collect();
                out.send(&self.iss, NewMembership { epoch, members: weights });
                self.update_members(members, out);
            }
            self.announced = now;
        }
    }

    #[cfg(feature = "system")]
    fn update_members(&self, members: &[Member], out: &mut Outbox) {
        for to in &self.members_to {
            out.send(to, MembershipUpdate { members: members.to_vec() });
        }
    }
}

impl<A: Application> PassiveModule for AppModule<A> {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(b) = ev.get::<NewOrderedBatch>() {
                let mut receipts = Vec::with_capacity(b.txs.len());
                for (i, tx) in b.txs.iter().enumerate() {
                    let result = match self.check.map_or(Ok(()), |c| c(tx)) {
                        Ok(()) => self.app.apply(tx),
                        Err(e) => [&b"!"[..], e.as_bytes()].concat(),
                    };
                    self.applied += 1;
                    if !self.receipts.is_empty() {
                        let (client, tx_no, data) = (tx.client.clone(), tx.tx_no, tx.data.clone());
                        receipts.push(Receipt { client, tx_no, index: i as u32, data, result });
                    }
                }
                self.to_receipts(out, Applied { sn: b.sn, receipts });
            } else if let Some(s) = ev.get::<SnapshotRequest>() {
                #[cfg(feature = "system")]
                self.announce(s.epoch, out);
                out.send(&self.iss, AppSnapshot { epoch: s.epoch, data: self.app.snapshot() });
            } else if let Some(r) = ev.get::<RestoreState>() {
                // A strong quorum certified this state (or this node logged it).
                self.app.restore(&r.app).map_err(|e| {
                    ModuleError::new(format!(
                        "node {}: the certified state of epoch {} is not this application's: {e}",
                        self.me, r.epoch
                    ))
                })?;
                let progress = r.client_progress.clone();
                self.to_receipts(out, Restored { epoch: r.epoch, client_progress: progress });
                #[cfg(feature = "system")]
                {
                    self.announced = self.app.membership();
                    if let Some(members) = self.announced.clone() {
                        self.update_members(&members, out);
                    }
                }
            } else if let Some(l) = ev.get::<Left>() {
                // This node is no longer a member: the receipts module stops serving.
                self.to_receipts(out, l.clone());
            }
            // The rest (log entries, epochs, stable checkpoints): nothing to do.
        }
        Ok(())
    }
}
