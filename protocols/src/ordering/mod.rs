//! # The ordering layer: sequenced broadcast (PBFT) and checkpointing
//!
//! ISS (issue 15) multiplexes **sequenced-broadcast** (SB) instances into one totally ordered log.
//! This module holds the SB contract and its PBFT implementation, and the checkpoint protocol that
//! ends each epoch. Design decisions and the mapping of every rule of the spec
//! (`iss-spec.md` §2–§4) to code are in `docs/ordering.md`.
//!
//! **The SB contract** (spec §2). An instance is given a [`Segment`]: a leader, the members with
//! their weights, the sequence numbers it orders, the buckets its leader may draw requests from,
//! and optionally fixed proposals. For each `sn` of the segment it eventually emits exactly one
//! [`SbDeliver`] at every correct node, with a value or ⊥ (`None`); all correct nodes deliver the
//! same value for an `sn`; a value delivered while the leader is correct was proposed by it. Only
//! the segment's leader proposes new values (in view 0); after a view change an `sn` gets what was
//! prepared before, or ⊥.
//!
//! * Proposals come from a pluggable [`Source`]: the availability layer (a
//!   [`RequestCert`](crate::availability::msc::RequestCert) answered by a certificate), any module
//!   answering [`CutBatch`] with [`BatchCut`], or only the segment's fixed proposals.
//! * Proposals are checked by a pluggable [`Validator`] before a node prepares them: the
//!   availability layer's certificate check, any module answering [`ValidateProposal`] (the
//!   checkpoint validator is one), or none. A node that gets an invalid proposal emits
//!   [`Suspect`] for the leader and does not prepare it; the `sn` then ends as ⊥ after a view
//!   change.
//!
//! Parts: [`pbft`] (the instance: good case, view change, catch-up), [`checkpoint`], and
//! [`iss`] (epochs of PBFT instances into one log, buckets, leader policies, state transfer,
//! crash recovery, reconfiguration).

pub mod checkpoint;
pub mod iss;
pub mod pbft;

use std::collections::{BTreeMap, BTreeSet};

use mir_dsl::Weight;

use crate::availability::Buckets;
use mir_runtime::stdevents::crypto::Origin;
use mir_runtime::{payload, request_response, ModuleId, NodeId};
use serde::{Deserialize, Serialize};

/// A sequence number of the log.
pub type Sn = u64;

/// What one SB instance orders (spec §1–§2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The segment's leader: the only node that proposes new values, and the primary of view 0.
    pub leader: NodeId,
    /// The members and their weights (quorums are by weight). The primaries of later views are
    /// the members sorted by ID, rotated to start at the leader.
    pub membership: Vec<(NodeId, Weight)>,
    /// The sequence numbers this segment orders (distinct; in ISS they interleave with the other
    /// segments' of the epoch).
    pub sns: Vec<Sn>,
    /// The request buckets the leader may draw transactions from (handed to the [`Source`] and
    /// checked by the availability validator); `None`: any (Trantor's redundant mode).
    pub buckets: Option<Buckets>,
    /// Fixed proposals: for these `sn`s each node's instance proposes this value when it is the
    /// primary (the leader in view 0, a new primary for an `sn` where nothing was prepared)
    /// instead of asking the source. Used for checkpoint agreement, where each node proposes the
    /// certificate it holds.
    pub proposals: BTreeMap<Sn, Vec<u8>>,
}

impl Segment {
    /// A segment of `sns` led by `leader`, no buckets, no fixed proposals.
    pub fn new(leader: NodeId, membership: Vec<(NodeId, Weight)>, sns: Vec<Sn>) -> Self {
        Segment { leader, membership, sns, buckets: None, proposals: BTreeMap::new() }
    }

    /// Checks the segment: members distinct with positive weights, the leader a member,
    /// sequence numbers distinct and at least one, fixed proposals only for its own `sn`s.
    ///
    /// ```
    /// use protocols::ordering::Segment;
    /// use mir_runtime::NodeId;
    /// let n = |i| NodeId::from_index(i);
    /// let members = vec![(n(0), 1), (n(1), 1)];
    /// assert!(Segment::new(n(0), members.clone(), vec![0, 2]).validate().is_ok());
    /// assert!(Segment::new(n(5), members.clone(), vec![0]).validate().is_err());
    /// assert!(Segment::new(n(0), members, vec![1, 1]).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (n, w) in &self.membership {
            if !seen.insert(n) {
                return Err(format!("member {n} is listed twice"));
            }
            if *w == 0 {
                return Err(format!("member {n} has weight 0"));
            }
        }
        if !seen.contains(&self.leader) {
            return Err(format!("the leader {} is not a member", self.leader));
        }
        if self.sns.is_empty() {
            return Err("the segment has no sequence numbers".into());
        }
        let sns: BTreeSet<_> = self.sns.iter().collect();
        if sns.len() != self.sns.len() {
            return Err("a sequence number is listed twice".into());
        }
        if let Some(sn) = self.proposals.keys().find(|sn| !sns.contains(sn)) {
            return Err(format!("a fixed proposal for sn {sn}, which is not in the segment"));
        }
        Ok(())
    }
}

