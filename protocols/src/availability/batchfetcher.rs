//! The batch fetcher: ordered certificates in, ordered batches out.
//!
//! It sits between the orderer and the application. The orderer delivers certificates in order
//! ([`DeliverCert`]); the fetcher asks the availability instance of the current epoch for each
//! certificate's transactions, and emits [`NewOrderedBatch`] to the application **in the order
//! of the certificates**, even when the transactions come back in another order. Epoch and
//! checkpoint events ([`EpochStart`], [`SnapshotRequest`], [`RestoreState`]) take their place in
//! the same queue, so the application sees them between the same batches as the orderer did.
//!
//! ```text
//! upon ⟨DeliverCert | sn, cert⟩ do
//!     append a placeholder to the output queue
//!     if cert is empty: the placeholder holds the empty batch
//!     else: ⟨RequestTransactions | cert⟩ to availability/<epoch>; its answer fills the placeholder
//!           (an answer that the certificate is invalid fills it with the empty batch)
//! upon the queue's head is filled do
//!     pop it; for a batch: drop every tx whose (client, tx_no) was delivered (clientProgress.add)
//!     or lies outside the client's window, and trigger ⟨NewOrderedBatch | sn, the rest⟩
//! ```
//!
//! **Duplicates** are removed at output time, never when transactions arrive: arrival order
//! differs between nodes, output order does not, so every correct node removes the same ones.
//! When an [`EpochStart`] reaches the head of the queue, the client progress is
//! garbage-collected and sent to the mempool ([`mempool::NewEpoch`](super::mempool::NewEpoch)),
//! which prunes what was delivered and re-proposes the rest. A [`SnapshotRequest`] is forwarded
//! to the application and the client progress at that point goes to the checkpoint module
//! ([`ClientProgressSnapshot`]), so it becomes part of the checkpoint; [`RestoreState`] resets
//! the epoch, the progress and the queue, and sends the mempool the restored epoch and progress.
//!
//! **Invalid certificates.** The orderer is to deliver only verified certificates. If one is
//! malformed anyway (a faulty orderer, a bug), the availability instance answers that it is
//! invalid and the fetcher outputs an empty batch in its place and counts it
//! ([`BatchFetcher::invalid_certs`]): the check is deterministic, so every correct node does the
//! same, and the queue never waits for an answer that will not come.
//!
//! **Order of events.** The availability instance of an epoch must exist before the first
//! certificate of that epoch reaches the fetcher (create it before emitting [`EpochStart`]), and
//! must not be garbage-collected while the fetcher still waits for it: the factory drops local
//! events for instances it does not have, and the output queue would wait for ever.

use std::collections::VecDeque;

use mir_dsl::{fatal, protocol, Ctx, Handled};
use mir_runtime::stdevents::Init;
use mir_runtime::{payload, ModuleId};
use serde::{Deserialize, Serialize};

use super::mempool::NewEpoch;
use super::msc::{ProvideTransactions, RequestTransactions};
use super::{Cert, ClientProgress, Tx};

/// The orderer's decision: certificate `cert` is number `sn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverCert {
    /// The sequence number.
    pub sn: u64,
    /// The certificate (empty: an empty batch).
    pub cert: Cert,
}

/// To the application: batch number `sn`, duplicates removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrderedBatch {
    /// The sequence number.
    pub sn: u64,
    /// The transactions, in order, each delivered for the first time.
    pub txs: Vec<Tx>,
}

/// Epoch `epoch` starts (from the orderer; forwarded to the application in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    /// The epoch.
    pub epoch: u64,
}

/// The orderer asks for a snapshot of the state at this point (forwarded in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The epoch the snapshot is for.
    pub epoch: u64,
}

/// To the checkpoint module: the client progress at a [`SnapshotRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProgressSnapshot {
    /// The epoch of the snapshot.
    pub epoch: u64,
    /// What was delivered.
    pub client_progress: ClientProgress,
}

