//! # Checkpointing: one instance per epoch (spec §4; Mir's `pkg/checkpoint`)
//!
//! ```text
//! upon AppSnapshot(data) ∧ ClientProgressSnapshot(progress) do
//!     h := H(canonical encoding of (data, progress))                      (through the hasher)
//!     σ := sign(CHECKPOINT ‖ epoch ‖ first sn ‖ h)                  (deployment and instance in
//!     send CHECKPOINT(epoch, first sn, h, σ) to the members              the signature domain)
//! upon CHECKPOINT(epoch, first sn, h', σ') from member p with h' = h ∧ σ' valid do sigs[p] := σ'
//! upon sigs is a strong quorum ∧ ¬stable do
//!     stable; send CHECKPOINT(…, stable) to the members                     (on change)
//!     propose the certificate (h, sigs) in the agreement instance       (a PBFT instance with
//!                                                                        fixed proposals)
//! upon the agreement instance delivers certificate C do trigger StableCheckpoint(C) (once)
//! upon the agreement instance suspects a node do tell the application
//! every resend period: send CHECKPOINT to the members that did not say they are stable
//! upon a resent CHECKPOINT from p ∧ stable do send CHECKPOINT(…, stable) to p
//! ```
//!
//! **One certificate for all.** Nodes gather different signature sets, so the certificate each
//! holds differs. As Mir does, every node proposes its own as the fixed proposal of a PBFT
//! instance (`<agreement factory>/<epoch>`, one `sn`, leader: the members sorted by ID, the
//! epoch-th); the instance's validator is this module ([`StableCheckpoint::check_structure`] and
//! the signatures). PBFT delivers one certificate, the same at every correct node, and never ⊥:
//! every primary has its own certificate to propose, and a pre-prepare of ⊥ is invalid in a
//! segment with fixed proposals. That certificate is the [`StableCheckpoint`] handed to the
//! application.
//!
//! **Verification.** A certificate is checked against the membership that signed it: distinct
//! members, a **strong** quorum by weight (a weak one only with [`CertQuorum::Weak`], which
//! Mir's permissive validator used and its code calls a vulnerability), every signature valid
//! in the signing instance's domain. What is hashed and signed is framed and canonically encoded
//! ([`snapshot_hash_data`], [`checkpoint_statement`]).
//!
//! **Spreading.** A node sends its CHECKPOINT when it signs and again when it becomes stable
//! (changes), and resends it periodically only to the members that have not told it they are
//! stable, so a lagging member still gets what it needs (Mir #113); nothing goes to nodes outside
//! the membership (Mir #407). Memory a peer can make an instance hold: one message per member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::stdevents::crypto::{
    HashRequest, HashResult, Origin, SigCheck, SigVerified, SignRequest, SignResult, SigsVerified,
    VerifySig, VerifySigs,
};
use mir_runtime::stdevents::NewSubmodule;
use serde::{Deserialize, Serialize};

use super::pbft::{self, PbftConfig, PbftModules};
use super::{
    EquivocationEvidence, ProposalValidated, SbDeliver, SbInstance, Segment, Sn, Source, Suspect,
    ValidateProposal, Validator,
};
use crate::availability::batchfetcher::ClientProgressSnapshot;
use crate::availability::ClientProgress;

/// A digest (32 bytes).
pub type Digest = Vec<u8>;

// ---- Events and messages ----

/// The application's snapshot of its state at the end of `epoch − 1`, for the instance of
/// `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSnapshot {
    /// The epoch the checkpoint starts.
    pub epoch: u64,
    /// The application's state.
    pub data: Vec<u8>,
}

/// CHECKPOINT(epoch, first sn, h, σ): the sender's signature on the snapshot hash `h`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The epoch the checkpoint starts.
    pub epoch: u64,
    /// The epoch's first sequence number (everything before it is in the snapshot).
    pub first_sn: Sn,
    /// The snapshot hash.
    pub snapshot_hash: Digest,
    /// The sender's signature of [`checkpoint_statement`].
    pub signature: Vec<u8>,
    /// The sender holds a stable checkpoint (it needs no more CHECKPOINTs).
    pub stable: bool,
    /// Sent again because the sender does not know the receiver is stable: a stable receiver
    /// answers with its own (an answer is not answered).
    pub resent: bool,
}

