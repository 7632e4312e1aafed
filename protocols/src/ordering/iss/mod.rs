//! # ISS: Insanely Scalable SMR
//!
//! Stathakopoulou, Pavlovic, Vukolić, "State Machine Replication Scalability Made Simple",
//! EuroSys 2022; spec `iss-spec.md` §1, §4, §5. ISS multiplexes sequenced-broadcast instances
//! ([`pbft`](super::pbft)) into one totally ordered log.
//!
//! ```text
//! upon Init do start epoch 0
//! start epoch e:
//!     Leaders(e) := the leader policy's leaders (sorted by ID)
//!     for each leader ℓ_i: create SB instance <orderer>/<e>.<i> for its segment (its sns,
//!         interleaved; its buckets; all members, view-change primaries rotated to start at ℓ_i)
//! upon SbDeliver(sn, value | ⊥) from an instance of the current epoch do log[sn] := value
//! upon log[next] exists do                                            (the log, in sn order)
//!     trigger OrderedEntry(epoch, next, log[next]); if ⊥: suspect the segment's leader
//!     next := next + 1
//!     if next is the first sn of epoch e+1 then
//!         trigger SnapshotRequest(e+1); create checkpoint instance <checkpoint>/<e+1>
//!         start epoch e+1
//! upon AppSnapshot / ClientProgressSnapshot for epoch e do forward it to <checkpoint>/<e>
//!     (the application's snapshot wrapped with the leader policy's state: checkpoints carry it)
//! upon StableCheckpoint(e) do trigger it; garbage-collect instances of epochs < e − retained
//! upon Init, and when the log is stuck do fetch a newer stable checkpoint  (see [`transfer`])
//! upon Init after a lost disk do rejoin: act in no epoch before the members' reach + 2
//!     (see [`rejoin`]; after a crash with the disk kept, [`recovery`])
//! upon ProposalUnused, Suspect do count them (the mempool re-proposes; suspects are local)
//! upon EquivocationEvidence do trigger it
//! upon NewMembership(b, M) from the application do the membership from epoch b + offset is M
//!     (see [`reconfig`]: joining, leaving, who signs a checkpoint)
//! ```
//!
//! Only the log's ⊥ entries feed the leader policy: they are the same at every correct node.
//! (PBFT's `Suspect` events are one node's observation and would make leader lists diverge.)
//!
//! **Buckets** ([`Mode::Bucketed`], the paper's design): each segment proposes only requests of
//! its buckets; the availability layer's signers check them and sign the bucket list, and
//! followers refuse a certificate naming other buckets. [`Mode::Redundant`] (Trantor) lets any
//! leader propose anything; the batch fetcher removes duplicates at delivery.
//!
//! Built so far: [`epoch`] (layout, buckets), [`leaders`] (policies), [`transfer`] (state
//! transfer: a node behind fetches a stable checkpoint and its state), the module below (epochs,
//! the log, leader selection, checkpoints at epoch ends, garbage collection) and [`add_to`] (a
//! whole node over the availability layer). The factories cancel the timers of the instances
//! ISS garbage-collects (`Factory::cancel_timers_at`).

pub mod epoch;
pub mod leaders;
pub mod reconfig;
pub mod recovery;
pub mod rejoin;
pub mod transfer;

use std::collections::BTreeMap;
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::stdevents::{GarbageCollect, NewSubmodule};
use serde::{Deserialize, Serialize};

use self::epoch::EpochLayout;
use self::leaders::{LeaderPolicy, LeaderSelection};
use super::checkpoint::{AppSnapshot, CheckpointInstance, StableCheckpoint};
use super::{
    EquivocationEvidence, ProposalUnused, SbDeliver, SbInstance, Segment, Sn, Source, Suspect,
    Validator,
};
use crate::availability::batchfetcher::{
    ClientProgressSnapshot, DeliverCert, EpochStart, SnapshotRequest,
};
use crate::availability::msc::MscInstance;
use crate::availability::{Buckets, Cert};

