//! PBFT's good case (Castro–Liskov §4.2; Mir's `parts/goodcase`):
//!
//! ```text
//! upon Init ∨ ProposeTimeout at the leader in view 0 such that slots remain do
//!     value := fixed proposal of sn, or ask the source (CutBatch / RequestCert)
//!     send PRE-PREPARE(sn, 0, value) to all
//! upon PRE-PREPARE(sn, v, value) from primary(v) in Normal(v), the first for sn in v do
//!     if valid(value) then preprepared; send PREPARE(sn, v, D(sn, value)) to all
//!     else trigger Suspect(primary(v))
//! upon PRE-PREPARE and a strong quorum of PREPARE(sn, v, d) matching it do
//!     prepared(sn, v, d); send COMMIT(sn, v, d) to all
//! upon a strong quorum of COMMIT(sn, v, d) and the value of d known do
//!     committed; trigger SbDeliver(sn, value)
//! ```
//!
//! Only the leader proposes fresh values, and only in view 0: later views re-propose through
//! NEW-VIEW ([`super::viewchange`]). A value the source hands over after view 0 ended goes back to
//! the consumer as [`ProposalUnused`].

use super::recovery::Sent;
use mir_dsl::prelude::*;
use mir_dsl::Counted;
use mir_runtime::stdevents::crypto::{Origin, SigVerified, SignRequest, SignResult, VerifySig};

use super::{
    commit_statement, value_digest, Commit, Digest, Early, Pbft, Phase, Prepare, Preprepare,
    Proposal, ProposeTimeout,
};
use crate::availability::msc::{CertVerified, NewCert, RequestCert, VerifyCert};
use crate::availability::Cert;
use crate::ordering::{
    BatchCut, CutBatch, EquivocationEvidence, ProposalUnused, ProposalValidated, SbDeliver, Sn,
    Source, Suspect, ValidateProposal, Validator,
};

/// The longest signature a COMMIT may carry (k256 signatures are 64 bytes).
pub const MAX_SIGNATURE: usize = 256;

/// Waiting for the source's value for `sn`.
#[derive(Debug)]
pub struct Proposing {
    sn: Sn,
}

/// Validating a pre-prepared value of `view`.
#[derive(Debug)]
pub struct Validating {
    view: u64,
    sn: Sn,
    digest: Digest,
    value: Option<Vec<u8>>,
}

/// Signing this node's commit.
#[derive(Debug)]
pub struct CommitSigned {
    view: u64,
    sn: Sn,
    digest: Digest,
}

/// Checking `from`'s signed commit.
#[derive(Debug)]
pub struct CommitChecked {
    from: NodeId,
    commit: Commit,
}

impl Pbft {
    /// The leader's proposal loop: propose the next slot if this node is the primary of view 0,
    /// still in view 0, and not waiting for the source or the propose delay.
    pub(crate) fn propose_next(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        while self.phase == (Phase::Normal { view: 0 })
            && self.me == self.segment.leader
            && !self.proposing
            && self.next_proposal < self.segment.sns.len()
        {
            let sn = self.segment.sns[self.next_proposal];
            self.next_proposal += 1;
            let fixed = self.segment.proposals.get(&sn).cloned();
            match (&self.modules.source, fixed) {
                (_, Some(value)) => self.send_preprepare(ctx, sn, Some(value))?,
                (Source::FixedOnly, None) => self.send_preprepare(ctx, sn, None)?,
                (Source::Availability(m), None) => {
                    self.proposing = true;
                    let m = m.clone();
                    let req = RequestCert::in_buckets(self.segment.buckets.clone());
                    ctx.request(&m, req, Proposing { sn });
                }
                (Source::Module(m), None) => {
                    self.proposing = true;
                    let m = m.clone();
                    let buckets = self.segment.buckets.clone();
                    ctx.request(
                        &m,
                        CutBatch { sn, buckets, origin: Origin::unset() },
                        Proposing { sn },
                    );
                }
            }
        }
        Ok(())
    }