/// A stable checkpoint: the snapshot hash of the state before `first_sn`, and a strong quorum of
/// signatures on it. The certificate the application gets (the same at every correct node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableCheckpoint {
    /// The epoch it starts.
    pub epoch: u64,
    /// The first sequence number not in it.
    pub first_sn: Sn,
    /// The hash of the snapshot ([`snapshot_hash_data`]).
    pub snapshot_hash: Digest,
    /// Signers, sorted by ID, distinct.
    pub signers: Vec<NodeId>,
    /// Their signatures, one per signer.
    pub signatures: Vec<Vec<u8>>,
}

/// The parameters of one instance (from ISS, in a `NewSubmodule` to the [`factory`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInstance {
    /// The epoch the checkpoint starts.
    pub epoch: u64,
    /// The epoch's first sequence number.
    pub first_sn: Sn,
    /// The members that sign it (the previous epoch's), with their weights.
    pub membership: Vec<(NodeId, Weight)>,
    /// What the agreement instance logged before a restart (its [`pbft::recovery`] records).
    #[serde(default)]
    pub recovered_agreement: Vec<pbft::Sent>,
}

/// Resend CHECKPOINT (to itself, periodic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointResend;

payload!(
    AppSnapshot = "checkpoint.AppSnapshot",
    Checkpoint = "checkpoint.Checkpoint",
    StableCheckpoint = "checkpoint.StableCheckpoint",
    CheckpointInstance = "checkpoint.Instance",
    CheckpointResend = "checkpoint.Resend",
);

/// What is hashed into the snapshot hash: the canonical encoding of the application state and
/// the client progress, framed with a tag.
pub fn snapshot_hash_data(app: &[u8], progress: &ClientProgress) -> Vec<Vec<u8>> {
    vec![b"checkpoint.snapshot".to_vec(), app.to_vec(), mir_runtime::codec::encode(progress)]
}

/// What a member signs: `("CHECKPOINT", epoch, first sn, hash)`, framed (the crypto module adds
/// the deployment and the instance's module ID).
pub fn checkpoint_statement(epoch: u64, first_sn: Sn, hash: &[u8]) -> Vec<Vec<u8>> {
    vec![
        b"CHECKPOINT".to_vec(),
        epoch.to_le_bytes().to_vec(),
        first_sn.to_le_bytes().to_vec(),
        hash.to_vec(),
    ]
}

/// How many signers a certificate needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertQuorum {
    /// A strong quorum by weight (default).
    #[default]
    Strong,
    /// A weak quorum by weight (f + 1): Mir's permissive rule, for comparison only.
    Weak,
}

impl StableCheckpoint {
    /// The canonical encoding (what PBFT orders).
    pub fn to_bytes(&self) -> Vec<u8> {
        mir_runtime::codec::encode(self)
    }

    /// Decodes [`StableCheckpoint::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, mir_runtime::codec::DecodeError> {
        mir_runtime::codec::decode("checkpoint.StableCheckpoint", b)
    }

    /// Everything but the signatures: the epoch and first sn expected, a 32-byte hash, as many
    /// signatures as signers, signers distinct members forming the quorum `quorum` of `voters`.
    ///
    /// ```
    /// use protocols::ordering::checkpoint::{CertQuorum, StableCheckpoint};
    /// use mir_dsl::Voters;
    /// use mir_runtime::NodeId;
    /// let voters = Voters::equal((0..4).map(NodeId::from_index));
    /// let cert = |signers: Vec<usize>| StableCheckpoint {
    ///     epoch: 1, first_sn: 8, snapshot_hash: vec![0; 32],
    ///     signatures: vec![vec![1]; signers.len()],
    ///     signers: signers.into_iter().map(NodeId::from_index).collect(),
    /// };
    /// assert!(cert(vec![0, 1, 2]).check_structure(1, 8, &voters, CertQuorum::Strong).is_ok());
    /// assert!(cert(vec![0, 1]).check_structure(1, 8, &voters, CertQuorum::Strong).is_err());
    /// assert!(cert(vec![0, 1]).check_structure(1, 8, &voters, CertQuorum::Weak).is_ok());
    /// assert!(cert(vec![0, 1, 1]).check_structure(1, 8, &voters, CertQuorum::Strong).is_err());
    /// ```
    pub fn check_structure(
        &self,
        epoch: u64,
        first_sn: Sn,
        voters: &Voters,
        quorum: CertQuorum,
    ) -> Result<(), String> {
        if (self.epoch, self.first_sn) != (epoch, first_sn) {
            return Err(format!(
                "a certificate for epoch {} at sn {}, expected epoch {epoch} at sn {first_sn}",
                self.epoch, self.first_sn
            ));
        }
        if self.snapshot_hash.len() != 32 {
            return Err("the snapshot hash is not 32 bytes".into());
        }
        if self.signers.len() != self.signatures.len() {
            return Err("signers and signatures differ in number".into());
        }
        let enough = match quorum {
            CertQuorum::Strong => voters.is_strong_quorum(&self.signers),
            CertQuorum::Weak => voters.is_weak_quorum(&self.signers),
        };
        match enough {
            Err(e) => Err(e.to_string()),
            Ok(false) => Err(format!("the signers are not a {quorum:?} quorum")),
            Ok(true) => Ok(()),
        }
    }

    /// The request that checks every signature, in the signing instance's domain `domain`
    /// (`checkpoint/<epoch>`).
    pub fn verify_request(&self, domain: &ModuleId) -> VerifySigs {
        let data = checkpoint_statement(self.epoch, self.first_sn, &self.snapshot_hash);
        let checks = self.signers.iter().zip(&self.signatures).map(|(node, signature)| SigCheck {
            data: data.clone(),
            signature: signature.clone(),
            node: node.clone(),
        });
        VerifySigs::new(checks.collect()).in_domain(domain.clone())
    }
}