/// ISS → SB: the parameters of one instance, sent to the PBFT [factory](pbft::factory) in a
/// `NewSubmodule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbInstance {
    /// The segment to order.
    pub segment: Segment,
    /// Where this instance's outputs go, instead of the factory's consumer (checkpoint agreement
    /// sends them to the epoch's checkpoint instance).
    pub consumer: Option<ModuleId>,
    /// Where this instance's proposals come from, instead of the factory's source (ISS: the
    /// epoch's availability instance).
    pub source: Option<Source>,
    /// How this instance's proposals are checked, instead of the factory's validator.
    pub validator: Option<Validator>,
    /// The retention index of the instance's WAL records (ISS: the epoch).
    #[serde(default)]
    pub retention: u64,
    /// What the instance logged before a restart ([`pbft::recovery`]).
    #[serde(default)]
    pub recovered: Vec<pbft::Sent>,
}

impl SbInstance {
    /// An instance ordering `segment` with the factory's consumer, source and validator.
    pub fn new(segment: Segment) -> Self {
        SbInstance {
            segment,
            consumer: None,
            source: None,
            validator: None,
            retention: 0,
            recovered: Vec::new(),
        }
    }
}

/// SB → consumer: `sn` is decided. `value` is `None` for ⊥.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SbDeliver {
    /// The sequence number.
    pub sn: Sn,
    /// The value, or ⊥.
    pub value: Option<Vec<u8>>,
    /// The segment's leader (whom ISS suspects on ⊥).
    pub leader: NodeId,
}

/// SB → consumer: `node` proposed something invalid (or otherwise misbehaved provably).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    /// The suspected node.
    pub node: NodeId,
    /// Why.
    pub reason: String,
}

/// SB → consumer: a value obtained from the source that can no longer be proposed (the instance
/// left view 0 before it arrived; only view 0 proposes fresh values). Handed back so that what
/// it holds is not lost: the consumer (ISS, the mempool) proposes it again later. This is Mir's
/// open "resurrection" TODO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalUnused {
    /// The slot it was meant for.
    pub sn: Sn,
    /// The value.
    pub value: Vec<u8>,
}

/// SB → consumer: proof that `node` signed two different commits for one `sn` and view (only
/// with [`pbft::PbftConfig::sign_commits`]). Anyone can check both signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationEvidence {
    /// The equivocating node.
    pub node: NodeId,
    /// The first commit received.
    pub first: pbft::Commit,
    /// The conflicting one.
    pub second: pbft::Commit,
}

/// SB → source: asks for a value to propose at `sn`, drawn from `buckets` (answered with
/// [`BatchCut`]). The spec's `CutBatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutBatch {
    /// The slot.
    pub sn: Sn,
    /// The segment's buckets (`None`: any).
    pub buckets: Option<Buckets>,
    /// Who asked.
    pub origin: Origin,
}

/// The answer to a [`CutBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCut {
    /// The value to propose.
    pub value: Vec<u8>,
    /// The request's origin.
    pub origin: Origin,
}

/// SB → validator: is `value` a valid proposal for `sn`? (answered with [`ProposalValidated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidateProposal {
    /// The slot.
    pub sn: Sn,
    /// The proposal.
    pub value: Vec<u8>,
    /// Who asked.
    pub origin: Origin,
}

/// The answer to a [`ValidateProposal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalValidated {
    /// `None` if valid, else why not.
    pub error: Option<String>,
    /// The request's origin.
    pub origin: Origin,
}

payload!(
    SbInstance = "ordering.SbInstance",
    SbDeliver = "ordering.SbDeliver",
    Suspect = "ordering.Suspect",
    ProposalUnused = "ordering.ProposalUnused",
    EquivocationEvidence = "ordering.EquivocationEvidence",
    CutBatch = "ordering.CutBatch",
    BatchCut = "ordering.BatchCut",
    ValidateProposal = "ordering.ValidateProposal",
    ProposalValidated = "ordering.ProposalValidated",
);
request_response!(CutBatch => BatchCut, ValidateProposal => ProposalValidated);

/// Where a leader's fresh proposals come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// The availability layer's multisig collector at this module: a
    /// [`RequestCert`](crate::availability::msc::RequestCert); the value is the certificate's
    /// [canonical encoding](crate::availability::Cert::to_bytes).
    Availability(ModuleId),
    /// A module answering [`CutBatch`] with [`BatchCut`].
    Module(ModuleId),
    /// Only the segment's fixed proposals; an `sn` without one is proposed as ⊥.
    FixedOnly,
}

/// How proposals are checked before a node prepares them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Validator {
    /// Every value is valid.
    AcceptAll,
    /// The value must decode as an availability [`Cert`](crate::availability::Cert) that the
    /// multisig collector at this module verifies
    /// ([`VerifyCert`](crate::availability::msc::VerifyCert)).
    Availability(ModuleId),
    /// A module answering [`ValidateProposal`] with [`ProposalValidated`] (e.g. the
    /// [checkpoint validator](checkpoint)).
    Module(ModuleId),
}