    /// Sends PRE-PREPARE(sn, 0, value) and waits the propose delay before the next one.
    fn send_preprepare(&mut self, ctx: &mut Ctx<Self>, sn: Sn, value: Option<Vec<u8>>) -> Handled {
        let pp = Preprepare { sn, view: 0, value };
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        self.log_then_send(ctx, Sent::Preprepare(pp.clone()), all, pp)?;
        if !self.config.propose_delay.is_zero() {
            self.proposing = true;
            let (timer, d) = (self.modules.timer.clone(), self.config.propose_delay);
            ctx.after(&timer, d, ProposeTimeout);
        }
        Ok(())
    }

    /// The source's value for `sn`: propose it in view 0, else hand it back.
    fn proposal_ready(&mut self, ctx: &mut Ctx<Self>, sn: Sn, value: Vec<u8>) -> Handled {
        self.proposing = false;
        if self.phase != (Phase::Normal { view: 0 }) {
            ctx.emit(&self.modules.consumer.clone(), ProposalUnused { sn, value });
            return Ok(());
        }
        self.send_preprepare(ctx, sn, Some(value))?;
        self.propose_next(ctx)
    }

    /// Accepts the primary's pre-prepare of `value` for `sn` in `view` (from PRE-PREPARE or
    /// NEW-VIEW), the first of the view only: validates a value, then pre-prepares it. A
    /// re-proposal of a NEW-VIEW (`vouched`: conditions A1 and A2 hold for it, so a correct
    /// node pre-prepared it before) is not validated again.
    pub(crate) fn accept_preprepare(
        &mut self,
        ctx: &mut Ctx<Self>,
        view: u64,
        sn: Sn,
        value: Option<Vec<u8>>,
        vouched: bool,
    ) -> Handled {
        let digest = value_digest(sn, value.as_deref());
        let Some(slot) = self.slots.get_mut(&sn) else {
            ignore!("pre-prepare for sn {sn}, not in the segment")
        };
        ensure!(
            slot.proposal == Proposal::Awaited,
            "second pre-prepare for sn {sn} in view {view}"
        );
        slot.proposal = Proposal::Validating;
        let leader = self.primary(view).clone();
        if value.is_none() && self.segment.proposals.contains_key(&sn) {
            // With fixed proposals every primary has a value to propose: ⊥ is never needed.
            return self.invalid(ctx, leader, sn, "⊥ where a fixed proposal exists".into());
        }
        let cont = Validating { view, sn, digest, value: value.clone() };
        let v = match (&self.modules.validator, value) {
            (_, None) | (Validator::AcceptAll, _) => None,
            (_, Some(_)) if vouched => None,
            (_, Some(v)) => Some(v),
        };
        let Some(v) = v else { return self.preprepared(ctx, view, sn, cont.digest, cont.value) };
        match &self.modules.validator {
            Validator::AcceptAll => fatal!("AcceptAll needs no validation"),
            Validator::Availability(m) => match Cert::from_bytes(&v) {
                Err(e) => return self.invalid(ctx, leader, sn, format!("not a certificate: {e}")),
                // A batch of other buckets than the segment's (its signers checked the
                // transactions against the buckets it names, and signed those).
                Ok(cert)
                    if self.segment.buckets.is_some()
                        && cert.batches.iter().any(|b| b.buckets != self.segment.buckets) =>
                {
                    return self.invalid(ctx, leader, sn, "a batch of other buckets".into());
                }
                Ok(cert) => {
                    let m = m.clone();
                    ctx.request(&m, VerifyCert::new(cert), cont);
                }
            },
            Validator::Module(m) => {
                let m = m.clone();
                ctx.request(&m, ValidateProposal { sn, value: v, origin: Origin::unset() }, cont);
            }
        }
        Ok(())
    }

