//! # Crash recovery: persist before send, and restart from what was sent
//!
//! With a WAL ([`PbftModules::wal`](super::PbftModules::wal)), an instance logs each message it
//! sends that binds it, as a [`Sent`] record, and the message leaves only once the record is
//! durable ([`Ctx::persist`](mir_dsl::Ctx::persist)): its PRE-PREPAREs (with the value), its
//! PREPAREs (with the value pre-prepared), its COMMITs, its signed VIEW-CHANGEs and its
//! NEW-VIEWs, and its DONE with the committed values (a node the others counted as done must stay
//! done: a strong quorum of DONE ends the view changes of the segment, and the others catch up
//! from the nodes that are done). Catch-up and fetch messages report committed values, which do
//! not change, and are not logged.
//!
//! On restart the instance is created with its records ([`SbInstance::recovered`](super::super::SbInstance::recovered))
//! and rebuilds from them, before `Init`, what it promised:
//!
//! * its view: the highest view of a record; `Normal` if it prepared, committed or sent NEW-VIEW
//!   there, else `ViewChange` (it sent only its VIEW-CHANGE);
//! * per `sn`, Q (pre-prepared digests and views, and their values) from its PREPAREs and P
//!   (the highest view it prepared in) from its COMMITs, so that a later VIEW-CHANGE reports them;
//! * in the current view, its proposal and whether it sent COMMIT, so that it votes again only
//!   the same way; as a primary of view 0, the slots it proposed (it never proposes them again);
//! * if it logged DONE: every value committed, delivered again at `Init`, and DONE sent again.
//!
//! At `Init` it sends again what it logged in the current view (a message may have been logged
//! and not sent when it crashed; a repeated one is ignored by its receivers).
//!
//! **The guard.** Whatever the restored state, an instance never sends two different messages of
//! one kind for one `sn` and view: every logged message is remembered by `(kind, sn, view)` and a
//! second, different one is a bug in this node, which stops it (`fatal`) rather than equivocate.

use std::collections::BTreeMap;

use mir_dsl::prelude::*;
use mir_runtime::Payload;
use serde::{Deserialize, Serialize};

use super::{
    value_digest, Commit, Digest, NewView, Pbft, Phase, Prepare, Preprepare, Proposal,
    SignedViewChange, ViewChangeResend,
};
use crate::ordering::Sn;

/// A message this instance sent, as logged before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sent {
    /// Its PRE-PREPARE (view 0, as primary).
    Preprepare(Preprepare),
    /// Its PREPARE, and the value it pre-prepared.
    Prepare {
        /// The message.
        prepare: Prepare,
        /// The value of `prepare.digest`.
        value: Option<Vec<u8>>,
    },
    /// Its COMMIT.
    Commit(Commit),
    /// Its signed VIEW-CHANGE.
    ViewChange(SignedViewChange),
    /// Its NEW-VIEW (as primary of that view).
    NewView(NewView),
    /// Its DONE, with the committed values (⊥: `None`) in segment order: a node that said it
    /// is done stays done across restarts, so that the others can count on its DONE (a strong
    /// quorum of DONE ends view changes) and its catch-up answers.
    Done {
        /// The committed values.
        values: Vec<Option<Vec<u8>>>,
    },
}

payload!(Sent = "pbft.Sent");

impl Sent {
    /// `(kind, sn, view)`: at most one message per key, and its digest.
    pub(crate) fn key(&self) -> ((u8, Sn, u64), Digest) {
        match self {
            Sent::Preprepare(p) => ((0, p.sn, p.view), value_digest(p.sn, p.value.as_deref())),
            Sent::Prepare { prepare: p, .. } => ((1, p.sn, p.view), p.digest.clone()),
            Sent::Commit(c) => ((2, c.sn, c.view), c.digest.clone()),
            Sent::ViewChange(v) => ((3, 0, v.view_change.view), whole(&v.view_change)),
            Sent::NewView(n) => ((4, 0, n.view), whole(&n.preprepares)),
            Sent::Done { values } => ((5, 0, 0), whole(values)),
        }
    }

    fn view(&self) -> u64 {
        self.key().0 .2
    }
}

fn whole<T: Serialize>(v: &T) -> Digest {
    mir_runtime::stdmodules::hasher::digest(&[mir_runtime::codec::encode(v)])
}

/// What a restarted instance re-sends at `Init`, and the guard's memory.
#[derive(Debug, Default)]
pub struct RecoveryState {
    /// Every message logged (by this run or an earlier one): `(kind, sn, view)` → digest.
    pub(crate) sent: BTreeMap<(u8, Sn, u64), Digest>,
    /// Recovered messages of the current view, sent again at `Init`.
    pub(crate) resend: Vec<Sent>,
    /// Whether this instance was rebuilt from records.
    pub(crate) recovered: bool,
    /// The committed values of a logged DONE, committed again at `Init`.
    pub(crate) done: Option<Vec<Option<Vec<u8>>>>,
}

