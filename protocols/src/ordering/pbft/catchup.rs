//! PBFT's segment checkpoint and catch-up (Mir's `parts/catchup` and `pbftsegmentchkp.go`):
//!
//! ```text
//! upon all sns committed do send DONE(digests) to all; resend it to the members whose DONE
//!     this node has not got
//! upon a resent DONE from p (p lacks this node's) ∧ all committed do send DONE to p
//! upon a weak quorum of DONE(D) ∧ ¬all committed do after CatchUpDelay, for each sn not
//!     committed: send CATCH-UP-REQUEST(sn, D[sn]) to one node that sent DONE(D), the next
//!     one at each attempt
//! upon CATCH-UP-REQUEST(sn, d) from p with sn committed as d do send CATCH-UP-RESPONSE(sn, value)
//! upon CATCH-UP-RESPONSE(sn, value) with D(sn, value) = D[sn] do commit sn
//! upon a strong quorum of DONE(D) ∧ all committed do segment stable: no more view changes
//! upon restart from the WAL ∧ ¬all committed do every DoneResend period, until a weak quorum of
//!     DONE or all committed: send DONE-REQUEST to the members whose DONE this node lacks
//! upon DONE-REQUEST from p ∧ all committed do send DONE to p
//! ```
//!
//! DONE-REQUEST exists for restarts: the others sent their DONE once (and resend it only to
//! members whose DONE they lack), so a node that lost the DONEs it had received would otherwise
//! wait for them forever.
//!
//! A weak quorum holds a correct node, so `D` is what was committed. The segment checkpoint is
//! needed for liveness: a node that committed everything keeps taking part in view changes until
//! a strong quorum is done, so that the others can still get a new view.

use mir_dsl::prelude::*;
use mir_dsl::{Counted, Votes};

use super::{
    value_digest, AskDone, CatchUpRequest, CatchUpResponse, CatchUpTimeout, Digest, Done,
    DoneRequest, DoneResend, Pbft, Sent,
};

/// The catch-up state of an instance.
#[derive(Debug, Default)]
pub struct CatchUpState {
    /// DONE votes.
    pub(crate) done: Votes<Vec<Digest>>,
    /// The periodic DONE resend.
    pub(crate) resend_timer: Option<TimerId>,
    /// The digests a weak quorum of DONE gives, once known.
    pub(crate) target: Option<Vec<Digest>>,
    /// A strong quorum is done, this node too.
    pub(crate) stable: bool,
    /// The periodic DONE-REQUEST of a restarted instance.
    pub(crate) ask_timer: Option<TimerId>,
}

impl Pbft {
    /// upon all sns committed do send DONE(digests) to all
    pub(crate) fn segment_done(&mut self, ctx: &mut Ctx<Self>) {
        let digests: Vec<Digest> = self
            .segment
            .sns
            .iter()
            .map(|sn| self.slots[sn].committed.clone().unwrap_or_default())
            .collect();
        // Logged with the values before it leaves (the digests are a function of the committed
        // values, so the guard has nothing to refuse here).
        let values: Vec<Option<Vec<u8>>> = self
            .segment
            .sns
            .iter()
            .zip(&digests)
            .map(|(sn, d)| self.slots[sn].values.get(d).cloned().flatten())
            .collect();
        let record = Sent::Done { values };
        let (key, digest) = record.key();
        self.recovery.sent.insert(key, digest);
        let all: Vec<NodeId> = self.voters.nodes().cloned().collect();
        ctx.persist(self.modules.wal.as_ref(), self.retention, record).then_send(
            &self.modules.net,
            all,
            Done { digests, resent: false },
        );
        let (timer, period) = (self.modules.timer.clone(), self.config.done_resend);
        self.catch_up.resend_timer = Some(ctx.every(&timer, period, DoneResend));
        self.check_stable();
    }

    fn my_digests(&self) -> Option<Vec<Digest>> {
        self.segment.sns.iter().map(|sn| self.slots[sn].committed.clone()).collect()
    }