    /// The proposal of `leader` for `sn` is invalid: suspect it, do not prepare (the slot
    /// waits for the next view).
    fn invalid(&mut self, ctx: &mut Ctx<Self>, leader: NodeId, sn: Sn, why: String) -> Handled {
        if let Some(slot) = self.slots.get_mut(&sn) {
            slot.proposal = Proposal::Rejected;
        }
        let reason = format!("invalid proposal for sn {sn}: {why}");
        ctx.emit(&self.modules.consumer.clone(), Suspect { node: leader, reason: reason.clone() });
        ignore!("{reason}")
    }

    /// The validator's verdict on a pre-prepared value.
    fn validated(&mut self, ctx: &mut Ctx<Self>, c: Validating, error: Option<String>) -> Handled {
        ensure!(
            self.phase == (Phase::Normal { view: c.view }),
            "validated a value of view {} after leaving it",
            c.view
        );
        if let Some(e) = error {
            let leader = self.primary(c.view).clone();
            return self.invalid(ctx, leader, c.sn, e);
        }
        self.preprepared(ctx, c.view, c.sn, c.digest, c.value)
    }

    /// … preprepared; send PREPARE(sn, v, d) to all
    fn preprepared(
        &mut self,
        ctx: &mut Ctx<Self>,
        view: u64,
        sn: Sn,
        digest: Digest,
        value: Option<Vec<u8>>,
    ) -> Handled {
        let Some(slot) = self.slots.get_mut(&sn) else { fatal!("sn {sn} vanished") };
        slot.proposal = Proposal::Preprepared(digest.clone());
        slot.values.entry(digest.clone()).or_insert(value);
        slot.note_preprepared(&digest, view);
        let value = slot.values[&digest].clone();
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        let prepare = Prepare { sn, view, digest };
        self.log_then_send(ctx, Sent::Prepare { prepare: prepare.clone(), value }, all, prepare)?;
        self.check_prepared(ctx, sn)?;
        self.check_committed(ctx, sn);
        Ok(())
    }

    /// upon PRE-PREPARE and a strong quorum of matching PREPAREs do prepared; send COMMIT
    fn check_prepared(&mut self, ctx: &mut Ctx<Self>, sn: Sn) -> Handled {
        let Phase::Normal { view } = self.phase else { return Ok(()) };
        let strong = self.voters.strong_quorum();
        let Some(slot) = self.slots.get_mut(&sn) else { return Ok(()) };
        let Proposal::Preprepared(d) = slot.proposal.clone() else { return Ok(()) };
        if slot.sent_commit || slot.prepares.weight(&d) < strong {
            return Ok(());
        }
        slot.sent_commit = true;
        slot.prepared = Some((view, d.clone()));
        if self.config.sign_commits {
            let statement = commit_statement(sn, view, &d);
            let crypto = self.modules.crypto.clone();
            ctx.request(&crypto, SignRequest::new(statement), CommitSigned { view, sn, digest: d });
        } else {
            let commit = Commit { sn, view, digest: d, signature: Vec::new() };
            let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
            self.log_then_send(ctx, Sent::Commit(commit.clone()), all, commit)?;
        }
        Ok(())
    }

    /// Counts `from`'s COMMIT (already checked if signed).
    fn count_commit(&mut self, ctx: &mut Ctx<Self>, from: NodeId, c: Commit) -> Handled {
        let Some(slot) = self.slots.get_mut(&c.sn) else {
            ignore!("COMMIT for sn {}, not in the segment", c.sn)
        };
        match slot.commits.add(&self.voters, from.clone(), c.digest.clone()) {
            Counted::New => {
                if !c.signature.is_empty() {
                    slot.signed_commits.insert(from, c.clone());
                }
            }
            Counted::Repeated => ignore!("repeated COMMIT from {from} for sn {}", c.sn),
            Counted::NotMember => ignore!("COMMIT from non-member {from}"),
            Counted::Equivocation => {
                if let Some(first) =
                    slot.signed_commits.get(&from).filter(|_| !c.signature.is_empty())
                {
                    let evidence = EquivocationEvidence {
                        node: from.clone(),
                        first: first.clone(),
                        second: c.clone(),
                    };
                    ctx.emit(&self.modules.consumer.clone(), evidence);
                }
                ignore!("{from} sent two different COMMITs for sn {} in view {}", c.sn, c.view)
            }
        }
        self.check_committed(ctx, c.sn);
        Ok(())
    }

