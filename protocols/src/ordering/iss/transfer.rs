//! ISS state transfer (spec §4; Mir's ISS pushes its stable checkpoint to lagging nodes): a node
//! that has fallen behind fetches a stable checkpoint and the state it certifies, verifies both,
//! and continues from there.
//!
//! ```text
//! upon Init, and every CatchUpPeriod in which the log did not move do
//!     send STATE-REQUEST(epoch) to the members
//! upon STATE-REQUEST(e) from member p, with a stable checkpoint C whose state this node holds,
//!     C.epoch > e, and p's backoff over do
//!     send STATE-RESPONSE(C, snapshot, client progress) to p; double p's backoff (reset when p
//!     asks from a later epoch)
//! upon STATE-RESPONSE(C, s, progress) from p asked this round, C.epoch > epoch, p's first do
//!     C's signers known as members of C.epoch − 1 a strong quorum? s decodes? then wait
//! upon none being checked ∧ answers wait do take the one of the highest epoch:
//!     H(s, progress) = C.hash?                                           (through the hasher)
//!     C's signatures valid in the domain <checkpoint>/<C.epoch>?           (through crypto)
//!     restore: garbage-collect every instance of an epoch < C.epoch; the leader policy from s;
//!         RestoreState(C.epoch, progress, s.app) to the batch fetcher (or the consumer);
//!         StableCheckpoint(C) to the consumer; start epoch C.epoch at C.first_sn
//! ```
//!
//! **Who asks, who answers.** Only a node whose log is stuck asks (and a node that starts, which
//! may have restarted): a node that is merely slow catches up through the instances the others
//! retain. Every member whose stable checkpoint is newer answers, with an exponential backoff per
//! requester (after answering a member, it answers it again only 1, 2, 4, … up to 64 periods
//! later, until the member asks from a later epoch: the answer worked), so a member that asks
//! over and over from the same epoch pulls the state once per 64 periods at most, and an answer
//! lost on the way is sent again soon. The requester
//! takes **one answer per member per request** (a round; a new round starts with each request)
//! and checks one at a time, the newest first; so a member that always answers first with a
//! forged state (any epoch it likes) costs one failed check per round and cannot keep the honest
//! answers of that round from being checked. An answer that fails a check is dropped (logged and
//! counted) and the next waiting one is checked. Waiting answers are kept as received (one per
//! member: memory bounded by the membership times the transport's message limit; only the nodes
//! asked in the round are heard).
//!
//! **Stale events.** The epoch is the incarnation: every event that refers to an epoch before the
//! restored one (an SB delivery, a snapshot, a client-progress snapshot, a stable checkpoint, a
//! check of an older answer) is dropped by the epoch checks of the handlers that get it, and the
//! batch fetcher drops what it had queued when it restores.
//!
//! **Limits.** The state travels in one message, so it must fit the transport's message limit
//! (16 MiB by default over gRPC); a larger state needs a chunked transfer, which does not exist
//! yet. The checkpoint of epoch e is checked against the membership of e − 1 as this node knows
//! it ([`reconfig`](super::reconfig)).

use std::collections::{BTreeMap, BTreeSet};

use mir_dsl::prelude::*;
use mir_runtime::stdevents::crypto::{HashRequest, HashResult, SigsVerified};
use serde::{Deserialize, Serialize};

use super::epoch::EpochLayout;
use super::rejoin::Rejoin;
use super::{Iss, IssSnapshot};
use crate::availability::batchfetcher::RestoreState;
use crate::availability::ClientProgress;
use crate::ordering::checkpoint::{snapshot_hash_data, CertQuorum, StableCheckpoint};

/// STATE-REQUEST(epoch): the sender is stuck in `epoch` and asks for a newer stable checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRequest {
    /// The sender's current epoch.
    pub epoch: u64,
}