// ---- The module ----

/// Settings of the checkpoint instances.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Resend period of CHECKPOINT to members not yet stable. Default 1 s.
    pub resend_period: Duration,
    /// The quorum a certificate needs. Default strong.
    pub quorum: CertQuorum,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { resend_period: Duration::from_secs(1), quorum: CertQuorum::Strong }
    }
}

/// The modules an instance talks to.
#[derive(Debug, Clone)]
pub struct CheckpointModules {
    /// The transport.
    pub net: ModuleId,
    /// The crypto module.
    pub crypto: ModuleId,
    /// The hasher.
    pub hasher: ModuleId,
    /// The timer.
    pub timer: ModuleId,
    /// The PBFT factory of the agreement instances.
    pub agreement: ModuleId,
    /// Where [`StableCheckpoint`] goes.
    pub consumer: ModuleId,
}

/// Hashing the snapshot.
#[derive(Debug)]
pub struct SnapshotHashed;

/// Signing the hash.
#[derive(Debug)]
pub struct HashSigned;

/// Checking `from`'s signature.
#[derive(Debug)]
pub struct SigChecked {
    from: NodeId,
    signature: Vec<u8>,
}

/// Checking a proposed certificate for the agreement instance.
#[derive(Debug)]
pub struct CertChecked {
    origin: Origin,
}

/// One checkpoint instance.
pub struct CheckpointProtocol {
    modules: CheckpointModules,
    config: CheckpointConfig,
    params: CheckpointInstance,
    me: NodeId,
    voters: Voters,
    // State.
    app: Option<Vec<u8>>,
    progress: Option<ClientProgress>,
    hashing: bool,
    hash: Option<Digest>,
    my_signature: Option<Vec<u8>>,
    /// Valid signatures on `hash`.
    sigs: BTreeMap<NodeId, Vec<u8>>,
    /// Messages that came before `hash` was known (one per member).
    early: BTreeMap<NodeId, Checkpoint>,
    checking: BTreeSet<NodeId>,
    /// Members that said they are stable.
    stable_members: BTreeSet<NodeId>,
    /// This node's certificate, once stable.
    cert: Option<StableCheckpoint>,
    delivered: bool,
    resend: Option<TimerId>,
}

impl CheckpointProtocol {
    /// The instance `params`, run by `me`. Errors for an empty membership or a zero period.
    pub fn new(
        modules: CheckpointModules,
        config: CheckpointConfig,
        params: CheckpointInstance,
        me: NodeId,
    ) -> Result<Self, String> {
        if params.membership.is_empty() {
            return Err("the membership is empty".into());
        }
        if config.resend_period.is_zero() {
            return Err("resend_period must be positive".into());
        }
        let voters = Voters::new(params.membership.iter().cloned());
        Ok(CheckpointProtocol {
            modules,
            config,
            params,
            me,
            voters,
            app: None,
            progress: None,
            hashing: false,
            hash: None,
            my_signature: None,
            sigs: BTreeMap::new(),
            early: BTreeMap::new(),
            checking: BTreeSet::new(),
            stable_members: BTreeSet::new(),
            cert: None,
            delivered: false,
            resend: None,
        })
    }

