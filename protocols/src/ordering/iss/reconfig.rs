//! ISS reconfiguration: the application changes the membership at epoch boundaries, a
//! configuration offset ahead (Mir's `ConfigOffset`; `docs/smr.md`, "Reconfiguration").
//!
//! ```text
//! upon NewMembership(b, M) from the application (at the boundary of epoch b: after the last
//! batch of b − 1, before the snapshot of b) do
//!     memberships[b + offset] := M
//! start epoch e:
//!     wait for the application's answer at boundary e − offset (its snapshot, after its decision)
//!     if memberships[e] exists: membership := memberships[e]; the leader policy follows it
//!     if this node is not a member of e: create no instance; wait for a stable checkpoint of a
//!         later epoch (state transfer, every catch-up period)
//! checkpoint of e: agreed and signed by the members of e − 1 (they ran e − 1); its snapshot
//!     carries memberships[e' > e], so a node that restores it knows what was decided
//! upon StableCheckpoint(e), or a restored checkpoint of e, at a node that took part (it was a
//! member, or knew a membership with itself) and is not a member of e or of any later decided
//! epoch do
//!     trigger Left(e) to the consumer, once; stop asking for state
//! ```
//!
//! **Who is trusted.** A node checks a transferred checkpoint of epoch e against the membership
//! of e − 1 as it knows it (the newest it knows at or before e − 1): a node that joins is given
//! the membership that adds it (its first checkpoint is signed by those members). Signers it does
//! not know are left out of the check; those it knows must weigh a strong quorum of that
//! membership, and exactly those signatures are verified. A node that fell behind across more
//! than `offset` changes may not know the signers and stays behind; and since it trusts a
//! membership that is no longer current, retired members count in its check (`docs/smr.md`,
//! "Limits": the long-range attack is not closed).
//!
//! **Departed nodes.** A removed node that fell behind (it crashed, or was cut off) asks for
//! state like any other; members answer the nodes of the memberships they know and the last
//! [`DEPARTED`] nodes of memberships they forgot, so it restores a checkpoint that does not
//! include it and learns that it left.
//!
//! **Determinism.** The application decides from the ordered transactions at the same boundary at
//! every node, and ISS takes the decision at `b + offset` whatever the local timing: an epoch
//! does not start before the decision that could concern it is known.

use std::collections::BTreeMap;

use mir_dsl::prelude::*;
use serde::{Deserialize, Serialize};

use super::Iss;

/// Application → ISS, at the boundary of epoch `epoch` (before its `AppSnapshot`): the membership
/// from epoch `epoch + config_offset` on. Members need distinct IDs and positive weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMembership {
    /// The boundary (the epoch whose snapshot follows).
    pub epoch: u64,
    /// The members and their weights.
    pub members: Vec<(NodeId, Weight)>,
}

/// ISS → consumer: this node is no member of epoch `epoch` or of any later epoch decided so far,
/// and the checkpoint of `epoch` is stable (its part is done; it keeps answering state requests
/// until it is stopped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The first epoch without this node.
    pub epoch: u64,
}

/// The WAL mark of a node that took part (a restart keeps knowing it, to leave when removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TookPart;

payload!(NewMembership = "iss.NewMembership", Left = "iss.Left", TookPart = "iss.TookPart");

/// The reconfiguration state of ISS.
#[derive(Debug, Default)]
pub(crate) struct Reconfig {
    /// Memberships by the epoch they take effect in: the one in effect at the last stable
    /// checkpoint (or 0) and every later decided one.
    pub(crate) memberships: BTreeMap<u64, Vec<(NodeId, Weight)>>,
    /// The last boundary whose application answer (snapshot) arrived.
    pub(crate) answered: u64,
    /// An epoch that waits for the answer at its boundary − offset: (epoch, first sn).
    pub(crate) deferred: Option<(u64, u64)>,
    /// This node started an epoch as a member, or knew a membership with itself when it
    /// restored a state. A node that waits to join has done neither, and does not "leave" when
    /// it restores a state from before the decision that adds it.
    pub(crate) took_part: bool,
    /// [`Left`] was triggered.
    pub(crate) left: bool,
    /// Nodes of memberships this node forgot, most recent last (at most [`DEPARTED`]): their
    /// state requests are still answered, so that a removed node that fell behind learns that
    /// it left.
    pub(crate) departed: std::collections::VecDeque<NodeId>,
}

/// Departed nodes remembered (their state requests are answered).
pub const DEPARTED: usize = 1024;

/// Checks a membership an application decided.
pub(crate) fn check_membership(members: &[(NodeId, Weight)]) -> Result<(), String> {
    if members.is_empty() {
        return Err("the membership is empty".into());
    }
    let mut ids: Vec<&NodeId> = members.iter().map(|(n, _)| n).collect();
    ids.sort();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err("a member appears twice".into());
    }
    if members.iter().any(|(_, w)| *w == 0) {
        return Err("a member has weight 0".into());
    }
    Ok(())
}