/// STATE-RESPONSE(C, snapshot, progress): a stable checkpoint and the state it certifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateResponse {
    /// The certificate.
    pub checkpoint: StableCheckpoint,
    /// The snapshot the checkpoint hashes: an encoded [`IssSnapshot`].
    pub snapshot: Vec<u8>,
    /// The client progress the checkpoint hashes.
    pub client_progress: ClientProgress,
}

/// Time to check whether the log moved (from the timer, to ISS itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpTick;

payload!(
    StateRequest = "iss.StateRequest",
    StateResponse = "iss.StateResponse",
    CatchUpTick = "iss.CatchUpTick",
);

/// Hashing a received state.
#[derive(Debug)]
pub struct StateHashed {
    from: NodeId,
    response: StateResponse,
    snapshot: IssSnapshot,
    /// The certificate cut to the signers checked against the membership (verified as is).
    cut: StableCheckpoint,
}

/// Checking a received checkpoint's signatures.
#[derive(Debug)]
pub struct StateVerified {
    from: NodeId,
    response: StateResponse,
    snapshot: IssSnapshot,
}

/// The snapshot of one epoch, as this node's application and batch fetcher hand it over.
#[derive(Debug, Default)]
pub(crate) struct OwnSnapshot {
    pub(crate) snapshot: Option<Vec<u8>>,
    pub(crate) progress: Option<ClientProgress>,
}

/// How often this node answered a member stuck in one epoch (the backoff).
#[derive(Debug)]
struct Answered {
    /// The epoch the member said it was in.
    epoch: u64,
    /// Answers sent for it.
    count: u32,
    /// The first tick at which the member is answered again.
    next_tick: u64,
}

/// The state-transfer state of ISS.
#[derive(Debug, Default)]
pub(crate) struct Transfer {
    /// `next` at the last tick.
    mark: u64,
    /// Catch-up ticks so far.
    ticks: u64,
    /// Per member: the answers sent while it stays in one epoch.
    answered: BTreeMap<NodeId, Answered>,
    /// Members whose answer this round (since this node's last request) was taken.
    heard: BTreeSet<NodeId>,
    /// The nodes asked this round: only their answers are taken (memory: one each).
    asked: BTreeSet<NodeId>,
    /// The epoch of the answer being checked.
    checking: Option<u64>,
    /// Answers waiting to be checked, at most one per member (checked when received, decoded
    /// again when their turn comes).
    waiting: BTreeMap<NodeId, StateResponse>,
    /// This node's snapshots of epochs not yet stable (the epochs in `policy_at`).
    pub(crate) own: BTreeMap<u64, OwnSnapshot>,
    /// What this node answers with: its last stable checkpoint and the state it certifies.
    pub(crate) serving: Option<StateResponse>,
    /// State transfers done.
    pub(crate) done: u64,
}

impl Iss {
    /// The members other than this node.
    pub(crate) fn others(&self) -> Vec<NodeId> {
        self.membership.iter().map(|(n, _)| n).filter(|n| **n != self.me).cloned().collect()
    }

    pub(crate) fn is_member(&self, n: &NodeId) -> bool {
        self.membership.iter().any(|(m, _)| m == n)
    }

    /// Whether `m` would take this node forward: a later epoch, past this epoch's end.
    fn ahead(&self, m: &StateResponse) -> bool {
        let c = &m.checkpoint;
        c.epoch > self.layout.epoch
            && c.first_sn >= self.layout.next_first_sn()
            && self.rejoin_allows(c.epoch)
    }

    /// The certificate of `c` cut to the signers this node knows as members of epoch
    /// `c.epoch − 1` (the others cannot count), and those members.
    fn known_signers(&self, c: &StableCheckpoint) -> (StableCheckpoint, Voters) {
        let members = self.membership_at(c.epoch.saturating_sub(1));
        let voters = Voters::new(members.iter().cloned());
        let mut cut = c.clone();
        let pairs = c.signers.iter().zip(&c.signatures).filter(|(n, _)| voters.contains(n));
        (cut.signers, cut.signatures) = pairs.map(|(n, s)| (n.clone(), s.clone())).unzip();
        (cut, voters)
    }