    /// upon a strong quorum of COMMIT(sn, v, d) and the value of d known do committed;
    /// trigger SbDeliver(sn, value)
    pub(crate) fn check_committed(&mut self, ctx: &mut Ctx<Self>, sn: Sn) {
        let strong = self.voters.strong_quorum();
        let Some(slot) = self.slots.get(&sn) else { return };
        if slot.committed.is_some() {
            return;
        }
        let Some(d) = slot.commits.reached(strong).cloned() else { return };
        if slot.values.contains_key(&d) {
            self.commit(ctx, sn, d);
        }
    }

    /// Records `sn` as committed with `digest` (its value known) and delivers it.
    pub(crate) fn commit(&mut self, ctx: &mut Ctx<Self>, sn: Sn, digest: Digest) {
        let Some(slot) = self.slots.get_mut(&sn) else { return };
        if slot.committed.is_some() {
            return;
        }
        let value = slot.values.get(&digest).cloned().flatten();
        slot.committed = Some(digest);
        self.committed += 1;
        let leader = self.segment.leader.clone();
        ctx.emit(&self.modules.consumer.clone(), SbDeliver { sn, value, leader });
        if self.all_committed() {
            self.segment_done(ctx);
        }
    }

    /// Replays the messages kept for `view`, dropping older ones.
    pub(crate) fn replay_early(&mut self, ctx: &mut Ctx<Self>, view: u64) {
        let early = std::mem::take(&mut self.early);
        for (from, msgs) in early {
            for m in msgs {
                // A replayed message that is dropped was counted as received when it arrived.
                let _ = match m {
                    Early::Prepare(p) if p.view >= view => self.on_prepare(ctx, from.clone(), p),
                    Early::Commit(c) if c.view >= view => self.on_commit(ctx, from.clone(), c),
                    _ => Ok(()),
                };
            }
        }
    }

    /// Whether a PREPARE or COMMIT of `view` is for now (true), for later (kept), or too old.
    /// Digests are 32 bytes and signatures at most [`MAX_SIGNATURE`] bytes, so what is kept
    /// for later is small.
    fn current(
        &mut self,
        from: &NodeId,
        view: u64,
        digest: &[u8],
        signature: &[u8],
        early: impl FnOnce() -> Early,
    ) -> Result<bool, Reject> {
        ensure!(self.voters.contains(from), "message from non-member {from}");
        ensure!(digest.len() == 32, "a digest of {} bytes from {from}", digest.len());
        let n = signature.len();
        ensure!(n <= MAX_SIGNATURE, "a signature of {n} bytes from {from}");
        match self.phase {
            Phase::Normal { view: v } if view == v => Ok(true),
            p if view >= p.view() => self.keep_early(from.clone(), early()).map(|_| false),
            p => ignore!("message of view {view} from {from}, this node is in view {}", p.view()),
        }
    }
}

#[protocol(part = goodcase)]
impl Pbft {
    /// upon ProposeTimeout do propose the next slot
    #[upon(event)]
    fn on_propose_timeout(&mut self, ctx: &mut Ctx<Self>, _t: ProposeTimeout) -> Handled {
        self.proposing = false;
        self.propose_next(ctx)
    }

    /// … the availability layer's certificate for `sn`
    #[upon(response)]
    fn on_new_cert(&mut self, ctx: &mut Ctx<Self>, c: NewCert, p: Proposing) -> Handled {
        self.proposal_ready(ctx, p.sn, c.cert.to_bytes())
    }

    /// … the source's value for `sn`
    #[upon(response)]
    fn on_batch_cut(&mut self, ctx: &mut Ctx<Self>, c: BatchCut, p: Proposing) -> Handled {
        self.proposal_ready(ctx, p.sn, c.value)
    }