/// ISS → consumer: the log entry `sn` (of `epoch`), in `sn` order; `None` is ⊥.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderedEntry {
    /// The epoch.
    pub epoch: u64,
    /// The sequence number.
    pub sn: Sn,
    /// The value, or ⊥.
    pub value: Option<Vec<u8>>,
}

/// ISS → consumer: epoch `epoch` starts at `first_sn` with these leaders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStarted {
    /// The epoch.
    pub epoch: u64,
    /// Its first sequence number.
    pub first_sn: Sn,
    /// Its leaders, sorted.
    pub leaders: Vec<NodeId>,
}

/// What a checkpoint of ISS snapshots: the application's state and the leader policy's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssSnapshot {
    /// The leader policy's state at the epoch's start.
    pub leader_selection: LeaderSelection,
    /// The application's snapshot.
    pub app: Vec<u8>,
    /// Memberships decided for later epochs, by the epoch they take effect in ([`reconfig`]).
    pub memberships: Vec<(u64, Vec<(NodeId, Weight)>)>,
    /// The number of buckets (fixed for the deployment's life).
    pub buckets: u64,
}

payload!(
    OrderedEntry = "iss.OrderedEntry",
    EpochStarted = "iss.EpochStarted",
    IssSnapshot = "iss.Snapshot",
);

/// Settings of ISS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssConfig {
    /// Sequence numbers per segment. Default 4 (Trantor's).
    pub segment_length: u64,
    /// Buckets of the request space; `None`: 16 per member (the paper's experiments).
    pub buckets: Option<u64>,
    /// The leader policy. Default simple.
    pub leader_policy: LeaderPolicy,
    /// Epochs whose instances are kept after a stable checkpoint, so that lagging nodes can
    /// still catch up from this one. Default 1.
    pub retained_epochs: u64,
    /// Bucketed (the paper: a leader proposes only requests of its buckets) or redundant
    /// (Trantor: any leader proposes anything; duplicates are removed after ordering). Default
    /// bucketed.
    pub mode: Mode,
    /// A node whose log did not move for this long asks the members for a newer stable
    /// checkpoint ([`transfer`]). Default 1 s.
    pub catch_up_period: Duration,
    /// This node lost its disk after it took part ("amnesia"): it first learns how far the
    /// members have gone and acts in no epoch it may have acted in before ([`rejoin`]). Ignored
    /// when the WAL holds a checkpoint (the disk was not lost). Default false.
    pub rejoin: bool,
    /// A membership the application decides at the boundary of epoch b takes effect in epoch
    /// b + `config_offset` ([`reconfig`]); at least 1. Default 2 (Mir's), so that transports
    /// connect to new members for a whole epoch before they take part.
    pub config_offset: u64,
}

/// How requests are split among the leaders of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Each segment proposes only requests of its buckets (no request is ordered twice).
    #[default]
    Bucketed,
    /// Every segment may propose any request (Trantor); the batch fetcher removes duplicates.
    Redundant,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bucketed" => Ok(Mode::Bucketed),
            "redundant" => Ok(Mode::Redundant),
            other => Err(format!("unknown mode {other:?} (expected bucketed or redundant)")),
        }
    }
}

impl Default for IssConfig {
    fn default() -> Self {
        IssConfig {
            segment_length: 4,
            buckets: None,
            leader_policy: LeaderPolicy::Simple,
            retained_epochs: 1,
            mode: Mode::Bucketed,
            catch_up_period: Duration::from_secs(1),
            rejoin: false,
            config_offset: 2,
        }
    }
}