/// Restore from a checkpoint: epoch, client progress and the application's state (forwarded
/// to the application, which replaces its state with `app`; nothing it got before belongs to
/// the restored state, nothing after comes from before it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    /// The epoch the checkpoint starts.
    pub epoch: u64,
    /// What was delivered before it.
    pub client_progress: ClientProgress,
    /// The application's snapshot (what it answered to the checkpoint's `SnapshotRequest`).
    pub app: Vec<u8>,
}

payload!(
    DeliverCert = "batchfetcher.DeliverCert",
    NewOrderedBatch = "batchfetcher.NewOrderedBatch",
    EpochStart = "batchfetcher.EpochStart",
    SnapshotRequest = "batchfetcher.SnapshotRequest",
    ClientProgressSnapshot = "batchfetcher.ClientProgressSnapshot",
    RestoreState = "batchfetcher.RestoreState",
);

/// The modules the fetcher talks to.
#[derive(Debug, Clone)]
pub struct BatchFetcherModules {
    /// The availability factory: instance `<availability>/<epoch>` serves epoch `epoch`.
    pub availability: ModuleId,
    /// The mempool (gets the client progress at each epoch).
    pub mempool: ModuleId,
    /// The application (gets the ordered batches and the forwarded events).
    pub destination: ModuleId,
    /// The checkpoint module (gets the client progress at each snapshot), if any.
    pub checkpoint: Option<ModuleId>,
}

/// Filling output item `item`.
#[derive(Debug)]
pub struct Fill {
    item: u64,
}

enum Item {
    Batch { sn: u64, txs: Option<Vec<Tx>> },
    Epoch(EpochStart),
    Snapshot(SnapshotRequest),
}

/// The batch fetcher (a `#[protocol]`; wrap it in [`mir_dsl::DslModule`]).
pub struct BatchFetcher {
    modules: BatchFetcherModules,
    epoch: u64,
    progress: ClientProgress,
    queue: VecDeque<Item>,
    /// The number of the queue's head item.
    head: u64,
    duplicates: u64,
    invalid_certs: u64,
    client_window: u64,
}

impl BatchFetcher {
    /// A fetcher starting in epoch 0 with nothing delivered.
    pub fn new(modules: BatchFetcherModules) -> Self {
        BatchFetcher {
            modules,
            epoch: 0,
            progress: ClientProgress::default(),
            queue: VecDeque::new(),
            head: 0,
            duplicates: 0,
            invalid_certs: 0,
            client_window: u64::MAX,
        }
    }

    /// Drops, at delivery, transactions numbered at or above their client's low watermark plus
    /// `window` (use the mempool's `client_window`). Default: no limit.
    pub fn with_client_window(mut self, window: u64) -> Self {
        self.client_window = window;
        self
    }

    /// Transactions dropped as duplicates (or outside their client's window) so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Certificates the availability layer found invalid, output as empty batches.
    pub fn invalid_certs(&self) -> u64 {
        self.invalid_certs
    }

    /// The client progress so far.
    pub fn progress(&self) -> &ClientProgress {
        &self.progress
    }

    fn push(&mut self, item: Item) -> u64 {
        self.queue.push_back(item);
        self.head + self.queue.len() as u64 - 1
    }
}

#[protocol]
impl BatchFetcher {
    #[upon(event)]
    fn init(&mut self, _ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        Ok(())
    }

    /// upon ⟨DeliverCert | sn, cert⟩ do append a placeholder; fetch unless empty
    #[upon(event)]
    fn deliver_cert(&mut self, ctx: &mut Ctx<Self>, d: DeliverCert) -> Handled {
        if d.cert.is_empty() {
            self.push(Item::Batch { sn: d.sn, txs: Some(Vec::new()) });
            return Ok(());
        }
        let item = self.push(Item::Batch { sn: d.sn, txs: None });
        let instance = self.modules.availability.then(self.epoch);
        ctx.request(&instance, RequestTransactions::new(d.cert), Fill { item });
        Ok(())
    }

