//! Rejoining after a lost disk ("amnesia", `docs/recovery.md`): a node that took part before and
//! lost its write-ahead log must not contradict what it sent before it forgot it.
//!
//! ```text
//! upon start with rejoin set (IssConfig::rejoin), or a REJOINING mark in the WAL, and no
//! logged checkpoint do
//!     log REJOINING; then send REJOIN-REQUEST to the other members (and every catch-up period
//!     until answered); start no epoch
//! upon REJOIN-REQUEST from member p, this node not rejoining itself and its WAL read do
//!     send REJOIN-REPORT(reach) to p     (reach: the highest epoch this node entered or holds
//!                                         logged PBFT records of)
//! upon REJOIN-REPORT(e) from others that weigh a strong quorum do
//!     point := max(e) + 2; fetch a stable checkpoint of epoch ≥ point (state transfer, asking
//!     from point − 1, every catch-up period) and start from it: this node acts in no epoch
//!     before point
//! ```
//!
//! **Why point is safe.** Say the node, before it lost its disk, acted in epochs up to E. It
//! entered E, so it had delivered epoch E − 1, and every value it delivered was committed by a
//! strong quorum of COMMITs in an instance of E − 1. That quorum and the strong quorum of others
//! that answered share more than f weight, none of it this node's: a correct member that sent a
//! COMMIT in E − 1. A correct member logs a COMMIT before sending it and keeps the record until
//! a stable checkpoint past its epoch is logged, from which it restarts, so its reach is at least
//! E − 1 for ever (across its own restarts). Hence max(e) ≥ E − 1 and point ≥ E + 1 > E: the
//! node sends no PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE, NEW-VIEW (of the segments or of the
//! checkpoint agreement) and no checkpoint signature in an epoch it may have acted in.
//!
//! **What it costs.** The node waits until the others have a stable checkpoint of `point`, about
//! two epochs after they answered. A node that is rejoining does not answer REJOIN-REQUESTs (it
//! does not know), so two nodes that lost their disks at once with only f tolerated wait for
//! each other: beyond f faults the rule keeps safety, not liveness. A Byzantine member can report
//! a huge epoch and keep the node waiting (it then stays out, as a faulty node would); it cannot
//! make it act early, since the maximum is taken. The REJOINING mark makes a crash during the
//! rejoin safe: the node rejoins again at its restart, with or without the setting.
//!
//! Batches this node vouched for before the loss are gone from its disk: certificates it signed
//! keep the others' copies (a weak quorum of signers holds a correct node besides this one only
//! if this node is counted as faulty, which the operator does until it has rejoined).

use std::collections::BTreeMap;

use mir_dsl::prelude::*;
use serde::{Deserialize, Serialize};

use super::Iss;

/// REJOIN-REQUEST: the sender lost its disk and asks how far the members have gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinRequest;

/// REJOIN-REPORT(epoch): the highest epoch the sender entered or holds logged records of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejoinReport {
    /// The sender's reach.
    pub epoch: u64,
}

/// The WAL mark of a rejoin under way (a restart continues it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejoining;

payload!(
    RejoinRequest = "iss.RejoinRequest",
    RejoinReport = "iss.RejoinReport",
    Rejoining = "iss.Rejoining",
);

/// Where a rejoin stands.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Rejoin {
    /// Not rejoining: this node acts in its epochs.
    #[default]
    Off,
    /// Asking the members how far they are: the reports so far.
    Asking(BTreeMap<NodeId, u64>),
    /// Waiting for a stable checkpoint of epoch `point` or later.
    Waiting {
        /// The first epoch this node may act in.
        point: u64,
    },
}

impl Iss {
    /// Whether this node is rejoining (it acts in no epoch yet).
    pub fn rejoining(&self) -> bool {
        self.recovery.rejoin != Rejoin::Off
    }

    /// The first epoch this node may act in after a rejoin (`None` while it asks, or when not
    /// rejoining).
    pub fn rejoin_point(&self) -> Option<u64> {
        match self.recovery.rejoin {
            Rejoin::Waiting { point } => Some(point),
            _ => None,
        }
    }

    /// Whether a stable checkpoint of `epoch` may be restored, as far as a rejoin is concerned.
    pub(crate) fn rejoin_allows(&self, epoch: u64) -> bool {
        match self.recovery.rejoin {
            Rejoin::Off => true,
            Rejoin::Asking(_) => false,
            Rejoin::Waiting { point } => epoch >= point,
        }
    }