/// The modules ISS talks to.
#[derive(Debug, Clone)]
pub struct IssModules {
    /// The SB (PBFT) factory.
    pub orderer: ModuleId,
    /// The checkpoint factory.
    pub checkpoint: ModuleId,
    /// The PBFT factory of the checkpoint agreement instances (garbage-collected with the
    /// epochs).
    pub agreement: ModuleId,
    /// Where [`OrderedEntry`], [`EpochStarted`], `StableCheckpoint` (and `SnapshotRequest`
    /// without a batch fetcher) go.
    pub consumer: ModuleId,
    /// The availability layer's multisig-collector factory, if proposals are availability
    /// certificates: ISS creates its instance of each epoch (`<availability>/<epoch>`), and the
    /// SB instances of the epoch take their proposals from it and verify them with it.
    pub availability: Option<ModuleId>,
    /// The availability layer's batch database, if any: garbage-collected with the epochs
    /// (the batches of epochs before the retained ones go; without this it fills up, refuses to
    /// store, and its node stops vouching for batches).
    pub batchdb: Option<ModuleId>,
    /// The availability layer's batch fetcher, if any: it gets `EpochStart`, one `DeliverCert`
    /// per log entry (⊥: the empty certificate), `SnapshotRequest` and `RestoreState`, in log
    /// order.
    pub batchfetcher: Option<ModuleId>,
    /// The transport (state transfer).
    pub net: ModuleId,
    /// The crypto module (checking a transferred checkpoint's signatures).
    pub crypto: ModuleId,
    /// The hasher (checking a transferred state against its checkpoint).
    pub hasher: ModuleId,
    /// The timer (the catch-up period).
    pub timer: ModuleId,
    /// The write-ahead log, if any ([`recovery`]): ISS logs its stable checkpoints' state there
    /// and truncates it, and starts from what it recovers.
    pub wal: Option<ModuleId>,
}

/// The ISS module of one node.
pub struct Iss {
    modules: IssModules,
    config: IssConfig,
    me: NodeId,
    membership: Vec<(NodeId, Weight)>,
    // State.
    leaders: LeaderSelection,
    /// The current epoch's layout.
    layout: EpochLayout,
    /// Decided entries not delivered yet (sns of the current epoch).
    log: BTreeMap<Sn, Option<Vec<u8>>>,
    /// The next sn to deliver.
    next: Sn,
    /// The leader policy's state when each not-yet-checkpointed epoch started.
    policy_at: BTreeMap<u64, LeaderSelection>,
    /// The last stable checkpoint.
    stable: Option<StableCheckpoint>,
    /// Proposals that came after their view 0, and local suspicions (statistics).
    unused: u64,
    suspicions: u64,
    /// State transfer ([`transfer`]).
    transfer: transfer::Transfer,
    /// Crash recovery ([`recovery`]).
    recovery: recovery::Recovery,
    /// Reconfiguration ([`reconfig`]).
    reconfig: reconfig::Reconfig,
}

impl Iss {
    /// Garbage-collects every module that keeps something per epoch: instances and batches of
    /// epochs before `retention_index` go.
    pub(crate) fn collect_garbage(&self, ctx: &mut Ctx<Self>, retention_index: u64) {
        let gc = GarbageCollect { retention_index };
        let m = &self.modules;
        let optional = [&m.availability, &m.batchdb];
        for to in [&m.orderer, &m.checkpoint, &m.agreement]
            .into_iter()
            .chain(optional.into_iter().flatten())
        {
            ctx.emit(to, gc.clone());
        }
    }

    /// ISS of node `me` over `membership` (distinct members, positive weights). Errors for a
    /// bad setting. A node outside `membership` is one that joins later ([`reconfig`]): it
    /// trusts `membership` to certify the first checkpoint it fetches, and waits until a
    /// membership includes it.
    pub fn new(
        modules: IssModules,
        config: IssConfig,
        me: NodeId,
        mut membership: Vec<(NodeId, Weight)>,
    ) -> Result<Self, String> {
        reconfig::check_membership(&membership)?;
        membership.sort();
        if config.config_offset == 0 {
            return Err("config_offset must be at least 1".into());
        }
        if config.catch_up_period.is_zero() {
            return Err("catch_up_period must be positive".into());
        }
        if config.rejoin && membership.len() < 2 {
            return Err("rejoin needs other members to ask (the membership has one)".into());
        }
        let buckets = config.buckets.unwrap_or(16 * membership.len() as u64);
        let leaders = LeaderSelection::new(config.leader_policy, membership.clone());
        let layout = EpochLayout::new(0, 0, leaders.leaders(0), config.segment_length, buckets)?;
        Ok(Iss {
            modules,
            config,
            me,
            membership: membership.clone(),
            leaders,
            layout,
            log: BTreeMap::new(),
            next: 0,
            policy_at: BTreeMap::new(),
            stable: None,
            unused: 0,
            suspicions: 0,
            transfer: transfer::Transfer::default(),
            recovery: recovery::Recovery::default(),
            reconfig: reconfig::Reconfig {
                memberships: BTreeMap::from([(0, membership)]),
                ..reconfig::Reconfig::default()
            },
        })
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.layout.epoch
    }