    /// The checks of an answer that need no crypto: C's known signers a strong quorum of the
    /// membership of C.epoch − 1, s decodes with a valid membership and this node's buckets.
    fn precheck(&self, m: &StateResponse) -> Result<(IssSnapshot, StableCheckpoint), String> {
        let c = &m.checkpoint;
        if c.signers.len() != c.signatures.len() {
            return Err("signers and signatures differ in number".into());
        }
        let (cut, voters) = self.known_signers(c);
        cut.check_structure(c.epoch, c.first_sn, &voters, CertQuorum::Strong)?;
        if cut.signers.is_empty() {
            return Err("no signer of the checkpoint is a member this node knows".into());
        }
        let snapshot: IssSnapshot = mir_runtime::codec::decode("iss.Snapshot", &m.snapshot)
            .map_err(|e| format!("the snapshot does not decode: {e}"))?;
        super::reconfig::check_membership(snapshot.leader_selection.members())?;
        for (_, m) in &snapshot.memberships {
            super::reconfig::check_membership(m)?;
        }
        if snapshot.buckets != self.layout.buckets && self.config.buckets.is_some() {
            return Err(format!(
                "the state has {} buckets, this node is set to {}",
                snapshot.buckets, self.layout.buckets
            ));
        }
        Ok((snapshot, cut))
    }

    /// Unless an answer is being checked: check the newest waiting one (H(s, progress) through
    /// the hasher, then the signatures through crypto).
    fn check_next(&mut self, ctx: &mut Ctx<Self>) {
        if self.transfer.checking.is_some() {
            return;
        }
        let waiting = std::mem::take(&mut self.transfer.waiting);
        self.transfer.waiting = waiting.into_iter().filter(|(_, m)| self.ahead(m)).collect();
        let newest = self.transfer.waiting.iter().max_by_key(|(_, m)| m.checkpoint.epoch);
        let Some(from) = newest.map(|(n, _)| n.clone()) else { return };
        let response = self.transfer.waiting.remove(&from).expect("just found");
        let Ok((snapshot, cut)) = self.precheck(&response) else {
            return self.check_next(ctx); // checked when it came: cannot fail now
        };
        self.transfer.checking = Some(response.checkpoint.epoch);
        let data = snapshot_hash_data(&response.snapshot, &response.client_progress);
        let req = HashRequest::new(vec![data]);
        ctx.request(&self.modules.hasher, req, StateHashed { from, response, snapshot, cut });
    }

    /// State transfers this node has made.
    pub fn state_transfers(&self) -> u64 {
        self.transfer.done
    }

    /// send STATE-REQUEST(epoch) to the members (a new round: one answer per member)
    /// (Rejoining: from the epoch before the rejoin point, once it is known.)
    pub(crate) fn request_state(&mut self, ctx: &mut Ctx<Self>) {
        if self.reconfig.left {
            return; // no longer a member: nothing to catch up with
        }
        let epoch = match self.recovery.rejoin {
            Rejoin::Off => self.layout.epoch,
            Rejoin::Asking(_) => return,
            Rejoin::Waiting { point } => point - 1,
        };
        self.transfer.mark = self.next;
        self.transfer.heard.clear();
        let to = self.others();
        self.transfer.asked = to.iter().cloned().collect();
        ctx.send(&self.modules.net, to, StateRequest { epoch });
    }

    /// Once the stable checkpoint's state is here: answer with it from now on.
    pub(crate) fn update_serving(&mut self, ctx: &mut Ctx<Self>) {
        let Some(stable) = &self.stable else { return };
        if self.transfer.serving.as_ref().is_some_and(|s| s.checkpoint.epoch >= stable.epoch) {
            return;
        }
        let Some(own) = self.transfer.own.get(&stable.epoch) else { return };
        if let (Some(snapshot), Some(progress)) = (&own.snapshot, &own.progress) {
            self.transfer.serving = Some(StateResponse {
                checkpoint: stable.clone(),
                snapshot: snapshot.clone(),
                client_progress: progress.clone(),
            });
            self.transfer.own = self.transfer.own.split_off(&(stable.epoch + 1));
            self.log_checkpoint(ctx);
        }
    }

