//! # PBFT as sequenced broadcast: one instance per segment
//!
//! Castro and Liskov, "Practical Byzantine Fault Tolerance and Proactive Recovery", TOCS 2002, as
//! Mir's `pkg/orderers` runs it for ISS (spec §3), for `n ≥ 3f + 1` by weight. One instance
//! orders the `sn`s of one [`Segment`]. Parts, each in its own file with its rules:
//!
//! * [`goodcase`]: PRE-PREPARE → PREPARE → COMMIT → deliver;
//! * [`viewchange`]: timeouts, signed VIEW-CHANGE with P and Q sets, NEW-VIEW with the
//!   re-proposals of conditions A1, A2 and B, fetching missing pre-prepares;
//! * [`catchup`]: the segment checkpoint (DONE), catching up from nodes that are done;
//! * [`recovery`]: persist before send (with a WAL), and restarting from what was sent.
//!
//! **State.** The instance is in an explicit [`Phase`]: `Normal { view }` or
//! `ViewChange { to }`, never a set of flags (Mir's `inViewChange` was "effectively always
//! false"). Per `sn` a [`Slot`] keeps the current view's votes and the P and Q entries that
//! survive view changes.
//!
//! **Digests.** A value's digest is the SHA-256 of the framed `("pbft.value", sn, value | ⊥)`
//! ([`value_digest`]); the view is not part of it, so a value keeps its digest across views.
//! Values ordered here are certificates (hundreds of bytes), so digests are computed inline.

pub mod catchup;
pub mod goodcase;
pub mod recovery;
pub mod viewchange;

pub use recovery::Sent;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_dsl::Votes;
use mir_runtime::stdmodules::hasher;
use serde::{Deserialize, Serialize};

use super::{SbInstance, Segment, Sn, Source, Validator};

/// A value's digest (32 bytes).
pub type Digest = Vec<u8>;

/// The digest of `value` (`None` for ⊥) at `sn`.
///
/// ```
/// use protocols::ordering::pbft::value_digest;
/// assert_ne!(value_digest(1, Some(b"x")), value_digest(2, Some(b"x")));
/// assert_ne!(value_digest(1, None), value_digest(1, Some(b"")));
/// ```
pub fn value_digest(sn: Sn, value: Option<&[u8]>) -> Digest {
    let v = match value {
        None => vec![0],
        Some(v) => [&[1u8][..], v].concat(),
    };
    hasher::digest(&[b"pbft.value".to_vec(), sn.to_le_bytes().to_vec(), v])
}

// ---- Messages, named as in Mir (and the paper) ----

/// PRE-PREPARE(sn, view, value): the primary's proposal. Sent on its own only in view 0; later
/// views carry theirs in [`NewView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preprepare {
    /// The slot.
    pub sn: Sn,
    /// The view.
    pub view: u64,
    /// The value, or ⊥ (`None`, Mir's "aborted").
    pub value: Option<Vec<u8>>,
}

/// PREPARE(sn, view, digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The slot.
    pub sn: Sn,
    /// The view.
    pub view: u64,
    /// The digest of the pre-prepared value.
    pub digest: Digest,
}

/// COMMIT(sn, view, digest), signed over [`commit_statement`] when
/// [`PbftConfig::sign_commits`] is on (else `signature` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The slot.
    pub sn: Sn,
    /// The view.
    pub view: u64,
    /// The digest of the prepared value.
    pub digest: Digest,
    /// The sender's signature, or empty.
    pub signature: Vec<u8>,
}

/// DONE(digests): the sender committed every `sn` of the segment; `digests` in the segment's
/// `sn` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The digests of the committed values.
    pub digests: Vec<Digest>,
    /// Sent again because the sender lacks the receiver's DONE: a receiver that is done
    /// answers with its own (an answer is not answered).
    pub resent: bool,
}

/// DONE-REQUEST: a restarted node asks for the receiver's DONE ([`catchup`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRequest;

/// CATCH-UP-REQUEST(sn, digest): asks a node that is done for the value of `sn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpRequest {
    /// The slot.
    pub sn: Sn,
    /// The digest a weak quorum of DONE messages gives for it.
    pub digest: Digest,
}

/// CATCH-UP-RESPONSE(sn, value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpResponse {
    /// The slot.
    pub sn: Sn,
    /// The committed value.
    pub value: Option<Vec<u8>>,
}

/// An entry of a P set: `sn` was prepared with `digest` in `view` (the highest such view).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PEntry {
    /// The slot.
    pub sn: Sn,
    /// The view it was prepared in.
    pub view: u64,
    /// The prepared digest.
    pub digest: Digest,
}