    /// Proposals that came after their view 0 (their requests stay in the mempool), and
    /// suspicions SB instances reported (invalid proposals), so far.
    pub fn stats(&self) -> (u64, u64) {
        (self.unused, self.suspicions)
    }

    /// The SB instance of segment `i` of `epoch`.
    pub fn instance(&self, epoch: u64, i: usize) -> ModuleId {
        self.modules.orderer.then(format!("{epoch}.{i}"))
    }

    /// The epoch and segment of an SB instance of this ISS, from its module ID.
    fn instance_of(&self, id: &ModuleId) -> Option<(u64, usize)> {
        let rest = id.as_str().strip_prefix(self.modules.orderer.as_str())?.strip_prefix('/')?;
        let (e, i) = rest.split_once('.')?;
        Some((e.parse().ok()?, i.parse().ok()?))
    }

    /// start epoch e: create an SB instance per leader's segment
    fn start_epoch(&mut self, ctx: &mut Ctx<Self>) {
        let e = self.layout.epoch;
        self.policy_at.insert(e, self.leaders.clone());
        if !self.am_member() {
            // Not a member of this epoch: no instance; a stable checkpoint of a later epoch
            // (state transfer) takes this node on ([`reconfig`]).
            tracing::info!(epoch = e, "not a member of this epoch: waiting for a later one");
            return;
        }
        self.mark_took_part(ctx);
        // The epoch's availability instance first: the batch fetcher and the SB instances use it.
        let availability = self.modules.availability.as_ref().map(|factory| {
            let instance = factory.then(e);
            let params = MscInstance { epoch: e, membership: self.membership.clone() };
            let new =
                NewSubmodule { id: instance.clone(), params: params.into(), retention_index: e };
            ctx.emit(factory, new);
            instance
        });
        if let Some(fetcher) = &self.modules.batchfetcher {
            ctx.emit(fetcher, EpochStart { epoch: e });
        }
        for (i, leader) in self.layout.leaders.clone().into_iter().enumerate() {
            let mut segment =
                Segment::new(leader.clone(), self.membership.clone(), self.layout.segment_sns(i));
            segment.buckets = match self.config.mode {
                Mode::Bucketed => Some(Buckets {
                    count: self.layout.buckets,
                    mine: self.layout.segment_buckets(i),
                }),
                Mode::Redundant => None,
            };
            let mut instance = SbInstance::new(segment);
            if let Some(a) = &availability {
                instance.source = Some(Source::Availability(a.clone()));
                instance.validator = Some(Validator::Availability(a.clone()));
            }
            let id = self.instance(e, i);
            instance.retention = e;
            instance.recovered = self.take_recovered(&id);
            let new = NewSubmodule { id, params: instance.into(), retention_index: e };
            ctx.emit(&self.modules.orderer, new);
        }
        let started = EpochStarted {
            epoch: e,
            first_sn: self.layout.first_sn,
            leaders: self.layout.leaders.clone(),
        };
        ctx.emit(&self.modules.consumer, started);
    }