    /// restore from a verified checkpoint and its state
    fn restore(&mut self, ctx: &mut Ctx<Self>, r: StateResponse, s: IssSnapshot) -> Handled {
        self.restore_from(ctx, r, s, true)
    }

    /// Restores the checkpoint state this node logged in its WAL before a restart.
    pub(crate) fn restore_logged(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: StateResponse,
        s: IssSnapshot,
    ) -> Handled {
        self.restore_from(ctx, r, s, false)
    }

    fn restore_from(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: StateResponse,
        s: IssSnapshot,
        transferred: bool,
    ) -> Handled {
        let c = r.checkpoint.clone();
        let layout = EpochLayout::new(
            c.epoch,
            c.first_sn,
            s.leader_selection.leaders(c.epoch),
            self.config.segment_length,
            s.buckets,
        );
        let layout = match layout {
            Ok(l) => l,
            // A strong quorum certified it, so this node's settings differ from theirs.
            Err(e) => {
                self.check_next(ctx);
                ignore!("a certified state this node cannot use (its settings differ): {e}")
            }
        };
        tracing::info!(
            from_epoch = self.layout.epoch,
            to_epoch = c.epoch,
            first_sn = c.first_sn,
            "state transfer"
        );
        // Every instance of an earlier epoch goes, and what this node had of those epochs.
        self.collect_garbage(ctx, c.epoch);
        self.log.clear();
        self.policy_at.clear();
        // Records of instances of earlier epochs will never be asked for.
        let records = std::mem::take(&mut self.recovery.records);
        self.recovery.records = records
            .into_iter()
            .filter(|(id, _)| self.epoch_of_instance(id).is_none_or(|e| e >= c.epoch))
            .collect();
        self.rejoined(c.epoch);
        self.transfer.own.clear();
        // A node that knew itself a member (of any membership it knew) and is no member of the
        // restored epoch or a later one was removed; one that waits to join knew of none.
        if self.is_known(&self.me) {
            self.mark_took_part(ctx);
        }
        self.membership = s.leader_selection.members().to_vec();
        let restored: BTreeMap<u64, Vec<(NodeId, Weight)>> =
            std::iter::once((c.epoch, self.membership.clone()))
                .chain(s.memberships.into_iter().filter(|(e, _)| *e > c.epoch))
                .collect();
        let before = std::mem::replace(&mut self.reconfig.memberships, restored);
        self.remember_departed(before);
        self.reconfig.answered = c.epoch;
        self.reconfig.deferred = None;
        self.leaders = s.leader_selection;
        self.layout = layout;
        self.next = c.first_sn;
        let restore =
            RestoreState { epoch: c.epoch, client_progress: r.client_progress.clone(), app: s.app };
        let to = self.modules.batchfetcher.as_ref().unwrap_or(&self.modules.consumer);
        ctx.emit(to, restore);
        self.stable = Some(c.clone());
        self.transfer.serving = Some(r);
        if transferred {
            self.transfer.done += 1;
            self.log_checkpoint(ctx);
        }
        let epoch = c.epoch;
        ctx.emit(&self.modules.consumer, c);
        self.start_epoch(ctx);
        self.transfer.mark = self.next;
        self.maybe_leave(ctx, epoch);
        Ok(())
    }
}

#[protocol(part = transfer)]
impl Iss {
    /// every CatchUpPeriod in which the log did not move do send STATE-REQUEST(epoch)
    #[upon(event)]
    fn on_catch_up_tick(&mut self, ctx: &mut Ctx<Self>, _t: CatchUpTick) -> Handled {
        self.transfer.ticks += 1;
        if self.waiting_for_wal() {
            return Ok(());
        }
        if self.rejoining() {
            self.ask_again(ctx);
            self.request_state(ctx); // (nothing while asking)
            return Ok(());
        }
        if self.next == self.transfer.mark {
            self.request_state(ctx);
        }
        self.transfer.mark = self.next;
        Ok(())
    }