    /// upon PRE-PREPARE(sn, 0, value) from primary(0) in Normal(0), the first for sn do validate
    #[upon(message)]
    fn on_preprepare(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Preprepare) -> Handled {
        ensure!(m.view == 0, "PRE-PREPARE of view {} outside a NEW-VIEW, from {from}", m.view);
        ensure!(from == *self.primary(0), "PRE-PREPARE from {from}, who is not the primary");
        ensure!(
            self.phase == (Phase::Normal { view: 0 }),
            "PRE-PREPARE of view 0 after leaving it"
        );
        self.accept_preprepare(ctx, 0, m.sn, m.value, false)
    }

    /// … if valid(value) then preprepared (availability certificates)
    #[upon(response)]
    fn on_cert_verified(&mut self, ctx: &mut Ctx<Self>, r: CertVerified, c: Validating) -> Handled {
        let error = (!r.valid).then(|| r.error.unwrap_or_else(|| "invalid certificate".into()));
        self.validated(ctx, c, error)
    }

    /// … if valid(value) then preprepared (a validator module)
    #[upon(response)]
    fn on_validated(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: ProposalValidated,
        c: Validating,
    ) -> Handled {
        self.validated(ctx, c, r.error)
    }

    /// upon PREPARE(sn, v, d) from p do count it
    #[upon(message)]
    fn on_prepare(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Prepare) -> Handled {
        if !self.current(&from, m.view, &m.digest, &[], || Early::Prepare(m.clone()))? {
            return Ok(());
        }
        let Some(slot) = self.slots.get_mut(&m.sn) else {
            ignore!("PREPARE for sn {}, not in the segment", m.sn)
        };
        match slot.prepares.add(&self.voters, from.clone(), m.digest) {
            Counted::New => {}
            Counted::Repeated => ignore!("repeated PREPARE from {from} for sn {}", m.sn),
            Counted::NotMember => ignore!("PREPARE from non-member {from}"),
            Counted::Equivocation => ignore!("{from} sent two different PREPAREs for sn {}", m.sn),
        }
        self.check_prepared(ctx, m.sn)?;
        Ok(())
    }

    /// … send COMMIT(sn, v, d, σ) to all (signed commits)
    #[upon(response)]
    fn on_commit_signed(&mut self, ctx: &mut Ctx<Self>, r: SignResult, c: CommitSigned) -> Handled {
        ensure!(
            self.phase == (Phase::Normal { view: c.view }),
            "commit signed after view {} ended",
            c.view
        );
        let commit = Commit { sn: c.sn, view: c.view, digest: c.digest, signature: r.signature };
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        self.log_then_send(ctx, Sent::Commit(commit.clone()), all, commit)
    }

    /// upon COMMIT(sn, v, d) from p do count it (after checking its signature, if signed)
    #[upon(message)]
    fn on_commit(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Commit) -> Handled {
        if !self.current(&from, m.view, &m.digest, &m.signature, || Early::Commit(m.clone()))? {
            return Ok(());
        }
        // This node's own commit comes back over the loopback: it signed it, no check needed.
        if !self.config.sign_commits || from == self.me {
            return self.count_commit(ctx, from, m);
        }
        ensure!(!m.signature.is_empty(), "unsigned COMMIT from {from}");
        let check = VerifySig::new(
            commit_statement(m.sn, m.view, &m.digest),
            m.signature.clone(),
            from.clone(),
        );
        let crypto = self.modules.crypto.clone();
        ctx.request(&crypto, check, CommitChecked { from, commit: m });
        Ok(())
    }

    /// … a signed COMMIT checked
    #[upon(response)]
    fn on_commit_checked(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: SigVerified,
        c: CommitChecked,
    ) -> Handled {
        if let Some(e) = r.error {
            ignore!("COMMIT from {} with an invalid signature: {e}", c.from);
        }
        ensure!(
            self.phase == (Phase::Normal { view: c.commit.view }),
            "COMMIT checked after its view ended"
        );
        self.count_commit(ctx, c.from, c.commit)
    }
}