    /// upon log[next] exists do deliver it (and end the epoch after its last sn)
    fn deliver(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        while let Some(value) = self.log.remove(&self.next) {
            let (epoch, sn) = (self.layout.epoch, self.next);
            if value.is_none() {
                let Some(leader) = self.layout.leader_of(sn).cloned() else {
                    fatal!("sn {sn} outside epoch {epoch}")
                };
                let _counted = self.leaders.suspect(epoch, &leader);
            }
            if let Some(fetcher) = &self.modules.batchfetcher {
                // A committed value was validated by correct nodes, so it decodes; ⊥ (or
                // anything else) is the empty batch.
                let cert =
                    value.as_deref().and_then(|v| Cert::from_bytes(v).ok()).unwrap_or_default();
                ctx.emit(fetcher, DeliverCert { sn, cert });
            }
            ctx.emit(&self.modules.consumer, OrderedEntry { epoch, sn, value });
            self.next += 1;
            if self.next == self.layout.next_first_sn() {
                self.end_epoch(ctx)?;
            }
        }
        Ok(())
    }

    /// next is the first sn of epoch e+1: checkpoint, then start epoch e+1
    fn end_epoch(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        let e = self.layout.epoch + 1;
        let first_sn = self.next;
        let agreement = self.modules.agreement.then(e);
        let params = CheckpointInstance {
            epoch: e,
            first_sn,
            membership: self.membership.clone(),
            recovered_agreement: self.take_recovered(&agreement),
        };
        let new = NewSubmodule {
            id: self.modules.checkpoint.then(e),
            params: params.into(),
            retention_index: e,
        };
        ctx.emit(&self.modules.checkpoint, new);
        // Through the batch fetcher, if any, so that the snapshot sits between the same batches
        // at every node (it answers with the client progress, to this module).
        let to = self.modules.batchfetcher.as_ref().unwrap_or(&self.modules.consumer);
        ctx.emit(to, SnapshotRequest { epoch: e });
        if self.must_wait(e) {
            // The application's decision at boundary e − offset is not known yet.
            self.reconfig.deferred = Some((e, first_sn));
            return Ok(());
        }
        self.enter_epoch(ctx, e, first_sn)
    }
}

/// Settings of a whole ISS node ([`add_to`]).
#[derive(Debug, Clone, Default)]
pub struct NodeSettings {
    /// ISS's.
    pub iss: IssConfig,
    /// The PBFT instances' (segments and checkpoint agreement).
    pub pbft: super::pbft::PbftConfig,
    /// The checkpoint instances'.
    pub checkpoint: super::checkpoint::CheckpointConfig,
    /// The availability layer's; its `destination` is the application module (default `app`),
    /// its `checkpoint` is set to `iss`.
    pub availability: crate::availability::Config,
}

/// The module names [`add_to`] uses (besides the availability layer's,
/// [`availability::names`](crate::availability::names)).
pub mod names {
    /// ISS.
    pub const ISS: &str = "iss";
    /// The PBFT factory of the segments' instances (`ordering/<epoch>.<segment>`).
    pub const ORDERING: &str = "ordering";
    /// The checkpoint factory (`checkpoint/<epoch>`).
    pub const CHECKPOINT: &str = "checkpoint";
    /// The PBFT factory of the checkpoint agreement instances (`chkp-agreement/<epoch>`).
    pub const AGREEMENT: &str = "chkp-agreement";
    /// The write-ahead log ([`add_to_with_wal`](super::add_to_with_wal)).
    pub const WAL: &str = "wal";
}

/// Adds ISS over the availability layer to a node: the availability layer
/// ([`availability::add_to`](crate::availability::add_to)), the PBFT factory, the checkpoint
/// factories and ISS itself. The node must also have `net`, `crypto`, `timer` and the
/// application (`settings.availability.destination`, default `app`), which gets
/// `NewOrderedBatch`, `SnapshotRequest` (answer with an `AppSnapshot` to `iss`),
/// `EpochStarted`, `OrderedEntry` and `StableCheckpoint`.
///
/// Errors for invalid settings.
pub fn add_to(
    builder: mir_runtime::NodeBuilder,
    me: NodeId,
    membership: Vec<(NodeId, Weight)>,
    settings: &NodeSettings,
) -> Result<mir_runtime::NodeBuilder, String> {
    add(builder, me, membership, settings, None)
}