    /// upon a strong quorum of DONE(D) ∧ all committed do segment stable
    fn check_stable(&mut self) {
        let strong = self.voters.strong_quorum();
        if let Some(d) = self.my_digests() {
            if self.catch_up.done.weight(&d) >= strong {
                self.catch_up.stable = true;
            }
        }
    }

    /// A restarted instance: ask the members for their DONE (now and periodically).
    pub(crate) fn ask_done(&mut self, ctx: &mut Ctx<Self>) {
        if self.all_committed() {
            return;
        }
        let others: Vec<NodeId> = self.voters.nodes().filter(|n| **n != self.me).cloned().collect();
        ctx.send(&self.modules.net, others, DoneRequest);
        let (timer, period) = (self.modules.timer.clone(), self.config.done_resend);
        self.catch_up.ask_timer = Some(ctx.every(&timer, period, AskDone));
    }

    /// Whether the segment is stable here (no view change will start).
    pub fn stable(&self) -> bool {
        self.catch_up.stable
    }
}

#[protocol(part = catchup)]
impl Pbft {
    /// upon DONE(D) from p do count it; catch up at a weak quorum, stable at a strong one
    #[upon(message)]
    fn on_done(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: Done) -> Handled {
        ensure!(
            m.digests.len() == self.segment.sns.len(),
            "DONE from {from} with {} digests",
            m.digests.len()
        );
        ensure!(
            m.digests.iter().all(|d| d.len() == 32),
            "DONE from {from} with a malformed digest"
        );
        // A resent DONE: its sender lacks this node's; answer (an answer is not answered).
        if m.resent {
            if let Some(digests) = self.my_digests() {
                let done = Done { digests, resent: false };
                ctx.after_logged(self.modules.wal.as_ref()).then_send(
                    &self.modules.net,
                    [&from],
                    done,
                );
            }
        }
        match self.catch_up.done.add(&self.voters, from.clone(), m.digests) {
            Counted::New => {}
            Counted::Repeated => return Ok(()), // a resend (answered above)
            Counted::NotMember => ignore!("DONE from non-member {from}"),
            Counted::Equivocation => ignore!("{from} sent two different DONEs"),
        }
        self.check_stable();
        let weak = self.voters.weak_quorum();
        if !self.all_committed() && self.catch_up.target.is_none() {
            if let Some(d) = self.catch_up.done.reached(weak).cloned() {
                self.catch_up.target = Some(d);
                let (timer, delay) = (self.modules.timer.clone(), self.config.catch_up_delay);
                ctx.after(&timer, delay, CatchUpTimeout { attempt: 0 });
            }
        }
        Ok(())
    }

    /// upon DONE-REQUEST from p ∧ all committed do send DONE to p
    #[upon(message)]
    fn on_done_request(&mut self, ctx: &mut Ctx<Self>, from: NodeId, _m: DoneRequest) -> Handled {
        ensure!(self.voters.contains(&from), "DONE-REQUEST from non-member {from}");
        if let Some(digests) = self.my_digests() {
            let done = Done { digests, resent: false };
            ctx.after_logged(self.modules.wal.as_ref()).then_send(&self.modules.net, [&from], done);
        }
        Ok(())
    }

    /// … until a weak quorum of DONE or all committed: DONE-REQUEST to those lacking
    #[upon(event)]
    fn on_ask_done(&mut self, ctx: &mut Ctx<Self>, _a: AskDone) -> Handled {
        if self.all_committed() || self.catch_up.target.is_some() {
            if let Some(t) = self.catch_up.ask_timer.take() {
                ctx.cancel(&self.modules.timer.clone(), t);
            }
            return Ok(());
        }
        let missing: Vec<NodeId> = self
            .voters
            .nodes()
            .filter(|n| **n != self.me && self.catch_up.done.vote_of(n).is_none())
            .cloned()
            .collect();
        ctx.send(&self.modules.net, missing, DoneRequest);
        Ok(())
    }