    /// The certificate this node gathered (not necessarily the agreed one), once stable.
    pub fn own_certificate(&self) -> Option<&StableCheckpoint> {
        self.cert.as_ref()
    }

    /// The members other than this node.
    fn others(&self) -> Vec<NodeId> {
        self.voters.nodes().filter(|n| **n != self.me).cloned().collect()
    }

    fn message(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            epoch: self.params.epoch,
            first_sn: self.params.first_sn,
            snapshot_hash: self.hash.clone()?,
            signature: self.my_signature.clone()?,
            stable: self.cert.is_some(),
            resent: false,
        })
    }

    /// upon snapshot ∧ progress do hash them
    fn maybe_hash(&mut self, ctx: &mut Ctx<Self>) {
        if let (Some(app), Some(progress), false) = (&self.app, &self.progress, self.hashing) {
            self.hashing = true;
            let req = HashRequest::new(vec![snapshot_hash_data(app, progress)]);
            ctx.request(&self.modules.hasher, req, SnapshotHashed);
        }
    }

    /// Verifies `m`'s signature if it is for this node's hash and new.
    fn take(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Checkpoint) -> Handled {
        let Some(hash) = &self.hash else {
            self.early.insert(from, m);
            return Ok(());
        };
        ensure!(m.snapshot_hash == *hash, "CHECKPOINT from {from} for another snapshot hash");
        if self.sigs.contains_key(&from) || !self.checking.insert(from.clone()) {
            return Ok(()); // a resend (answered in `on_checkpoint`)
        }
        let data = checkpoint_statement(self.params.epoch, self.params.first_sn, hash);
        let check = VerifySig::new(data, m.signature.clone(), from.clone());
        ctx.request(&self.modules.crypto, check, SigChecked { from, signature: m.signature });
        Ok(())
    }

    /// upon sigs is a strong quorum ∧ ¬stable do stable; tell the members; propose the
    /// certificate for agreement
    fn check_stable(&mut self, ctx: &mut Ctx<Self>) {
        if self.cert.is_some() {
            return;
        }
        let enough = match self.config.quorum {
            CertQuorum::Strong => self.voters.is_strong_quorum(self.sigs.keys()),
            CertQuorum::Weak => self.voters.is_weak_quorum(self.sigs.keys()),
        };
        let (Ok(true), Some(hash)) = (enough, self.hash.clone()) else { return };
        let (signers, signatures) = self.sigs.iter().map(|(n, s)| (n.clone(), s.clone())).unzip();
        let cert = StableCheckpoint {
            epoch: self.params.epoch,
            first_sn: self.params.first_sn,
            snapshot_hash: hash,
            signers,
            signatures,
        };
        let value = cert.to_bytes();
        self.cert = Some(cert);
        if let Some(m) = self.message() {
            ctx.send(&self.modules.net, self.others(), m);
        }
        // The agreement instance: one sn, every node's own certificate as its fixed proposal.
        let order: BTreeSet<NodeId> = self.voters.nodes().cloned().collect();
        let order: Vec<NodeId> = order.into_iter().collect();
        let leader = order[(self.params.epoch % order.len() as u64) as usize].clone();
        let sn = self.params.first_sn;
        let mut segment = Segment::new(leader, self.params.membership.clone(), vec![sn]);
        segment.proposals.insert(sn, value);
        let me = ctx.me().clone();
        let instance = SbInstance {
            segment,
            consumer: Some(me.clone()),
            source: None,
            validator: Some(Validator::Module(me)),
            retention: self.params.epoch,
            recovered: std::mem::take(&mut self.params.recovered_agreement),
        };
        let new = NewSubmodule {
            id: self.modules.agreement.then(self.params.epoch),
            params: instance.into(),
            retention_index: self.params.epoch,
        };
        ctx.emit(&self.modules.agreement.clone(), new);
    }
}