/// [`add_to`] with crash recovery: `wal` (its recovered records sent to
/// [`names::ISS`]) is registered as [`names::WAL`] on a worker thread; the PBFT instances log
/// what they send before sending it, ISS logs its stable checkpoints and truncates the WAL, and
/// a node built again on the same disk starts from what it logged (`docs/recovery.md`).
///
/// ```
/// use mir_runtime::{wal::{disk::SimDisk, Wal}, ModuleId, NodeBuilder, NodeId};
/// use protocols::ordering::iss::{add_to_with_wal, names, NodeSettings};
/// let members: Vec<_> = (0..4).map(|i| (NodeId::from_index(i), 1)).collect();
/// let wal = Wal::new(SimDisk::new(1), ModuleId::new(names::ISS));
/// let b = NodeBuilder::new(NodeId::from_index(0));
/// assert!(add_to_with_wal(b, NodeId::from_index(0), members.clone(), &NodeSettings::default(), wal).is_ok());
/// let wrong = Wal::new(SimDisk::new(1), ModuleId::new("app"));
/// let b = NodeBuilder::new(NodeId::from_index(0));
/// let err = add_to_with_wal(b, NodeId::from_index(0), members, &NodeSettings::default(), wrong);
/// assert!(err.unwrap_err().contains("iss"));
/// ```
pub fn add_to_with_wal(
    builder: mir_runtime::NodeBuilder,
    me: NodeId,
    membership: Vec<(NodeId, Weight)>,
    settings: &NodeSettings,
    wal: mir_runtime::wal::Wal,
) -> Result<mir_runtime::NodeBuilder, String> {
    if wal.replay_to().as_str() != names::ISS {
        return Err(format!(
            "the WAL sends what it recovers to {}; it must be {}",
            wal.replay_to(),
            names::ISS
        ));
    }
    add(builder, me, membership, settings, Some(wal))
}

fn add(
    builder: mir_runtime::NodeBuilder,
    me: NodeId,
    membership: Vec<(NodeId, Weight)>,
    settings: &NodeSettings,
    wal: Option<mir_runtime::wal::Wal>,
) -> Result<mir_runtime::NodeBuilder, String> {
    use crate::availability::names as a;
    let wal_id = wal.as_ref().map(|_| ModuleId::new(names::WAL));
    use crate::ordering::{checkpoint, pbft};
    let id = ModuleId::new;
    let app = settings.availability.destination.clone().unwrap_or_else(|| "app".into());
    let app = ModuleId::try_new(&app).map_err(|e| format!("availability destination: {e}"))?;
    settings.pbft.validate().map_err(|e| format!("pbft: {e}"))?;
    // Source and validator: set per instance by ISS (the epoch's availability instance).
    let pbft_modules = pbft::PbftModules {
        wal: wal_id.clone(),
        net: id(a::NET),
        crypto: id(a::CRYPTO),
        timer: id(a::TIMER),
        consumer: id(names::ISS),
        source: Source::FixedOnly,
        validator: Validator::AcceptAll,
    };
    let chkp_modules = checkpoint::CheckpointModules {
        net: id(a::NET),
        crypto: id(a::CRYPTO),
        hasher: id(a::HASHER),
        timer: id(a::TIMER),
        agreement: id(names::AGREEMENT),
        consumer: id(names::ISS),
    };
    let iss_modules = IssModules {
        orderer: id(names::ORDERING),
        checkpoint: id(names::CHECKPOINT),
        agreement: id(names::AGREEMENT),
        consumer: app.clone(),
        availability: Some(id(a::AVAILABILITY)),
        batchdb: Some(id(a::BATCHDB)),
        batchfetcher: Some(id(a::BATCHFETCHER)),
        net: id(a::NET),
        crypto: id(a::CRYPTO),
        hasher: id(a::HASHER),
        timer: id(a::TIMER),
        wal: wal_id.clone(),
    };
    let iss = Iss::new(iss_modules, settings.iss.clone(), me.clone(), membership)?;
    let mut availability = settings.availability.clone();
    availability.destination = Some(app.to_string());
    availability.checkpoint = Some(names::ISS.into());
    availability.wal = wal_id.as_ref().map(|w| w.to_string());
    let builder = crate::availability::add_to(builder, me.clone(), &availability)?;
    let agreement = checkpoint::agreement_factory_logged(
        id(a::NET),
        id(a::CRYPTO),
        id(a::TIMER),
        wal_id,
        settings.pbft.clone(),
        me.clone(),
    );
    let builder = match wal {
        Some(wal) => builder.passive_on_worker(names::WAL, wal),
        None => builder,
    };
    Ok(builder
        .passive(names::ORDERING, pbft::factory(pbft_modules, settings.pbft.clone(), me.clone()))
        .passive(
            names::CHECKPOINT,
            checkpoint::factory(chkp_modules, settings.checkpoint.clone(), me),
        )
        .passive(names::AGREEMENT, agreement)
        .passive(names::ISS, mir_dsl::DslModule::new(iss)))
}