impl Iss {
    /// The membership of `epoch` as this node knows it (the newest at or before it).
    pub(crate) fn membership_at(&self, epoch: u64) -> &[(NodeId, Weight)] {
        self.reconfig
            .memberships
            .range(..=epoch)
            .next_back()
            .or_else(|| self.reconfig.memberships.first_key_value())
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&self.membership)
    }

    /// Whether `n` is in any membership this node knows, or departed from one (it may ask for
    /// state).
    pub(crate) fn is_known(&self, n: &NodeId) -> bool {
        self.reconfig.memberships.values().any(|m| m.iter().any(|(x, _)| x == n))
            || self.reconfig.departed.contains(n)
    }

    /// Whether this node is a member of the current epoch.
    pub(crate) fn am_member(&self) -> bool {
        self.membership.iter().any(|(n, _)| *n == self.me)
    }

    /// Memberships decided for epochs after `epoch` (what the snapshot of `epoch` carries).
    pub(crate) fn decided_after(&self, epoch: u64) -> Vec<(u64, Vec<(NodeId, Weight)>)> {
        self.reconfig.memberships.range(epoch + 1..).map(|(e, m)| (*e, m.clone())).collect()
    }

    /// Whether epoch `e` must wait for the application's answer at boundary `e − offset`.
    pub(crate) fn must_wait(&self, e: u64) -> bool {
        let offset = self.config.config_offset;
        e > offset && e - offset > self.reconfig.answered
    }

    /// Enters epoch `e` at `first_sn`: the membership decided for it, its layout, its instances.
    pub(crate) fn enter_epoch(&mut self, ctx: &mut Ctx<Self>, e: u64, first_sn: u64) -> Handled {
        if let Some(m) = self.reconfig.memberships.get(&e).cloned() {
            if m != self.membership {
                tracing::info!(epoch = e, members = m.len(), "the membership changes");
                self.leaders.reconfigure(m.clone());
                self.membership = m;
            }
        }
        let layout = super::epoch::EpochLayout::new(
            e,
            first_sn,
            self.leaders.leaders(e),
            self.config.segment_length,
            self.layout.buckets,
        );
        self.layout = match layout {
            Ok(l) => l,
            Err(err) => fatal!("epoch {e}: {err}"),
        };
        self.start_epoch(ctx);
        Ok(())
    }

    /// Forgets memberships no longer needed after a stable checkpoint of `epoch`: keeps the one
    /// in effect at `epoch − 1` (it signs the checkpoint of `epoch`) and later ones.
    pub(crate) fn forget_memberships(&mut self, epoch: u64) {
        let keep_from =
            self.reconfig.memberships.range(..epoch).next_back().map(|(e, _)| *e).unwrap_or(0);
        let kept = self.reconfig.memberships.split_off(&keep_from);
        let forgotten = std::mem::replace(&mut self.reconfig.memberships, kept);
        self.remember_departed(forgotten);
    }

    /// The nodes of `forgotten` memberships that no membership kept holds: departed.
    pub(crate) fn remember_departed(&mut self, forgotten: BTreeMap<u64, Vec<(NodeId, Weight)>>) {
        for (n, _) in forgotten.into_values().flatten() {
            if !self.is_known(&n) {
                self.reconfig.departed.push_back(n);
                if self.reconfig.departed.len() > DEPARTED {
                    self.reconfig.departed.pop_front();
                }
            }
        }
    }

    /// This node took part: remember it, in the WAL too (at the retention of the last logged
    /// checkpoint, and again with every checkpoint logged later).
    pub(crate) fn mark_took_part(&mut self, ctx: &mut Ctx<Self>) {
        if self.reconfig.took_part {
            return;
        }
        self.reconfig.took_part = true;
        let retention = self.recovery.logged.unwrap_or(0);
        ctx.persist(self.modules.wal.as_ref(), retention, TookPart).then_nothing();
    }

    /// After a stable checkpoint: a node that was a member and is no longer one leaves.
    pub(crate) fn maybe_leave(&mut self, ctx: &mut Ctx<Self>, epoch: u64) {
        let member_of = |m: &[(NodeId, Weight)]| m.iter().any(|(n, _)| *n == self.me);
        // The membership of `epoch` (not of the current epoch, which may be later: a node still
        // signs the checkpoints of epochs it was a member of).
        if self.reconfig.left || !self.reconfig.took_part || member_of(self.membership_at(epoch)) {
            return;
        }
        let later = self.reconfig.memberships.range(epoch + 1..);
        if later.into_iter().any(|(_, m)| m.iter().any(|(n, _)| *n == self.me)) {
            return;
        }
        self.reconfig.left = true;
        tracing::info!(epoch, "this node is no longer a member: it left");
        ctx.emit(&self.modules.consumer, Left { epoch });
    }
}

#[protocol(part = reconfig)]
impl Iss {
    /// upon NewMembership(b, M) from the application do memberships[b + offset] := M
    #[upon(event)]
    fn on_new_membership(&mut self, ctx: &mut Ctx<Self>, m: NewMembership) -> Handled {
        ensure!(
            self.policy_at.contains_key(&m.epoch) && m.epoch > self.reconfig.answered,
            "NewMembership at boundary {}, whose snapshot is not pending",
            m.epoch
        );
        if let Err(e) = check_membership(&m.members) {
            // The same at every correct node (the application is deterministic): ignored by all.
            ignore!("NewMembership at boundary {}: {e}", m.epoch);
        }
        let mut members = m.members;
        members.sort();
        let at = m.epoch + self.config.config_offset;
        tracing::info!(
            boundary = m.epoch,
            from_epoch = at,
            members = members.len(),
            "new membership"
        );
        self.reconfig.memberships.insert(at, members);
        let _ = ctx;
        Ok(())
    }
}