    /// … resend DONE to the members whose DONE this node has not got
    #[upon(event)]
    fn on_done_resend(&mut self, ctx: &mut Ctx<Self>, _r: DoneResend) -> Handled {
        let Some(digests) = self.my_digests() else { fatal!("DONE resent before all committed") };
        let missing: Vec<NodeId> = self
            .voters
            .nodes()
            .filter(|n| self.catch_up.done.vote_of(n).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            if let Some(t) = self.catch_up.resend_timer.take() {
                ctx.cancel(&self.modules.timer.clone(), t);
            }
            return Ok(());
        }
        let done = Done { digests, resent: true };
        ctx.after_logged(self.modules.wal.as_ref()).then_send(&self.modules.net, missing, done);
        Ok(())
    }

    /// … after CatchUpDelay: CATCH-UP-REQUEST(sn, D[sn]) for each sn not committed
    #[upon(event)]
    fn on_catch_up_timeout(&mut self, ctx: &mut Ctx<Self>, t: CatchUpTimeout) -> Handled {
        let Some(target) = self.catch_up.target.clone() else {
            fatal!("catch-up without a target")
        };
        if self.all_committed() {
            return Ok(());
        }
        let holders: Vec<NodeId> = self.catch_up.done.voters_for(&target).cloned().collect();
        if holders.is_empty() {
            fatal!("a catch-up target nobody voted for");
        }
        for (i, (sn, digest)) in self.segment.sns.iter().zip(&target).enumerate() {
            if self.slots[sn].committed.is_none() {
                let to = &holders[(t.attempt as usize + i) % holders.len()];
                ctx.send(
                    &self.modules.net,
                    [to],
                    CatchUpRequest { sn: *sn, digest: digest.clone() },
                );
            }
        }
        let (timer, delay) = (self.modules.timer.clone(), self.config.catch_up_delay);
        ctx.after(&timer, delay, CatchUpTimeout { attempt: t.attempt + 1 });
        Ok(())
    }

    /// upon CATCH-UP-REQUEST(sn, d) from p with sn committed as d do send CATCH-UP-RESPONSE
    #[upon(message)]
    fn on_catch_up_request(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: CatchUpRequest,
    ) -> Handled {
        ensure!(self.voters.contains(&from), "CATCH-UP-REQUEST from non-member {from}");
        let Some(slot) = self.slots.get(&m.sn) else {
            ignore!("CATCH-UP-REQUEST for sn {}, not in the segment", m.sn)
        };
        ensure!(
            slot.committed.as_ref() == Some(&m.digest),
            "CATCH-UP-REQUEST from {from} for sn {}: not committed as asked",
            m.sn
        );
        let value = slot.values.get(&m.digest).cloned().flatten();
        ctx.send(&self.modules.net, [&from], CatchUpResponse { sn: m.sn, value });
        Ok(())
    }

    /// upon CATCH-UP-RESPONSE(sn, value) with D(sn, value) = D[sn] do commit sn
    #[upon(message)]
    fn on_catch_up_response(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: CatchUpResponse,
    ) -> Handled {
        let Some(target) = &self.catch_up.target else {
            ignore!("CATCH-UP-RESPONSE from {from} not asked for")
        };
        let Some(i) = self.segment.sns.iter().position(|sn| *sn == m.sn) else {
            ignore!("CATCH-UP-RESPONSE for sn {}, not in the segment", m.sn)
        };
        let d = value_digest(m.sn, m.value.as_deref());
        ensure!(target[i] == d, "CATCH-UP-RESPONSE from {from} for sn {} with another value", m.sn);
        if let Some(slot) = self.slots.get_mut(&m.sn) {
            slot.values.insert(d.clone(), m.value);
        }
        self.commit(ctx, m.sn, d);
        Ok(())
    }
}