/// An entry of a Q set: `sn` was pre-prepared with `digest`, the last time in `view`.
pub type QEntry = PEntry;

/// VIEW-CHANGE(view, P, Q): the sender moves to `view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view moved to.
    pub view: u64,
    /// What the sender prepared: at most one entry per `sn` (its highest view).
    pub p_set: Vec<PEntry>,
    /// What the sender pre-prepared: per `sn` and digest, the highest view.
    pub q_set: Vec<QEntry>,
}

/// A [`ViewChange`] and its sender's signature over [`view_change_statement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedViewChange {
    /// The view change.
    pub view_change: ViewChange,
    /// The signature.
    pub signature: Vec<u8>,
}

/// PREPREPARE-REQUEST(sn, digest): the new primary asks for a value it must re-propose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreprepareRequest {
    /// The slot.
    pub sn: Sn,
    /// The digest of the value.
    pub digest: Digest,
}

/// MISSING-PREPREPARE(sn, value): the answer to a [`PreprepareRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingPreprepare {
    /// The slot.
    pub sn: Sn,
    /// The value.
    pub value: Option<Vec<u8>>,
}

/// NEW-VIEW(view, V, O): the new primary's proof (a strong quorum of signed view changes, with
/// their senders) and its pre-prepares, one per `sn` of the segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: u64,
    /// The senders of `view_changes`, one each.
    pub senders: Vec<NodeId>,
    /// Their signed view changes.
    pub view_changes: Vec<SignedViewChange>,
    /// The pre-prepares of the new view.
    pub preprepares: Vec<Preprepare>,
}

// ---- Local events (timers) ----

/// The propose delay since the last proposal passed (to itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposeTimeout;

/// No commit for `view` since `committed` slots were committed? Then change view (to itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnTimeout {
    /// The view the timer was set in.
    pub view: u64,
    /// How many slots were committed when it was set.
    pub committed: usize,
}

/// The segment is still not stable in `view`? Then change view (to itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTimeout {
    /// The view the timer was set in.
    pub view: u64,
}

/// Resend this node's view change for `view` (to itself, periodic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChangeResend {
    /// The view.
    pub view: u64,
}

/// Resend DONE to the members that did not send theirs (to itself, periodic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneResend;

/// Ask the members for their DONE again (to itself, periodic, after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskDone;

/// Ask done nodes for the missing values (to itself; `attempt` picks whom).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpTimeout {
    /// The attempt.
    pub attempt: u64,
}

payload!(
    Preprepare = "pbft.Preprepare",
    Prepare = "pbft.Prepare",
    Commit = "pbft.Commit",
    Done = "pbft.Done",
    DoneRequest = "pbft.DoneRequest",
    AskDone = "pbft.AskDone",
    CatchUpRequest = "pbft.CatchUpRequest",
    CatchUpResponse = "pbft.CatchUpResponse",
    SignedViewChange = "pbft.SignedViewChange",
    PreprepareRequest = "pbft.PreprepareRequest",
    MissingPreprepare = "pbft.MissingPreprepare",
    NewView = "pbft.NewView",
    ProposeTimeout = "pbft.ProposeTimeout",
    SnTimeout = "pbft.SnTimeout",
    SegmentTimeout = "pbft.SegmentTimeout",
    ViewChangeResend = "pbft.ViewChangeResend",
    DoneResend = "pbft.DoneResend",
    CatchUpTimeout = "pbft.CatchUpTimeout",
);

/// What a node signs in a commit (with [`PbftConfig::sign_commits`]).
pub fn commit_statement(sn: Sn, view: u64, digest: &[u8]) -> Vec<Vec<u8>> {
    vec![
        b"COMMIT".to_vec(),
        sn.to_le_bytes().to_vec(),
        view.to_le_bytes().to_vec(),
        digest.to_vec(),
    ]
}

/// What a node signs in a view change: its canonical encoding.
pub fn view_change_statement(vc: &ViewChange) -> Vec<Vec<u8>> {
    vec![b"VIEWCHANGE".to_vec(), mir_runtime::codec::encode(vc)]
}

// ---- Configuration ----