impl Pbft {
    /// Rebuilds the instance from its logged messages (before `Init`; see the [module
    /// docs](self)).
    pub fn recover(&mut self, records: Vec<Sent>) {
        if records.is_empty() {
            return;
        }
        self.recovery.recovered = true;
        // A logged DONE: every sn committed (again at Init); it says nothing about views.
        let (done, records): (Vec<Sent>, Vec<Sent>) =
            records.into_iter().partition(|r| matches!(r, Sent::Done { .. }));
        for r in done {
            let (key, digest) = r.key();
            self.recovery.sent.insert(key, digest);
            if let Sent::Done { values } = r {
                self.recovery.done = Some(values);
            }
        }
        let view = records.iter().map(Sent::view).max().unwrap_or(0);
        // Nothing but a DONE: view 0, as a fresh instance (everything is committed anyway).
        let normal = records.is_empty()
            || records.iter().any(|r| r.view() == view && !matches!(r, Sent::ViewChange(_)));
        self.phase = if normal { Phase::Normal { view } } else { Phase::ViewChange { to: view } };
        for r in records {
            let (key, digest) = r.key();
            self.recovery.sent.insert(key, digest);
            match &r {
                Sent::Preprepare(p) => {
                    if let Some(i) = self.segment.sns.iter().position(|s| *s == p.sn) {
                        self.next_proposal = self.next_proposal.max(i + 1);
                    }
                    let d = value_digest(p.sn, p.value.as_deref());
                    if let Some(slot) = self.slots.get_mut(&p.sn) {
                        slot.values.entry(d).or_insert(p.value.clone());
                    }
                }
                Sent::Prepare { prepare: p, value } => {
                    if let Some(slot) = self.slots.get_mut(&p.sn) {
                        slot.values.entry(p.digest.clone()).or_insert(value.clone());
                        slot.note_preprepared(&p.digest, p.view);
                        if p.view == view {
                            slot.proposal = Proposal::Preprepared(p.digest.clone());
                        }
                    }
                }
                Sent::Commit(c) => {
                    if let Some(slot) = self.slots.get_mut(&c.sn) {
                        if slot.prepared.as_ref().is_none_or(|(v, _)| *v <= c.view) {
                            slot.prepared = Some((c.view, c.digest.clone()));
                        }
                        if c.view == view {
                            slot.sent_commit = true;
                        }
                    }
                }
                Sent::ViewChange(svc) => {
                    if svc.view_change.view == view {
                        self.view_change.mine = Some(svc.clone());
                    }
                }
                Sent::NewView(nv) => {
                    if self.view_change.new_view_sent.is_none_or(|v| v <= nv.view) {
                        self.view_change.new_view_sent = Some(nv.view);
                        self.view_change.new_view = Some(nv.clone());
                    }
                }
                Sent::Done { .. } => {} // taken out above
            }
            if r.view() == view {
                self.recovery.resend.push(r);
            }
        }
    }

    /// Whether this instance was rebuilt from logged messages.
    pub fn was_recovered(&self) -> bool {
        self.recovery.recovered
    }

    /// At `Init` of a recovered instance: its view's timers, and what it logged in the view,
    /// sent again.
    pub(crate) fn resume(&mut self, ctx: &mut Ctx<Self>) {
        // Done before the restart: commit (and deliver) every sn again, and say DONE again.
        if let Some(values) = self.recovery.done.take() {
            let sns = self.segment.sns.clone();
            for (sn, value) in sns.into_iter().zip(values) {
                let d = value_digest(sn, value.as_deref());
                if let Some(slot) = self.slots.get_mut(&sn) {
                    slot.values.insert(d.clone(), value);
                }
                self.commit(ctx, sn, d);
            }
        }
        let view = self.phase.view();
        self.arm_segment_timeout(ctx, view);
        match self.phase {
            Phase::Normal { view } => self.enter_view(ctx, view),
            Phase::ViewChange { to } => {
                let (timer, period) = (self.modules.timer.clone(), self.config.view_change_resend);
                let t = ctx.every(&timer, period, ViewChangeResend { view: to });
                self.view_change.resend_timer = Some(t);
            }
        }
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        for r in std::mem::take(&mut self.recovery.resend) {
            let net = self.modules.net.clone();
            // The WAL synced what it recovered before handing it over; the resends still go
            // through it, in order, as every repeat of a logged message does.
            let wal = self.modules.wal.clone();
            let p = ctx.after_logged(wal.as_ref());
            match r {
                Sent::Preprepare(m) => p.then_send(&net, &all, m),
                Sent::Prepare { prepare, .. } => p.then_send(&net, &all, prepare),
                Sent::Commit(c) => p.then_send(&net, &all, c),
                Sent::ViewChange(v) => {
                    let primary = self.primary(v.view_change.view).clone();
                    p.then_send(&net, [primary], v)
                }
                Sent::NewView(n) => p.then_send(&net, &all, n),
                Sent::Done { .. } => {} // never in `resend`
            }
        }
        self.ask_done(ctx);
    }

    /// Logs `record`, then sends `msg` to `to` (at once without a WAL). Refuses (a bug: the
    /// node stops) to send a message that contradicts one sent before for the same key.
    pub(crate) fn log_then_send<N: std::borrow::Borrow<NodeId>>(
        &mut self,
        ctx: &mut Ctx<Self>,
        record: Sent,
        to: impl IntoIterator<Item = N>,
        msg: impl Into<Payload>,
    ) -> Handled {
        let (key, digest) = record.key();
        if let Some(before) = self.recovery.sent.get(&key) {
            if *before != digest {
                fatal!("would send a second, different message {key:?} (equivocation)");
            }
        }
        self.recovery.sent.insert(key, digest);
        let net = self.modules.net.clone();
        ctx.persist(self.modules.wal.as_ref(), self.retention, record).then_send(&net, to, msg);
        Ok(())
    }
}
