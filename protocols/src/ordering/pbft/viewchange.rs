//! PBFT's view change (Castro–Liskov §4.4 and §4.5.2; Mir's `parts/viewchange`):
//!
//! ```text
//! upon SnTimeout(v) in Normal(v) with no commit since it was set ∧ ¬all committed do change to v+1
//! upon SegmentTimeout(v) in view v ∧ ¬segment stable do change to v+1
//! change to v':  ViewChange(v'); sign VIEW-CHANGE(v', P, Q); send it to primary(v') until NEW-VIEW
//! upon VIEW-CHANGE(v', P, Q, σ) from p at primary(v') do keep it if σ is valid
//! upon a strong quorum S of VIEW-CHANGEs for v' at primary(v') such that every sn is decided do
//!     for each sn: d if A1 ∧ A2 (fetch the value with PREPREPARE-REQUEST if missing), ⊥ if B
//!     send NEW-VIEW(v', S, pre-prepares) to all
//! upon NEW-VIEW(v', S, O) from primary(v') with v' ≥ this node's view do
//!     if S is a strong quorum of validly signed view changes for v' and O is what S decides
//!     then Normal(v'); accept every pre-prepare of O; replay messages kept for v'
//! ```
//!
//! **Deciding an sn from S** ([`reproposals`]; weights, not counts):
//! * A1: a strong quorum of S has no P entry for `sn` above view `v`, and none in `v` with
//!   another digest than `d`;
//! * A2: a weak quorum of S has a Q entry `(sn, d)` of view `v` or higher;
//! * B: a strong quorum of S has no P entry for `sn`.
//!
//! `d` (the highest such view) if A1 and A2 hold; else ⊥ (or the new primary's fixed proposal,
//! if the segment has one for `sn`) if B holds; else undecided: wait for more view changes.
//! Timeouts double per view (capped at 2^20 times the base).

use std::collections::{BTreeMap, BTreeSet};

use super::recovery::Sent;
use mir_dsl::prelude::*;
use mir_runtime::stdevents::crypto::{
    SigCheck, SigVerified, SignRequest, SignResult, SigsVerified, VerifySig, VerifySigs,
};

use super::{
    value_digest, view_change_statement, Digest, MissingPreprepare, NewView, PEntry, Pbft, Phase,
    Preprepare, PreprepareRequest, SegmentTimeout, SignedViewChange, SnTimeout, ViewChange,
    ViewChangeResend, MAX_Q_PER_SN,
};
use crate::ordering::Sn;

/// What a new view does with one `sn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reproposal {
    /// Re-propose the value with this digest (conditions A1 and A2).
    Value(Digest),
    /// Nothing was prepared: ⊥, or the primary's fixed proposal (condition B).
    Null,
}