/// A [factory](mir_runtime::stdmodules::Factory) of checkpoint instances: a
/// `NewSubmodule { id: <factory>/<epoch>, params: CheckpointInstance { .. } }` creates the
/// instance of that epoch.
pub fn factory(modules: CheckpointModules, config: CheckpointConfig, me: NodeId) -> Factory {
    let timer = modules.timer.clone();
    Factory::of(move |id, p: CheckpointInstance| {
        let c = CheckpointProtocol::new(modules.clone(), config.clone(), p, me.clone())
            .map_err(|e| ModuleError::new(format!("checkpoint instance {id}: {e}")))?;
        Ok(DslModule::new(c))
    })
    .cancel_timers_at(timer) // a garbage-collected instance's resend timer stops
}

/// The PBFT factory for checkpoint agreement: fixed proposals only, validated by each
/// checkpoint instance (named in its [`SbInstance`]).
pub fn agreement_factory(
    net: ModuleId,
    crypto: ModuleId,
    timer: ModuleId,
    config: PbftConfig,
    me: NodeId,
) -> Factory {
    agreement_factory_logged(net, crypto, timer, None, config, me)
}

/// [`agreement_factory`] whose instances log what they send in `wal` ([`pbft::recovery`]).
pub fn agreement_factory_logged(
    net: ModuleId,
    crypto: ModuleId,
    timer: ModuleId,
    wal: Option<ModuleId>,
    config: PbftConfig,
    me: NodeId,
) -> Factory {
    let modules = PbftModules {
        wal,
        net,
        crypto,
        timer,
        consumer: ModuleId::new("checkpoint"), // replaced per instance
        source: Source::FixedOnly,
        validator: Validator::AcceptAll, // replaced per instance
    };
    pbft::factory(modules, config, me)
}

#[protocol]
impl CheckpointProtocol {
    /// upon AppSnapshot(data) do keep it
    #[upon(event)]
    fn on_app_snapshot(&mut self, ctx: &mut Ctx<Self>, s: AppSnapshot) -> Handled {
        ensure!(s.epoch == self.params.epoch, "a snapshot for epoch {}", s.epoch);
        ensure!(self.app.is_none(), "a second application snapshot");
        self.app = Some(s.data);
        self.maybe_hash(ctx);
        Ok(())
    }

    /// upon ClientProgressSnapshot(progress) do keep it
    #[upon(event)]
    fn on_progress(&mut self, ctx: &mut Ctx<Self>, s: ClientProgressSnapshot) -> Handled {
        ensure!(s.epoch == self.params.epoch, "client progress for epoch {}", s.epoch);
        ensure!(self.progress.is_none(), "a second client progress");
        self.progress = Some(s.client_progress);
        self.maybe_hash(ctx);
        Ok(())
    }

    /// … h := H(snapshot); σ := sign(CHECKPOINT ‖ epoch ‖ first sn ‖ h)
    #[upon(response)]
    fn on_hashed(&mut self, ctx: &mut Ctx<Self>, r: HashResult, _c: SnapshotHashed) -> Handled {
        let Some(hash) = r.digests.into_iter().next() else {
            fatal!("the hasher returned nothing")
        };
        let data = checkpoint_statement(self.params.epoch, self.params.first_sn, &hash);
        self.hash = Some(hash);
        ctx.request(&self.modules.crypto.clone(), SignRequest::new(data), HashSigned);
        Ok(())
    }

    /// … send CHECKPOINT(epoch, first sn, h, σ) to the members; resend periodically
    #[upon(response)]
    fn on_signed(&mut self, ctx: &mut Ctx<Self>, r: SignResult, _c: HashSigned) -> Handled {
        self.my_signature = Some(r.signature.clone());
        if self.voters.contains(&self.me) {
            self.sigs.insert(self.me.clone(), r.signature);
        }
        if let Some(m) = self.message() {
            ctx.send(&self.modules.net, self.others(), m);
        }
        let (timer, period) = (self.modules.timer.clone(), self.config.resend_period);
        self.resend = Some(ctx.every(&timer, period, CheckpointResend));
        for (from, m) in std::mem::take(&mut self.early) {
            let _ = self.take(ctx, from, m); // a mismatch was counted when it arrived
        }
        self.check_stable(ctx);
        Ok(())
    }

    /// every resend period: send CHECKPOINT to the members that did not say they are stable
    #[upon(event)]
    fn on_resend(&mut self, ctx: &mut Ctx<Self>, _r: CheckpointResend) -> Handled {
        let to: Vec<NodeId> =
            self.others().into_iter().filter(|n| !self.stable_members.contains(n)).collect();
        if to.is_empty() {
            if let Some(t) = self.resend.take() {
                ctx.cancel(&self.modules.timer.clone(), t);
            }
            return Ok(());
        }
        if let Some(m) = self.message() {
            ctx.send(&self.modules.net, to, Checkpoint { resent: true, ..m });
        }
        Ok(())
    }