/// Register an [`Iss`] (e.g. as `iss`) next to the PBFT factory
/// ([`pbft::factory`](super::pbft::factory), its consumer `iss`) and the checkpoint factories
/// ([`checkpoint::factory`](super::checkpoint::factory), its consumer `iss`, and
/// [`checkpoint::agreement_factory`](super::checkpoint::agreement_factory));
/// `protocols/tests/iss.rs` shows a whole node.
#[protocol(parts(transfer, recovery, rejoin, reconfig))]
impl Iss {
    /// upon Init do start epoch 0; ask for a newer stable checkpoint (this node may have
    /// restarted), and again every catch-up period in which the log does not move
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
        let (timer, period) = (self.modules.timer.clone(), self.config.catch_up_period);
        let _periodic = ctx.every(&timer, period, transfer::CatchUpTick);
        if self.modules.wal.is_some() {
            self.recovery.waiting = true; // starts with what the WAL recovers
            return Ok(());
        }
        if self.config.rejoin {
            self.begin_rejoin(ctx);
            return Ok(());
        }
        self.start_epoch(ctx);
        self.request_state(ctx);
        Ok(())
    }

    /// upon SbDeliver(sn, value | ⊥) from an instance of the current epoch do log[sn] := value
    #[upon(event)]
    fn on_sb_deliver(&mut self, ctx: &mut Ctx<Self>, d: SbDeliver) -> Handled {
        let source = ctx.source().clone();
        let Some((e, i)) = self.instance_of(&source) else {
            fatal!("SbDeliver from {source}, not an instance of this ISS")
        };
        // A late delivery of an earlier epoch (a retained instance catching up): done with.
        ensure!(e == self.layout.epoch, "SbDeliver of epoch {e} in epoch {}", self.layout.epoch);
        let Some(expected) = self.layout.leaders.get(i) else {
            fatal!("SbDeliver from segment {i} of epoch {e}, which has no such segment")
        };
        if self.layout.leader_of(d.sn) != Some(expected) {
            fatal!("instance {source} delivered sn {}, not in its segment", d.sn);
        }
        if d.sn >= self.next {
            self.log.entry(d.sn).or_insert(d.value);
        }
        self.deliver(ctx)
    }

    /// A segment's value that came after its view 0 (it is not lost: the mempool proposes
    /// again what was not ordered when the next epoch starts).
    #[upon(event)]
    fn on_unused(&mut self, _ctx: &mut Ctx<Self>, u: ProposalUnused) -> Handled {
        self.unused += 1;
        tracing::debug!(
            sn = u.sn,
            "a proposal came after its view; its requests stay in the mempool"
        );
        Ok(())
    }

    /// A node suspected by one SB instance (an invalid proposal). Counted, not fed to the leader
    /// policy: only the log's ⊥ entries are the same at every node.
    #[upon(event)]
    fn on_suspect(&mut self, _ctx: &mut Ctx<Self>, s: Suspect) -> Handled {
        self.suspicions += 1;
        tracing::info!(node = %s.node, reason = %s.reason, "suspect");
        Ok(())
    }

    /// Proof that a node signed two commits for one sn and view: for the application.
    #[upon(event)]
    fn on_evidence(&mut self, ctx: &mut Ctx<Self>, e: EquivocationEvidence) -> Handled {
        tracing::warn!(node = %e.node, sn = e.first.sn, view = e.first.view, "equivocation evidence");
        ctx.emit(&self.modules.consumer, e);
        Ok(())
    }

    /// upon AppSnapshot for epoch e do forward it, with the leader policy's state, to the
    /// checkpoint instance of e
    #[upon(event)]
    fn on_app_snapshot(&mut self, ctx: &mut Ctx<Self>, s: AppSnapshot) -> Handled {
        let Some(policy) = self.policy_at.get(&s.epoch).cloned() else {
            ignore!("a snapshot for epoch {}, which has no checkpoint pending", s.epoch)
        };
        ensure!(
            self.transfer.own.get(&s.epoch).is_none_or(|o| o.snapshot.is_none()),
            "a second snapshot for epoch {}",
            s.epoch
        );
        let snapshot = IssSnapshot {
            leader_selection: policy,
            app: s.data,
            memberships: self.decided_after(s.epoch),
            buckets: self.layout.buckets,
        };
        let data = mir_runtime::codec::encode(&snapshot);
        self.transfer.own.entry(s.epoch).or_default().snapshot = Some(data.clone());
        self.reconfig.answered = self.reconfig.answered.max(s.epoch);
        self.update_serving(ctx);
        let dest = self.modules.checkpoint.then(s.epoch);
        ctx.emit(&dest, AppSnapshot { epoch: s.epoch, data });
        if let Some((e, first_sn)) = self.reconfig.deferred {
            if !self.must_wait(e) {
                self.reconfig.deferred = None;
                self.enter_epoch(ctx, e, first_sn)?;
            }
        }
        Ok(())
    }

    /// upon ClientProgressSnapshot for epoch e do forward it to the checkpoint instance of e
    #[upon(event)]
    fn on_progress(&mut self, ctx: &mut Ctx<Self>, s: ClientProgressSnapshot) -> Handled {
        // (An epoch deferred for the application's decision has its checkpoint instance already;
        // the batch fetcher may answer before the application does.)
        let deferred = self.reconfig.deferred.is_some_and(|(e, _)| e == s.epoch);
        ensure!(
            self.policy_at.contains_key(&s.epoch) || deferred,
            "client progress for epoch {}",
            s.epoch
        );
        let own = self.transfer.own.entry(s.epoch).or_default();
        ensure!(own.progress.is_none(), "a second client progress for epoch {}", s.epoch);
        own.progress = Some(s.client_progress.clone());
        self.update_serving(ctx);
        ctx.emit(&self.modules.checkpoint.then(s.epoch), s);
        Ok(())
    }

    /// upon StableCheckpoint(e) do trigger it; garbage-collect epochs < e − retained
    #[upon(event)]
    fn on_stable(&mut self, ctx: &mut Ctx<Self>, c: StableCheckpoint) -> Handled {
        if self.stable.as_ref().is_some_and(|s| s.epoch >= c.epoch) {
            ignore!("a stable checkpoint of epoch {}, not newer", c.epoch);
        }
        let keep = c.epoch.saturating_sub(self.config.retained_epochs);
        self.policy_at = self.policy_at.split_off(&c.epoch);
        self.transfer.own = self.transfer.own.split_off(&c.epoch);
        self.collect_garbage(ctx, keep);
        self.stable = Some(c.clone());
        self.forget_memberships(c.epoch);
        self.update_serving(ctx);
        let epoch = c.epoch;
        ctx.emit(&self.modules.consumer, c);
        self.maybe_leave(ctx, epoch);
        Ok(())
    }
}