/// Timeouts and options of the PBFT instances (Mir's defaults, `AdjustSpeed(1 s)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbftConfig {
    /// The leader waits this long between two proposals (0: propose as soon as the source
    /// answers). Default 0; ISS sets it.
    pub propose_delay: Duration,
    /// View change when no slot was committed for this long in the current view, doubling per
    /// view. Default 4 s.
    pub sn_timeout: Duration,
    /// View change when the segment is not stable this long after the view (or the change to
    /// it) began, doubling per view. Default `2 · |sns| · 1 s`; `None` here means that default.
    pub segment_timeout: Option<Duration>,
    /// Resend period of view changes. Default 1 s.
    pub view_change_resend: Duration,
    /// Resend period of DONE to the members that did not send theirs. Default 1 s.
    pub done_resend: Duration,
    /// Wait after a weak quorum of DONE before catching up (and between attempts). Default 1 s.
    pub catch_up_delay: Duration,
    /// Sign commits and report [`EquivocationEvidence`](super::EquivocationEvidence). Default
    /// off.
    pub sign_commits: bool,
    /// Messages for a later view kept per sender until this node enters that view. Default
    /// `4 · |sns| + 16`; `None` means that default. Each is a PREPARE or COMMIT (a digest and a
    /// signature), so this bounds the memory a peer can make an instance hold.
    pub future_messages_per_sender: Option<usize>,
}

impl Default for PbftConfig {
    fn default() -> Self {
        PbftConfig {
            propose_delay: Duration::ZERO,
            sn_timeout: Duration::from_secs(4),
            segment_timeout: None,
            view_change_resend: Duration::from_secs(1),
            done_resend: Duration::from_secs(1),
            catch_up_delay: Duration::from_secs(1),
            sign_commits: false,
            future_messages_per_sender: None,
        }
    }
}

impl PbftConfig {
    /// Checks the settings: every timeout and period positive.
    pub fn validate(&self) -> Result<(), String> {
        for (name, d) in [
            ("sn_timeout", self.sn_timeout),
            ("view_change_resend", self.view_change_resend),
            ("done_resend", self.done_resend),
            ("catch_up_delay", self.catch_up_delay),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.segment_timeout.is_some_and(|d| d.is_zero()) {
            return Err("segment_timeout must be positive".into());
        }
        Ok(())
    }
}

/// The modules an instance talks to.
#[derive(Debug, Clone)]
pub struct PbftModules {
    /// The transport.
    pub net: ModuleId,
    /// The crypto module (view changes, signed commits).
    pub crypto: ModuleId,
    /// The timer.
    pub timer: ModuleId,
    /// Where [`SbDeliver`](super::SbDeliver), [`Suspect`](super::Suspect) and the other
    /// outputs go.
    pub consumer: ModuleId,
    /// Where fresh proposals come from.
    pub source: Source,
    /// How proposals are checked.
    pub validator: Validator,
    /// The WAL: with one, the instance logs what it sends before sending it ([`recovery`]).
    pub wal: Option<ModuleId>,
}

// ---- State ----

/// The instance's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Ordering in `view`.
    Normal {
        /// The view.
        view: u64,
    },
    /// Left the previous view, waiting for NEW-VIEW of `to`.
    ViewChange {
        /// The view being changed to.
        to: u64,
    },
}

impl Phase {
    /// The view this node is in or moving to.
    pub fn view(&self) -> u64 {
        match self {
            Phase::Normal { view } => *view,
            Phase::ViewChange { to } => *to,
        }
    }
}

/// What became of the primary's pre-prepare for a slot in the current view. Only the first
/// pre-prepare of a view counts: a rejected one is not replaced by another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Proposal {
    /// None yet.
    #[default]
    Awaited,
    /// Being validated.
    Validating,
    /// Invalid: the primary is suspected, this slot waits for the next view.
    Rejected,
    /// Accepted (this node sent its PREPARE) with this digest.
    Preprepared(Digest),
}

/// At most this many Q entries per `sn` in a view change: the highest views (see
/// `docs/ordering.md`, "Bounded Q sets").
pub const MAX_Q_PER_SN: usize = 4;

/// One sequence number.
#[derive(Debug, Default)]
pub struct Slot {
    // This view's state (reset when the view changes).
    /// The primary's pre-prepare in this view.
    pub(crate) proposal: Proposal,
    /// PREPARE votes of this view.
    pub(crate) prepares: Votes<Digest>,
    /// COMMIT votes of this view.
    pub(crate) commits: Votes<Digest>,
    /// Signed commits of this view by sender (evidence, with `sign_commits`).
    pub(crate) signed_commits: BTreeMap<NodeId, Commit>,
    /// This node sent its COMMIT in this view.
    pub(crate) sent_commit: bool,
    // Kept across views.
    /// P: the highest view this node prepared in, and the digest.
    pub(crate) prepared: Option<(u64, Digest)>,
    /// Q: per digest pre-prepared, the highest view (at most [`MAX_Q_PER_SN`], the highest).
    pub(crate) preprepared_in: BTreeMap<Digest, u64>,
    /// The values accepted for this slot (validated, re-proposed in a checked NEW-VIEW, or
    /// matching a digest a quorum vouches for), by digest.
    pub(crate) values: BTreeMap<Digest, Option<Vec<u8>>>,
    /// The committed digest.
    pub(crate) committed: Option<Digest>,
}