    /// … its answer fills the placeholder
    #[upon(response)]
    fn provided(&mut self, _ctx: &mut Ctx<Self>, p: ProvideTransactions, c: Fill) -> Handled {
        let Some(slot) = c.item.checked_sub(self.head).and_then(|i| self.queue.get_mut(i as usize))
        else {
            return Ok(()); // the queue was reset by a RestoreState meanwhile
        };
        let batch = match p.error {
            None => p.txs,
            Some(e) => {
                self.invalid_certs += 1;
                tracing::warn!(item = c.item, "certificate invalid, output as an empty batch: {e}");
                Vec::new()
            }
        };
        match slot {
            Item::Batch { txs, .. } if txs.is_none() => *txs = Some(batch),
            _ => fatal!("transactions for output item {} that waits for none", c.item),
        }
        Ok(())
    }

    /// upon ⟨EpochStart | e⟩ do queue it
    #[upon(event)]
    fn epoch_start(&mut self, _ctx: &mut Ctx<Self>, e: EpochStart) -> Handled {
        if e.epoch < self.epoch {
            fatal!("epoch {} after epoch {}", e.epoch, self.epoch);
        }
        self.epoch = e.epoch; // later certificates belong to the new epoch
        self.push(Item::Epoch(e));
        Ok(())
    }

    /// upon ⟨SnapshotRequest⟩ do queue it
    #[upon(event)]
    fn snapshot(&mut self, _ctx: &mut Ctx<Self>, s: SnapshotRequest) -> Handled {
        self.push(Item::Snapshot(s));
        Ok(())
    }

    /// upon ⟨RestoreState | e, progress⟩ do reset; tell the mempool; forward
    #[upon(event)]
    fn restore(&mut self, ctx: &mut Ctx<Self>, r: RestoreState) -> Handled {
        self.head += self.queue.len() as u64;
        self.queue.clear();
        self.epoch = r.epoch;
        self.progress = r.client_progress.clone();
        // The mempool starts the restored epoch with the restored progress.
        ctx.emit(
            &self.modules.mempool,
            NewEpoch { epoch: r.epoch, client_progress: r.client_progress.clone() },
        );
        ctx.emit(&self.modules.destination, r);
        Ok(())
    }

    /// upon the queue's head is filled do pop it and output it (duplicates removed)
    #[upon(condition)]
    fn output(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        loop {
            match self.queue.front() {
                Some(Item::Batch { txs: None, .. }) | None => return Ok(()),
                Some(_) => {}
            }
            let item = self.queue.pop_front().expect("front exists");
            self.head += 1;
            match item {
                Item::Batch { sn, txs } => {
                    let all = txs.expect("filled");
                    let before = all.len();
                    let window = self.client_window;
                    let progress = &mut self.progress;
                    let txs: Vec<Tx> = all
                        .into_iter()
                        .filter(|tx| {
                            // Outside the client's window: no correct mempool admits it, and
                            // remembering it would let a faulty proposer grow the progress.
                            tx.tx_no < progress.low_wm(&tx.client).saturating_add(window)
                                && progress.add(&tx.client, tx.tx_no)
                        })
                        .collect();
                    self.duplicates += (before - txs.len()) as u64;
                    ctx.emit(&self.modules.destination, NewOrderedBatch { sn, txs });
                }
                Item::Epoch(e) => {
                    self.progress.garbage_collect();
                    ctx.emit(
                        &self.modules.mempool,
                        NewEpoch { epoch: e.epoch, client_progress: self.progress.clone() },
                    );
                    ctx.emit(&self.modules.destination, e);
                }
                Item::Snapshot(s) => {
                    if let Some(cp) = self.modules.checkpoint.clone() {
                        ctx.emit(
                            &cp,
                            ClientProgressSnapshot {
                                epoch: s.epoch,
                                client_progress: self.progress.clone(),
                            },
                        );
                    }
                    ctx.emit(&self.modules.destination, s);
                }
            }
        }
    }
}