    /// upon STATE-REQUEST(e) from member p, C.epoch > e, p's backoff over do answer
    #[upon(message)]
    fn on_state_request(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: StateRequest) -> Handled {
        ensure!(self.is_known(&from), "STATE-REQUEST from non-member {from}");
        let Some(serving) = &self.transfer.serving else { return Ok(()) };
        let epoch = serving.checkpoint.epoch;
        if epoch <= m.epoch {
            return Ok(()); // nothing newer to give
        }
        let tick = self.transfer.ticks;
        let a = self.transfer.answered.entry(from.clone()).or_insert(Answered {
            epoch: m.epoch,
            count: 0,
            next_tick: 0,
        });
        if m.epoch > a.epoch {
            // It moved on (an answer worked): a new backoff.
            *a = Answered { epoch: m.epoch, count: 0, next_tick: 0 };
        }
        ensure!(tick >= a.next_tick, "STATE-REQUEST from {from} again before its backoff ended");
        a.next_tick = tick + (1u64 << a.count.min(6));
        a.count += 1;
        ctx.send(&self.modules.net, [&from], serving.clone());
        Ok(())
    }

    /// upon STATE-RESPONSE(C, s, progress) from member p, C.epoch > epoch do check C and s
    /// (one answer at a time: the others wait, one per member)
    #[upon(message)]
    fn on_state_response(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        m: StateResponse,
    ) -> Handled {
        ensure!(self.transfer.asked.contains(&from), "STATE-RESPONSE from {from}, not asked");
        // Before the WAL is read this node does not know its own records: restoring now would
        // start instances without them.
        ensure!(!self.waiting_for_wal(), "STATE-RESPONSE from {from} before the WAL was read");
        if !self.ahead(&m) {
            return Ok(()); // this node is there already (answers come from several members)
        }
        // One answer per member per round: a member that always answers first with a forged
        // state costs one check per round and cannot keep the others from being checked.
        ensure!(
            self.transfer.heard.insert(from.clone()),
            "STATE-RESPONSE from {from}: a second answer in this round"
        );
        if let Err(e) = self.precheck(&m).map(|_| ()) {
            ignore!("STATE-RESPONSE from {from}: {e}");
        }
        self.transfer.waiting.insert(from, m);
        self.check_next(ctx);
        Ok(())
    }

    /// H(s, progress) = C.hash? then check C's signatures
    #[upon(response)]
    fn on_state_hashed(&mut self, ctx: &mut Ctx<Self>, r: HashResult, c: StateHashed) -> Handled {
        let cert = &c.response.checkpoint;
        if r.digests.first() != Some(&cert.snapshot_hash) {
            self.transfer.checking = None;
            self.check_next(ctx);
            ignore!("STATE-RESPONSE from {}: the state does not match its checkpoint", c.from);
        }
        // The signers checked against the membership when the answer came (the membership
        // may have moved since): exactly those are verified.
        let req = c.cut.verify_request(&self.modules.checkpoint.then(cert.epoch));
        let next = StateVerified { from: c.from, response: c.response, snapshot: c.snapshot };
        ctx.request(&self.modules.crypto, req, next);
        Ok(())
    }

    /// C's signatures valid? then restore
    #[upon(response)]
    fn on_state_verified(
        &mut self,
        ctx: &mut Ctx<Self>,
        r: SigsVerified,
        c: StateVerified,
    ) -> Handled {
        self.transfer.checking = None;
        if !r.all_ok {
            self.check_next(ctx);
            ignore!("STATE-RESPONSE from {}: a signature of the checkpoint is invalid", c.from);
        }
        if self.ahead(&c.response) {
            self.restore(ctx, c.response, c.snapshot)?;
        }
        self.check_next(ctx);
        Ok(())
    }
}