impl Slot {
    /// Q: `digest` was pre-prepared in `view`; keeps the highest views only (at most
    /// [`MAX_Q_PER_SN`]; a correct node pre-prepares one value per view).
    pub(crate) fn note_preprepared(&mut self, digest: &Digest, view: u64) {
        let q = self.preprepared_in.entry(digest.clone()).or_default();
        *q = (*q).max(view);
        while self.preprepared_in.len() > MAX_Q_PER_SN {
            let lowest = self.preprepared_in.iter().min_by_key(|(d, v)| (**v, (*d).clone()));
            let Some(lowest) = lowest.map(|(d, _)| d.clone()) else { break };
            self.preprepared_in.remove(&lowest);
        }
    }

    fn reset_view(&mut self) {
        self.proposal = Proposal::Awaited;
        self.prepares = Votes::default();
        self.commits = Votes::default();
        self.signed_commits.clear();
        self.sent_commit = false;
    }
}

/// A PREPARE or COMMIT for a view this node has not entered yet.
#[derive(Debug, Clone)]
pub(crate) enum Early {
    Prepare(Prepare),
    Commit(Commit),
}

/// One PBFT instance.
pub struct Pbft {
    // Parameters.
    pub(crate) modules: PbftModules,
    pub(crate) config: PbftConfig,
    pub(crate) me: NodeId,
    pub(crate) segment: Segment,
    pub(crate) voters: Voters,
    /// The members sorted by ID (the primaries' order).
    pub(crate) order: Vec<NodeId>,
    pub(crate) leader_idx: usize,
    // State.
    pub(crate) phase: Phase,
    pub(crate) slots: BTreeMap<Sn, Slot>,
    pub(crate) committed: usize,
    // Good case, leader only.
    /// Index in `segment.sns` of the next slot to propose.
    pub(crate) next_proposal: usize,
    /// A proposal is being obtained from the source, or the propose delay runs.
    pub(crate) proposing: bool,
    // View change.
    pub(crate) view_change: viewchange::ViewChangeState,
    /// Early messages by sender.
    pub(crate) early: BTreeMap<NodeId, Vec<Early>>,
    // Catch-up.
    pub(crate) catch_up: catchup::CatchUpState,
    // Recovery.
    /// The retention index of this instance's WAL records.
    pub(crate) retention: u64,
    pub(crate) recovery: recovery::RecoveryState,
}

impl Pbft {
    /// An instance ordering `segment`, run by `me`. Errors for an invalid segment or config.
    pub fn new(
        modules: PbftModules,
        config: PbftConfig,
        me: NodeId,
        segment: Segment,
    ) -> Result<Self, String> {
        segment.validate()?;
        config.validate()?;
        let voters = Voters::new(segment.membership.iter().cloned());
        let order: Vec<NodeId> =
            voters.nodes().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let leader_idx = order.iter().position(|n| *n == segment.leader).unwrap_or(0);
        let slots = segment.sns.iter().map(|sn| (*sn, Slot::default())).collect();
        Ok(Pbft {
            modules,
            config,
            me,
            segment,
            voters,
            order,
            leader_idx,
            phase: Phase::Normal { view: 0 },
            slots,
            committed: 0,
            next_proposal: 0,
            proposing: false,
            view_change: Default::default(),
            early: BTreeMap::new(),
            catch_up: Default::default(),
            retention: 0,
            recovery: Default::default(),
        })
    }

