//! ISS crash recovery from the write-ahead log (`docs/recovery.md`).
//!
//! ```text
//! upon a stable checkpoint C whose state this node holds (its own, or transferred) do
//!     log STATE(C, snapshot, progress) at retention C.epoch (and TOOK-PART if this node took
//!     part, see [`reconfig`](super::reconfig)); truncate the WAL below C.epoch
//! upon Init with a WAL do wait for WalRecovered (nothing else starts before it)
//! upon WalRecovered(records) do
//!     keep each SB and agreement instance's records, to create it with them; hand every other
//!     module's records (the batch database's) back to it
//!     if a STATE was logged: restore the newest (as a state transfer does, without the checks:
//!         this node verified it before logging it) else start epoch 0
//!     send STATE-REQUEST(epoch) (peers may be ahead)
//!     (if no STATE was logged but a REJOINING mark was, or rejoin is set: rejoin instead,
//!     see [`rejoin`](super::rejoin))
//! ```
//!
//! The SB instances ([`crate::ordering::pbft::recovery`]) logged every binding
//! message they sent before sending it; an instance created again gets its records and never
//! contradicts them. Checkpoint instances log nothing: what they sign is the hash of the state at
//! the epoch's start, a function of the delivered log, which recovery delivers again the same.

use mir_dsl::prelude::*;
use mir_runtime::wal::{WalRecovered, WalTruncate};

use super::rejoin::{Rejoin, Rejoining};
use super::transfer::StateResponse;
use super::{Iss, IssSnapshot};
use crate::ordering::pbft;

impl Iss {
    /// The records an instance logged before this node restarted (taken: given once).
    pub(crate) fn take_recovered(&mut self, id: &ModuleId) -> Vec<pbft::Sent> {
        self.recovery.records.remove(id).unwrap_or_default()
    }

    /// Logs the state of the stable checkpoint this node serves, and truncates the WAL below it.
    pub(crate) fn log_checkpoint(&mut self, ctx: &mut Ctx<Self>) {
        let Some(wal) = self.modules.wal.clone() else { return };
        let Some(state) = &self.transfer.serving else { return };
        let epoch = state.checkpoint.epoch;
        if self.recovery.logged.is_some_and(|e| e >= epoch) {
            return;
        }
        self.recovery.logged = Some(epoch);
        ctx.persist(Some(&wal), epoch, state.clone()).then_nothing();
        if self.reconfig.took_part {
            ctx.persist(Some(&wal), epoch, super::reconfig::TookPart).then_nothing();
        }
        ctx.emit(&wal, WalTruncate { retention_index: epoch });
    }

    /// Whether this node waits for its WAL before starting.
    pub(crate) fn waiting_for_wal(&self) -> bool {
        self.recovery.waiting
    }
}

/// What ISS keeps for recovery.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Waiting for [`WalRecovered`].
    pub(crate) waiting: bool,
    /// Records of instances not created yet, by instance.
    pub(crate) records: std::collections::BTreeMap<ModuleId, Vec<pbft::Sent>>,
    /// The epoch of the last checkpoint state logged.
    pub(crate) logged: Option<u64>,
    /// Records recovered at the start (statistics).
    pub(crate) recovered: usize,
    /// A rejoin after a lost disk ([`rejoin`](super::rejoin)).
    pub(crate) rejoin: Rejoin,
}

#[protocol(part = recovery)]
impl Iss {
    /// upon WalRecovered(records) do restore the newest logged checkpoint (or start epoch 0),
    /// keeping each instance's records for its creation; ask peers for newer state
    #[upon(event)]
    fn on_wal_recovered(&mut self, ctx: &mut Ctx<Self>, r: WalRecovered) -> Handled {
        ensure!(self.recovery.waiting, "WalRecovered after the start");
        self.recovery.waiting = false;
        self.recovery.recovered = r.records.len();
        let me = ctx.me().clone();
        let mut newest: Option<StateResponse> = None;
        let mut marked = false;
        for ev in r.records {
            if ev.dest == me {
                if let Ok(Some(Rejoining)) = ev.payload.decode::<Rejoining>() {
                    marked = true;
                    continue;
                }
                if let Ok(Some(super::reconfig::TookPart)) = ev.payload.decode() {
                    self.reconfig.took_part = true;
                    continue;
                }
                match ev.payload.decode::<StateResponse>() {
                    Ok(Some(s)) => {
                        if newest.as_ref().is_none_or(|n| n.checkpoint.epoch < s.checkpoint.epoch) {
                            newest = Some(s);
                        }
                    }
                    _ => {
                        fatal!("a WAL record of ISS that is neither a checkpoint state nor a mark")
                    }
                }
                continue;
            }
            let instance = |f: &ModuleId| ev.dest.as_str().starts_with(&format!("{f}/"));
            if instance(&self.modules.orderer) || instance(&self.modules.agreement) {
                match ev.payload.decode::<pbft::Sent>() {
                    Ok(Some(s)) => self.recovery.records.entry(ev.dest).or_default().push(s),
                    _ => fatal!("a WAL record for {} that is not a PBFT record", ev.dest),
                }
            } else {
                // Another module's (the batch database's): handed back as it was logged,
                // before anything else this module sends.
                ctx.emit(&ev.dest, ev.payload);
            }
        }
        tracing::info!(
            records = self.recovery.recovered,
            checkpoint = newest.as_ref().map(|s| s.checkpoint.epoch),
            "recovered from the WAL"
        );
        match newest {
            Some(state) => {
                let snapshot: IssSnapshot =
                    match mir_runtime::codec::decode("iss.Snapshot", &state.snapshot) {
                        Ok(s) => s,
                        Err(e) => fatal!("the logged checkpoint's snapshot does not decode: {e}"),
                    };
                self.recovery.logged = Some(state.checkpoint.epoch);
                self.restore_logged(ctx, state, snapshot)?;
            }
            // A lost disk (the operator says so), or a rejoin a crash interrupted.
            None if self.config.rejoin || marked => {
                self.begin_rejoin(ctx);
                return Ok(());
            }
            None => self.start_epoch(ctx),
        }
        if self.config.rejoin {
            tracing::info!("rejoin asked for, but the WAL holds a checkpoint: a plain restart");
        }
        self.request_state(ctx);
        Ok(())
    }
}