    /// upon CHECKPOINT(epoch, first sn, h', σ') from member p do check it
    #[upon(message)]
    fn on_checkpoint(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Checkpoint) -> Handled {
        ensure!(self.voters.contains(&from), "CHECKPOINT from non-member {from}");
        let this = (self.params.epoch, self.params.first_sn);
        ensure!(
            (m.epoch, m.first_sn) == this,
            "CHECKPOINT from {from} for epoch {} at sn {}",
            m.epoch,
            m.first_sn
        );
        ensure!(m.snapshot_hash.len() == 32, "CHECKPOINT from {from} with a malformed hash");
        if m.stable {
            self.stable_members.insert(from.clone());
        }
        // A resend: its sender does not know this node is stable; tell it (not answered).
        if let Some(mine) = self.message().filter(|mine| m.resent && mine.stable) {
            ctx.send(&self.modules.net, [&from], mine);
        }
        self.take(ctx, from, m)
    }

    /// … with σ' valid do sigs[p] := σ'
    #[upon(response)]
    fn on_sig_checked(&mut self, ctx: &mut Ctx<Self>, r: SigVerified, c: SigChecked) -> Handled {
        self.checking.remove(&c.from);
        if let Some(e) = r.error {
            ignore!("CHECKPOINT from {} with an invalid signature: {e}", c.from);
        }
        self.sigs.insert(c.from, c.signature);
        self.check_stable(ctx);
        Ok(())
    }

    /// The agreement instance asks: is this certificate valid? (structure, then signatures)
    #[upon(event)]
    fn on_validate(&mut self, ctx: &mut Ctx<Self>, v: ValidateProposal) -> Handled {
        let origin = v.origin.clone();
        let checked =
            StableCheckpoint::from_bytes(&v.value).map_err(|e| e.to_string()).and_then(|cert| {
                let (e, sn) = (self.params.epoch, self.params.first_sn);
                cert.check_structure(e, sn, &self.voters, self.config.quorum).map(|_| cert)
            });
        match checked {
            Err(error) => {
                ctx.emit(
                    &origin.module,
                    ProposalValidated { error: Some(error), origin: origin.clone() },
                );
            }
            Ok(cert) => {
                let req = cert.verify_request(ctx.me());
                ctx.request(&self.modules.crypto.clone(), req, CertChecked { origin });
            }
        }
        Ok(())
    }

    /// … (the signatures)
    #[upon(response)]
    fn on_cert_checked(&mut self, ctx: &mut Ctx<Self>, r: SigsVerified, c: CertChecked) -> Handled {
        let error = (!r.all_ok).then(|| "a signature of the certificate is invalid".to_string());
        ctx.emit(&c.origin.module, ProposalValidated { error, origin: c.origin.clone() });
        Ok(())
    }

    /// The agreement instance suspects a primary (an invalid certificate proposed): tell the
    /// consumer.
    #[upon(event)]
    fn on_suspect(&mut self, ctx: &mut Ctx<Self>, s: Suspect) -> Handled {
        ctx.emit(&self.modules.consumer.clone(), s);
        Ok(())
    }

    /// The agreement instance holds proof of equivocation: tell the consumer.
    #[upon(event)]
    fn on_evidence(&mut self, ctx: &mut Ctx<Self>, e: EquivocationEvidence) -> Handled {
        ctx.emit(&self.modules.consumer.clone(), e);
        Ok(())
    }

    /// upon the agreement instance delivers certificate C do trigger StableCheckpoint(C) (once)
    #[upon(event)]
    fn on_agreed(&mut self, ctx: &mut Ctx<Self>, d: SbDeliver) -> Handled {
        ensure!(!self.delivered, "a second agreement on the checkpoint");
        let Some(value) = d.value else {
            fatal!("checkpoint agreement delivered ⊥, which it never proposes")
        };
        let cert = match StableCheckpoint::from_bytes(&value) {
            Ok(c) => c,
            Err(e) => fatal!("checkpoint agreement delivered a value it did not validate: {e}"),
        };
        self.delivered = true;
        ctx.emit(&self.modules.consumer.clone(), cert);
        Ok(())
    }
}