    /// The primary of `view`: the members sorted by ID, rotated to start at the leader.
    ///
    /// ```
    /// use protocols::ordering::{pbft::{Pbft, PbftConfig, PbftModules}, Segment, Source, Validator};
    /// use mir_runtime::{ModuleId, NodeId};
    /// let n = NodeId::from_index;
    /// let members = (0..4).map(|i| (n(i), 1)).collect();
    /// let m = ModuleId::new("x");
    /// let modules = PbftModules { net: m.clone(), crypto: m.clone(), timer: m.clone(), wal: None,
    ///     consumer: m, source: Source::FixedOnly, validator: Validator::AcceptAll };
    /// let pbft = Pbft::new(modules, PbftConfig::default(), n(0), Segment::new(n(2), members, vec![0]))
    ///     .unwrap();
    /// assert_eq!([pbft.primary(0), pbft.primary(1), pbft.primary(2)], [&n(2), &n(3), &n(0)]);
    /// ```
    pub fn primary(&self, view: u64) -> &NodeId {
        let n = self.order.len() as u64;
        &self.order[((self.leader_idx as u64 + view % n) % n) as usize]
    }

    /// The instance's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether every `sn` of the segment is committed here.
    pub fn all_committed(&self) -> bool {
        self.committed == self.slots.len()
    }

    /// The segment timeout of `view`: the base doubled `view` times (capped at 2^20).
    pub(crate) fn segment_timeout(&self, view: u64) -> Duration {
        let base = self
            .config
            .segment_timeout
            .unwrap_or(Duration::from_secs(2 * self.segment.sns.len() as u64));
        base.saturating_mul(1u32 << view.min(20))
    }

    /// The per-`sn` timeout of `view`.
    pub(crate) fn sn_timeout(&self, view: u64) -> Duration {
        self.config.sn_timeout.saturating_mul(1u32 << view.min(20))
    }

    pub(crate) fn future_limit(&self) -> usize {
        self.config.future_messages_per_sender.unwrap_or(4 * self.segment.sns.len() + 16)
    }

    /// Keeps `msg` from `from` for a later view, if `from` has room.
    pub(crate) fn keep_early(&mut self, from: NodeId, msg: Early) -> Handled {
        let limit = self.future_limit();
        let kept = self.early.entry(from.clone()).or_default();
        ensure!(kept.len() < limit, "{from} sent more than {limit} messages for later views");
        kept.push(msg);
        Ok(())
    }

    /// Enters `Normal { view }`: this view's timers, and the messages kept for it.
    pub(crate) fn enter_view(&mut self, ctx: &mut Ctx<Self>, view: u64) {
        if self.phase.view() < view {
            for slot in self.slots.values_mut() {
                slot.reset_view();
            }
            self.arm_segment_timeout(ctx, view);
        }
        self.phase = Phase::Normal { view };
        self.view_change.fetching.clear();
        self.view_change.pending = None;
        let timer = self.modules.timer.clone();
        if let Some(t) = self.view_change.resend_timer.take() {
            ctx.cancel(&timer, t);
        }
        ctx.after(&timer, self.sn_timeout(view), SnTimeout { view, committed: self.committed });
    }

    pub(crate) fn arm_segment_timeout(&mut self, ctx: &mut Ctx<Self>, view: u64) {
        let d = self.segment_timeout(view);
        ctx.after(&self.modules.timer.clone(), d, SegmentTimeout { view });
    }
}

/// A [factory](mir_runtime::stdmodules::Factory) of PBFT instances: a
/// `NewSubmodule { id, params: SbInstance { segment, .. } }` creates an instance ordering
/// `segment` (with the consumer, source and validator the [`SbInstance`] names, if it does).
/// Messages for instances not created yet are kept (bounded per sender) until they are.
pub fn factory(modules: PbftModules, config: PbftConfig, me: NodeId) -> Factory {
    let timer = modules.timer.clone();
    Factory::of(move |id, p: SbInstance| {
        let mut modules = modules.clone();
        if let Some(c) = p.consumer {
            modules.consumer = c;
        }
        if let Some(s) = p.source {
            modules.source = s;
        }
        if let Some(v) = p.validator {
            modules.validator = v;
        }
        let mut pbft = Pbft::new(modules, config.clone(), me.clone(), p.segment)
            .map_err(|e| ModuleError::new(format!("PBFT instance {id}: {e}")))?;
        pbft.retention = p.retention;
        pbft.recover(p.recovered);
        Ok(DslModule::new(pbft))
    })
    .cancel_timers_at(timer) // a garbage-collected instance's timers stop
}

#[protocol(parts(goodcase, viewchange, catchup))]
impl Pbft {
    /// upon ⟨Init⟩ do enter view 0; if primary(0) = me: start proposing
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
        if self.was_recovered() {
            self.resume(ctx);
            return self.propose_next(ctx);
        }
        self.arm_segment_timeout(ctx, 0);
        self.enter_view(ctx, 0);
        self.propose_next(ctx)
    }
}