    /// This node's reach: the highest epoch it entered or holds logged PBFT records of.
    fn reach(&self) -> u64 {
        let logged = self.recovery.records.keys().filter_map(|id| self.epoch_of_instance(id));
        logged.fold(self.layout.epoch, u64::max)
    }

    /// The epoch of an SB or agreement instance, from its module ID.
    pub(crate) fn epoch_of_instance(&self, id: &ModuleId) -> Option<u64> {
        if let Some((e, _)) = self.instance_of(id) {
            return Some(e);
        }
        let rest = id.as_str().strip_prefix(self.modules.agreement.as_str())?.strip_prefix('/')?;
        rest.parse().ok()
    }

    /// Starts a rejoin: log the mark, then ask the members (no epoch starts).
    pub(crate) fn begin_rejoin(&mut self, ctx: &mut Ctx<Self>) {
        tracing::warn!("rejoining: this node acts in no epoch before the members' reach + 2");
        self.recovery.rejoin = Rejoin::Asking(BTreeMap::new());
        let to = self.others();
        ctx.persist(self.modules.wal.as_ref(), 0, Rejoining).then_send(
            &self.modules.net,
            to,
            RejoinRequest,
        );
    }

    /// Every catch-up period while asking: ask the members that did not answer again (after the
    /// mark is durable: a barrier).
    pub(crate) fn ask_again(&mut self, ctx: &mut Ctx<Self>) {
        let Rejoin::Asking(reports) = &self.recovery.rejoin else { return };
        let to: Vec<NodeId> =
            self.others().into_iter().filter(|n| !reports.contains_key(n)).collect();
        ctx.after_logged(self.modules.wal.as_ref()).then_send(&self.modules.net, to, RejoinRequest);
    }

    /// After the state transfer to `epoch`: the rejoin is over.
    pub(crate) fn rejoined(&mut self, epoch: u64) {
        if let Rejoin::Waiting { point } = self.recovery.rejoin {
            tracing::info!(point, epoch, "rejoined");
            self.recovery.rejoin = Rejoin::Off;
        }
    }
}

#[protocol(part = rejoin)]
impl Iss {
    /// upon REJOIN-REQUEST from member p, this node not rejoining itself do
    /// send REJOIN-REPORT(reach) to p
    #[upon(message)]
    fn on_rejoin_request(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        _m: RejoinRequest,
    ) -> Handled {
        ensure!(self.is_member(&from), "REJOIN-REQUEST from non-member {from}");
        ensure!(from != self.me, "REJOIN-REQUEST from this node itself");
        // A node that does not know its own reach must not answer (nor before its WAL is read).
        ensure!(!self.rejoining(), "REJOIN-REQUEST from {from} while rejoining");
        ensure!(!self.waiting_for_wal(), "REJOIN-REQUEST from {from} before the WAL was read");
        let report = RejoinReport { epoch: self.reach() };
        ctx.send(&self.modules.net, [&from], report);
        Ok(())
    }

    /// upon REJOIN-REPORT(e) from others that weigh a strong quorum do point := max(e) + 2;
    /// fetch a stable checkpoint of epoch ≥ point
    #[upon(message)]
    fn on_rejoin_report(&mut self, ctx: &mut Ctx<Self>, from: NodeId, m: RejoinReport) -> Handled {
        ensure!(self.is_member(&from), "REJOIN-REPORT from non-member {from}");
        ensure!(from != self.me, "REJOIN-REPORT from this node itself");
        // A Byzantine member can report any epoch; one this large could not be added to.
        ensure!(m.epoch < u64::MAX / 2, "REJOIN-REPORT from {from}: epoch {} is absurd", m.epoch);
        let Rejoin::Asking(reports) = &mut self.recovery.rejoin else {
            return Ok(()); // late: the point is set
        };
        let e = reports.entry(from).or_insert(m.epoch);
        *e = (*e).max(m.epoch);
        let voters = Voters::new(self.membership.iter().cloned());
        if !voters.is_strong_quorum(reports.keys()).unwrap_or(false) {
            return Ok(());
        }
        let point = reports.values().max().copied().unwrap_or(0) + 2;
        tracing::info!(point, reports = ?reports, "rejoin point set");
        self.recovery.rejoin = Rejoin::Waiting { point };
        self.request_state(ctx);
        Ok(())
    }
}