/// Decides each `sn` of `sns` from the view changes `vcs` (sender, view change), by weight.
/// `None` for an `sn` that cannot be decided yet.
///
/// ```
/// use protocols::ordering::pbft::{viewchange::{reproposals, Reproposal}, PEntry, ViewChange};
/// use mir_dsl::Voters;
/// use mir_runtime::NodeId;
/// let voters = Voters::equal((0..4).map(NodeId::from_index));
/// let vc = |p: Vec<PEntry>, q: Vec<PEntry>| ViewChange { view: 1, p_set: p, q_set: q };
/// let e = PEntry { sn: 0, view: 0, digest: vec![7; 32] };
/// // Node 0 prepared d in view 0, nodes 1 and 2 pre-prepared it: d is re-proposed.
/// let vcs = vec![
///     (NodeId::from_index(0), vc(vec![e.clone()], vec![e.clone()])),
///     (NodeId::from_index(1), vc(vec![], vec![e.clone()])),
///     (NodeId::from_index(2), vc(vec![], vec![])),
/// ];
/// let r = reproposals(&voters, &[0, 1], vcs.iter().map(|(n, v)| (n, v)));
/// assert_eq!(r[&0], Some(Reproposal::Value(vec![7; 32])));
/// assert_eq!(r[&1], Some(Reproposal::Null));
/// ```
pub fn reproposals<'a>(
    voters: &Voters,
    sns: &[Sn],
    vcs: impl Iterator<Item = (&'a NodeId, &'a ViewChange)> + Clone,
) -> BTreeMap<Sn, Option<Reproposal>> {
    let (strong, weak) = (voters.strong_quorum(), voters.weak_quorum());
    // Each view change's P and Q entries by sn, with its sender's weight: one pass over the sets.
    type Entries<'e> = (Option<(u64, &'e Digest)>, Vec<(u64, &'e Digest)>);
    let indexed: Vec<(Weight, BTreeMap<Sn, Entries<'a>>)> = vcs
        .map(|(n, vc)| {
            let mut by_sn: BTreeMap<Sn, Entries<'a>> = BTreeMap::new();
            for e in &vc.p_set {
                by_sn.entry(e.sn).or_default().0 = Some((e.view, &e.digest));
            }
            for e in &vc.q_set {
                by_sn.entry(e.sn).or_default().1.push((e.view, &e.digest));
            }
            (voters.weight(n), by_sn)
        })
        .collect();
    let mut out = BTreeMap::new();
    for &sn in sns {
        let p_of = |m: &BTreeMap<Sn, Entries<'a>>| m.get(&sn).and_then(|e| e.0);
        let q_of =
            |m: &'_ BTreeMap<Sn, Entries<'a>>| m.get(&sn).map(|e| e.1.clone()).unwrap_or_default();
        let weight = |pred: &dyn Fn(&BTreeMap<Sn, Entries<'a>>) -> bool| -> Weight {
            indexed.iter().filter(|(_, m)| pred(m)).map(|(w, _)| *w).sum()
        };
        // Candidates: every prepared (view, digest), highest view first.
        let candidates: BTreeSet<(u64, &Digest)> =
            indexed.iter().filter_map(|(_, m)| p_of(m)).collect();
        let chosen = candidates.into_iter().rev().find(|(v, d)| {
            let a1 = weight(&|m| match p_of(m) {
                None => true,
                Some((pv, pd)) => pv < *v || (pv == *v && pd == *d),
            });
            let a2 = weight(&|m| q_of(m).iter().any(|(qv, qd)| qd == d && qv >= v));
            a1 >= strong && a2 >= weak
        });
        let decided = match chosen {
            Some((_, d)) => Some(Reproposal::Value(d.clone())),
            None if weight(&|m| p_of(m).is_none()) >= strong => Some(Reproposal::Null),
            None => None,
        };
        out.insert(sn, decided);
    }
    out
}

/// The view-change state of an instance.
#[derive(Debug, Default)]
pub struct ViewChangeState {
    /// The periodic resend of this node's view change.
    pub(crate) resend_timer: Option<TimerId>,
    /// This node's signed view change for the view it is changing to.
    pub(crate) mine: Option<SignedViewChange>,
    /// As a primary: each member's latest verified view change (one per sender bounds memory).
    pub(crate) received: BTreeMap<NodeId, SignedViewChange>,
    /// View changes being verified, by sender.
    pub(crate) checking: BTreeSet<NodeId>,
    /// The view whose NEW-VIEW waits for values asked for.
    pub(crate) pending: Option<u64>,
    /// Values asked for with PREPREPARE-REQUEST.
    pub(crate) fetching: BTreeSet<(Sn, Digest)>,
    /// The highest view this node sent a NEW-VIEW for.
    pub(crate) new_view_sent: Option<u64>,
    /// That NEW-VIEW (sent again to a member that resends its view change: it missed it).
    pub(crate) new_view: Option<NewView>,
}

/// Signing this node's view change.
#[derive(Debug)]
pub struct VcSigned {
    vc: ViewChange,
}

/// Checking `from`'s view change.
#[derive(Debug)]
pub struct VcChecked {
    from: NodeId,
    svc: SignedViewChange,
}

/// Checking the signatures of a NEW-VIEW.
#[derive(Debug)]
pub struct NewViewChecked {
    nv: NewView,
    /// The re-proposed `sn`s (not validated again).
    vouched: BTreeSet<Sn>,
}

impl Pbft {
    /// change to v': ViewChange(v'); sign VIEW-CHANGE(v', P, Q)
    pub(crate) fn start_view_change(&mut self, ctx: &mut Ctx<Self>, to: u64) {
        let timer = self.modules.timer.clone();
        if let Some(t) = self.view_change.resend_timer.take() {
            ctx.cancel(&timer, t);
        }
        self.phase = Phase::ViewChange { to };
        self.view_change.mine = None;
        let (mut p_set, mut q_set) = (Vec::new(), Vec::new());
        for (sn, slot) in &mut self.slots {
            slot.reset_view();
            if let Some((view, digest)) = &slot.prepared {
                p_set.push(PEntry { sn: *sn, view: *view, digest: digest.clone() });
            }
            for (digest, view) in &slot.preprepared_in {
                q_set.push(PEntry { sn: *sn, view: *view, digest: digest.clone() });
            }
        }
        let vc = ViewChange { view: to, p_set, q_set };
        let crypto = self.modules.crypto.clone();
        ctx.request(&crypto, SignRequest::new(view_change_statement(&vc)), VcSigned { vc });
        self.arm_segment_timeout(ctx, to);
    }

    /// Checks the form of a view change for `view`: entries of the segment's `sn`s, of earlier
    /// views, one P entry per `sn`, one Q entry per `(sn, digest)`, 32-byte digests.
    fn check_view_change(&self, vc: &ViewChange, view: u64) -> Result<(), String> {
        if vc.view != view {
            return Err(format!("a view change for view {} in one for view {view}", vc.view));
        }
        let (mut p_sns, mut q_keys) = (BTreeSet::new(), BTreeSet::new());
        for e in vc.p_set.iter().chain(&vc.q_set) {
            if !self.slots.contains_key(&e.sn) || e.view >= view || e.digest.len() != 32 {
                return Err(format!("a malformed entry for sn {} of view {}", e.sn, e.view));
            }
        }
        for e in &vc.p_set {
            if !p_sns.insert(e.sn) {
                return Err(format!("two P entries for sn {}", e.sn));
            }
        }
        let mut q_per_sn: BTreeMap<Sn, usize> = BTreeMap::new();
        for e in &vc.q_set {
            if !q_keys.insert((e.sn, e.digest.clone())) {
                return Err(format!("two Q entries for sn {} and one digest", e.sn));
            }
            let n = q_per_sn.entry(e.sn).or_default();
            *n += 1;
            if *n > MAX_Q_PER_SN {
                return Err(format!("more than {MAX_Q_PER_SN} Q entries for sn {}", e.sn));
            }
        }
        Ok(())
    }

    /// At primary(view): the verified view changes for `view`, if they weigh a strong quorum.
    fn quorum_for(&self, view: u64) -> Option<Vec<(NodeId, SignedViewChange)>> {
        let vcs: Vec<_> = self
            .view_change
            .received
            .iter()
            .filter(|(_, s)| s.view_change.view == view)
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        self.voters.is_strong_quorum(vcs.iter().map(|(n, _)| n)).ok()?.then_some(vcs)
    }

    /// upon a strong quorum S of VIEW-CHANGEs for `view` at primary(view) such that every sn is
    /// decided do send NEW-VIEW(view, S, pre-prepares) to all
    fn try_new_view(&mut self, ctx: &mut Ctx<Self>, view: u64) -> Handled {
        if *self.primary(view) != self.me
            || self.view_change.new_view_sent.is_some_and(|v| v >= view)
            || self.phase.view() > view
        {
            return Ok(());
        }
        let Some(vcs) = self.quorum_for(view) else { return Ok(()) };
        let decided = reproposals(
            &self.voters,
            &self.segment.sns,
            vcs.iter().map(|(n, s)| (n, &s.view_change)),
        );
        let mut preprepares = Vec::new();
        let mut missing = false;
        for (sn, r) in decided {
            let value = match r {
                None => return Ok(()), // undecided: wait for more view changes
                Some(Reproposal::Null) => self.segment.proposals.get(&sn).cloned(),
                Some(Reproposal::Value(d)) => match self.slots[&sn].values.get(&d) {
                    Some(v) => v.clone(),
                    None => {
                        missing = true;
                        self.fetch(ctx, sn, d, &vcs);
                        continue;
                    }
                },
            };
            preprepares.push(Preprepare { sn, view, value });
        }
        if missing {
            self.view_change.pending = Some(view);
            return Ok(());
        }
        self.view_change.pending = None;
        self.view_change.new_view_sent = Some(view);
        let (senders, view_changes) = vcs.into_iter().unzip();
        let nv = NewView { view, senders, view_changes, preprepares };
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        self.log_then_send(ctx, Sent::NewView(nv.clone()), all, nv.clone())?;
        self.view_change.new_view = Some(nv);
        Ok(())
    }

    /// Asks the view-change senders whose Q holds `(sn, d)` for the value (again at each try:
    /// resent view changes make the primary try again, so a lost request is repeated).
    fn fetch(
        &mut self,
        ctx: &mut Ctx<Self>,
        sn: Sn,
        d: Digest,
        vcs: &[(NodeId, SignedViewChange)],
    ) {
        self.view_change.fetching.insert((sn, d.clone()));
        let holders = vcs
            .iter()
            .filter(|(_, s)| s.view_change.q_set.iter().any(|e| e.sn == sn && e.digest == d));
        let holders: Vec<NodeId> = holders.map(|(n, _)| n.clone()).collect();
        ctx.send(&self.modules.net, holders, PreprepareRequest { sn, digest: d });
    }

    /// The checks of a NEW-VIEW that need no signature: senders, views, and that its
    /// pre-prepares are what its view changes decide.
    /// Returns the `sn`s whose pre-prepare is a re-proposal (conditions A1 and A2).
    fn check_new_view(&self, nv: &NewView) -> Result<BTreeSet<Sn>, String> {
        if nv.senders.len() != nv.view_changes.len() {
            return Err("senders and view changes differ in number".into());
        }
        match self.voters.is_strong_quorum(&nv.senders) {
            Err(e) => return Err(e.to_string()),
            Ok(false) => return Err("the view changes are not a strong quorum".into()),
            Ok(true) => {}
        }
        for svc in &nv.view_changes {
            self.check_view_change(&svc.view_change, nv.view)?;
        }
        let decided = reproposals(
            &self.voters,
            &self.segment.sns,
            nv.senders.iter().zip(nv.view_changes.iter().map(|s| &s.view_change)),
        );
        if nv.preprepares.len() != decided.len() {
            return Err(format!("{} pre-prepares for {} sns", nv.preprepares.len(), decided.len()));
        }
        for pp in &nv.preprepares {
            if pp.view != nv.view {
                return Err(format!("a pre-prepare of view {} in NEW-VIEW {}", pp.view, nv.view));
            }
            let ok = match decided.get(&pp.sn) {
                None => return Err(format!("a pre-prepare for sn {}, not in the segment", pp.sn)),
                Some(None) => {
                    return Err(format!("sn {} is not decided by the view changes", pp.sn))
                }
                Some(Some(Reproposal::Value(d))) => value_digest(pp.sn, pp.value.as_deref()) == *d,
                // ⊥, or the primary's fixed proposal where the segment has them.
                Some(Some(Reproposal::Null)) => {
                    pp.value.is_some() == self.segment.proposals.contains_key(&pp.sn)
                }
            };
            if !ok {
                return Err(format!(
                    "the pre-prepare for sn {} is not what the view changes decide",
                    pp.sn
                ));
            }
        }
        let sns: BTreeSet<_> = nv.preprepares.iter().map(|p| p.sn).collect();
        if sns.len() != nv.preprepares.len() {
            return Err("two pre-prepares for one sn".into());
        }
        let vouched = decided.into_iter().filter(|(_, r)| matches!(r, Some(Reproposal::Value(_))));
        Ok(vouched.map(|(sn, _)| sn).collect())
    }
}

#[protocol(part = viewchange)]
impl Pbft {
    /// upon SnTimeout(v) in Normal(v) with no commit since it was set ∧ ¬all committed do
    /// change to v+1
    #[upon(event)]
    fn on_sn_timeout(&mut self, ctx: &mut Ctx<Self>, t: SnTimeout) -> Handled {
        if self.phase != (Phase::Normal { view: t.view })
            || self.all_committed()
            || self.catch_up.stable
        {
            return Ok(());
        }
        if self.committed > t.committed {
            let (timer, d) = (self.modules.timer.clone(), self.sn_timeout(t.view));
            ctx.after(&timer, d, SnTimeout { view: t.view, committed: self.committed });
            return Ok(());
        }
        self.start_view_change(ctx, t.view + 1);
        Ok(())
    }

    /// upon SegmentTimeout(v) in view v ∧ ¬segment stable do change to v+1
    #[upon(event)]
    fn on_segment_timeout(&mut self, ctx: &mut Ctx<Self>, t: SegmentTimeout) -> Handled {
        if self.phase.view() == t.view && !self.catch_up.stable {
            self.start_view_change(ctx, t.view + 1);
        }
        Ok(())
    }

    /// … send VIEW-CHANGE(v', P, Q, σ) to primary(v') until NEW-VIEW
    #[upon(response)]
    fn on_vc_signed(&mut self, ctx: &mut Ctx<Self>, r: SignResult, c: VcSigned) -> Handled {
        let view = c.vc.view;
        ensure!(
            self.phase == (Phase::ViewChange { to: view }),
            "view change to {view} signed too late"
        );
        let svc = SignedViewChange { view_change: c.vc, signature: r.signature };
        let primary = self.primary(view).clone();
        self.log_then_send(ctx, Sent::ViewChange(svc.clone()), [primary], svc.clone())?;
        self.view_change.mine = Some(svc);
        let (timer, period) = (self.modules.timer.clone(), self.config.view_change_resend);
        self.view_change.resend_timer = Some(ctx.every(&timer, period, ViewChangeResend { view }));
        Ok(())
    }

    /// … (the resend)
    #[upon(event)]
    fn on_vc_resend(&mut self, ctx: &mut Ctx<Self>, r: ViewChangeResend) -> Handled {
        if self.phase == (Phase::ViewChange { to: r.view }) {
            if let Some(svc) = self.view_change.mine.clone() {
                // After its record is durable (a resend must not overtake it).
                let (net, primary) = (self.modules.net.clone(), self.primary(r.view).clone());
                ctx.after_logged(self.modules.wal.as_ref()).then_send(&net, [primary], svc);
            }
        }
        Ok(())
    }

    /// upon VIEW-CHANGE(v', P, Q, σ) from p at primary(v') do keep it if σ is valid
    #[upon(message)]
    fn on_view_change(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: SignedViewChange,
    ) -> Handled {
        let view = m.view_change.view;
        ensure!(self.voters.contains(&from), "VIEW-CHANGE from non-member {from}");
        ensure!(
            *self.primary(view) == self.me,
            "VIEW-CHANGE for view {view} from {from}: not its primary"
        );
        ensure!(
            view >= self.phase.view() && view > 0,
            "VIEW-CHANGE for old view {view} from {from}"
        );
        let known = self.view_change.received.get(&from).map(|s| s.view_change.view);
        if known == Some(view) {
            // A resend: its sender missed the NEW-VIEW if this node sent one; if not, try again
            // (asking again for values still missing).
            match self.view_change.new_view.clone().filter(|nv| nv.view == view) {
                Some(nv) => {
                    // After its record is durable (a resend must not overtake it).
                    let net = self.modules.net.clone();
                    ctx.after_logged(self.modules.wal.as_ref()).then_send(&net, [&from], nv)
                }
                None => self.try_new_view(ctx, view)?,
            }
            return Ok(());
        }
        ensure!(
            known.is_none_or(|k| k < view),
            "VIEW-CHANGE for view {view} from {from}, who sent one for a later view"
        );
        ensure!(
            !self.view_change.checking.contains(&from),
            "VIEW-CHANGE from {from} while one is checked"
        );
        if let Err(e) = self.check_view_change(&m.view_change, view) {
            ignore!("VIEW-CHANGE from {from}: {e}");
        }
        self.view_change.checking.insert(from.clone());
        let check = VerifySig::new(
            view_change_statement(&m.view_change),
            m.signature.clone(),
            from.clone(),
        );
        let crypto = self.modules.crypto.clone();
        ctx.request(&crypto, check, VcChecked { from, svc: m });
        Ok(())
    }

    /// … (σ checked)
    #[upon(response)]
    fn on_vc_checked(&mut self, ctx: &mut Ctx<Self>, r: SigVerified, c: VcChecked) -> Handled {
        self.view_change.checking.remove(&c.from);
        if let Some(e) = r.error {
            ignore!("VIEW-CHANGE from {} with an invalid signature: {e}", c.from);
        }
        let view = c.svc.view_change.view;
        self.view_change.received.insert(c.from, c.svc);
        self.try_new_view(ctx, view)?;
        Ok(())
    }

    /// upon PREPREPARE-REQUEST(sn, d) from p do send MISSING-PREPREPARE(sn, value of d) to p
    #[upon(message)]
    fn on_preprepare_request(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: PreprepareRequest,
    ) -> Handled {
        ensure!(self.voters.contains(&from), "PREPREPARE-REQUEST from non-member {from}");
        let value = self.slots.get(&m.sn).and_then(|s| s.values.get(&m.digest));
        let Some(value) = value.cloned() else {
            ignore!("PREPREPARE-REQUEST from {from} for an unknown value")
        };
        ctx.send(&self.modules.net, [&from], MissingPreprepare { sn: m.sn, value });
        Ok(())
    }

    /// upon MISSING-PREPREPARE(sn, value) that was asked for do keep the value; try NEW-VIEW
    #[upon(message)]
    fn on_missing_preprepare(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: MissingPreprepare,
    ) -> Handled {
        let d = value_digest(m.sn, m.value.as_deref());
        ensure!(
            self.view_change.fetching.remove(&(m.sn, d.clone())),
            "MISSING-PREPREPARE from {from} not asked for"
        );
        if let Some(slot) = self.slots.get_mut(&m.sn) {
            slot.values.insert(d, m.value);
        }
        if let Some(view) = self.view_change.pending {
            self.try_new_view(ctx, view)?;
        }
        Ok(())
    }

    /// upon NEW-VIEW(v', S, O) from primary(v') with v' ≥ this node's view do check S and O
    #[upon(message)]
    fn on_new_view(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: NewView) -> Handled {
        ensure!(
            m.view > 0 && from == *self.primary(m.view),
            "NEW-VIEW for view {} from {from}, not its primary",
            m.view
        );
        let fresh = m.view > self.phase.view() || self.phase == (Phase::ViewChange { to: m.view });
        ensure!(fresh, "NEW-VIEW for view {} from {from}: not newer than this node's", m.view);
        let vouched = match self.check_new_view(&m) {
            Ok(v) => v,
            Err(e) => ignore!("NEW-VIEW for view {} from {from}: {e}", m.view),
        };
        let checks = m.senders.iter().zip(&m.view_changes).map(|(n, s)| SigCheck {
            data: view_change_statement(&s.view_change),
            signature: s.signature.clone(),
            node: n.clone(),
        });
        let crypto = self.modules.crypto.clone();
        ctx.request(&crypto, VerifySigs::new(checks.collect()), NewViewChecked { nv: m, vouched });
        Ok(())
    }

    /// … then Normal(v'); accept every pre-prepare of O; replay messages kept for v'
    #[upon(response)]
    fn on_new_view_checked(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: SigsVerified,
        c: NewViewChecked,
    ) -> Handled {
        let view = c.nv.view;
        ensure!(r.all_ok, "NEW-VIEW for view {view} carries invalid signatures");
        let fresh = view > self.phase.view() || self.phase == (Phase::ViewChange { to: view });
        ensure!(fresh, "NEW-VIEW for view {view} checked after this node moved on");
        self.enter_view(ctx, view);
        for pp in c.nv.preprepares {
            // A pre-prepare this node cannot take (an invalid fixed proposal) is reported there.
            let vouched = c.vouched.contains(&pp.sn);
            let _ = self.accept_preprepare(ctx, view, pp.sn, pp.value, vouched);
        }
        self.replay_early(ctx, view);
        Ok(())
    }
}
