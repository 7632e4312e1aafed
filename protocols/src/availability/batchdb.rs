//! The batch database: batches by ID, kept until their retention index is garbage-collected.
//!
//! In memory, like Mir's `fakebatchdb`. A batch stored twice keeps the highest retention index it
//! was stored with; [`GarbageCollect`] `{ retention_index: r }` removes every batch whose highest
//! retention index is below `r`. A store below `r` is not kept (it would be removed at once) and
//! its answer says so: [`BatchStored::error`] is `None` only when the batch is in the database,
//! so a signer never vouches for a batch it does not hold.
//!
//! The database holds at most `capacity_bytes` (by [`Tx::size`](super::Tx::size); default
//! [`DEFAULT_CAPACITY_BYTES`]): a new batch that does not fit is refused with an error, never
//! stored. Signers bound what each source can make them store per epoch
//! ([`MscParams::max_bytes_per_source`](super::msc::MscParams::max_bytes_per_source)); this is
//! the backstop over all sources and epochs until garbage collection.
//!
//! ```
//! use protocols::availability::{batchdb::*, Tx};
//! use mir_runtime::{testing::apply, stdevents::crypto::{Origin, Request}, Event, ModuleId};
//! let mut db = mir_dsl::DslModule::new(BatchDb::new());
//! let mut store = StoreBatch::new(vec![7; 32], vec![vec![1; 32]], vec![Tx::new("c", 0, "x")], 3);
//! store.set_origin(Origin { module: ModuleId::new("msc"), id: 1 }); // what ctx.request does
//! let out = apply(&mut db, "batchdb".into(), vec![Event::new("msc", "batchdb", store)]).unwrap();
//! assert_eq!(out[0].get::<BatchStored>().unwrap().error, None);
//! let out = apply(&mut db, "batchdb".into(), vec![Event::new("msc", "batchdb", LookupBatch::new(vec![7; 32]))]).unwrap();
//! assert_eq!(out[0].get::<LookupBatchResponse>().unwrap().txs.as_ref().unwrap()[0].data, b"x");
//! ```

use std::collections::{BTreeMap, BTreeSet};

use mir_dsl::{protocol, Ctx, Handled};
use mir_runtime::stdevents::crypto::Origin;
use mir_runtime::stdevents::{GarbageCollect, Init};
use mir_runtime::{payload, request_response};
use serde::{Deserialize, Serialize};

use super::{BatchId, Tx, TxId};

/// Store a batch (answered with [`BatchStored`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreBatch {
    /// The batch ID.
    pub batch_id: BatchId,
    /// Its transaction IDs.
    pub tx_ids: Vec<TxId>,
    /// Its transactions.
    pub txs: Vec<Tx>,
    /// Kept until a garbage collection above this index.
    pub retention_index: u64,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`StoreBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStored {
    /// `None` if the batch is stored, else why it is not.
    pub error: Option<String>,
    /// The request's origin.
    pub origin: Origin,
}

/// Look up a batch (answered with [`LookupBatchResponse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupBatch {
    /// The batch ID.
    pub batch_id: BatchId,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`LookupBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupBatchResponse {
    /// The batch ID asked for.
    pub batch_id: BatchId,
    /// The transactions, if the batch is stored.
    pub txs: Option<Vec<Tx>>,
    /// The request's origin.
    pub origin: Origin,
}

/// What the database logs in its WAL for each batch it stores (with a WAL), and handles again on
/// a restart (stored without an answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch ID.
    pub batch_id: BatchId,
    /// Its transactions.
    pub txs: Vec<Tx>,
    /// Its retention index.
    pub retention_index: u64,
}

payload!(
    BatchRecord = "batchdb.BatchRecord",
    StoreBatch = "batchdb.StoreBatch",
    BatchStored = "batchdb.BatchStored",
    LookupBatch = "batchdb.LookupBatch",
    LookupBatchResponse = "batchdb.LookupBatchResponse",
);
request_response!(StoreBatch => BatchStored, LookupBatch => LookupBatchResponse);

impl StoreBatch {
    /// A request to store a batch. Made with `ctx.request`, its origin is set and the answer
    /// ([`BatchStored`]) comes back; emitted as is (origin unset), the batch DB stores without
    /// answering and logs a failure itself.
    pub fn new(batch_id: BatchId, tx_ids: Vec<TxId>, txs: Vec<Tx>, retention_index: u64) -> Self {
        StoreBatch { batch_id, tx_ids, txs, retention_index, origin: Origin::unset() }
    }
}

impl LookupBatch {
    /// A request to look up batch `batch_id`.
    pub fn new(batch_id: BatchId) -> Self {
        LookupBatch { batch_id, origin: Origin::unset() }
    }
}

struct Stored {
    txs: Vec<Tx>,
    retention: u64,
}

/// How many bytes a batch DB holds by default: 1 GiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 1 << 30;

/// The batch database module (a `#[protocol]`; wrap it in [`mir_dsl::DslModule`]).
pub struct BatchDb {
    batches: BTreeMap<BatchId, Stored>,
    by_retention: BTreeMap<u64, BTreeSet<BatchId>>,
    gc_index: u64,
    bytes: usize,
    capacity_bytes: usize,
    /// The WAL: a batch is logged before its store is answered (a signer vouches for a batch
    /// only once it is durable).
    wal: Option<mir_runtime::ModuleId>,
}

impl Default for BatchDb {
    fn default() -> Self {
        BatchDb {
            batches: BTreeMap::new(),
            by_retention: BTreeMap::new(),
            gc_index: 0,
            bytes: 0,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            wal: None,
        }
    }
}

impl BatchDb {
    /// An empty database holding at most [`DEFAULT_CAPACITY_BYTES`].
    pub fn new() -> Self {
        BatchDb::default()
    }

    /// Logs every batch in the WAL module `wal` before answering its store (and takes the logged
    /// [`BatchRecord`]s again on a restart).
    pub fn with_wal(mut self, wal: mir_runtime::ModuleId) -> Self {
        self.wal = Some(wal);
        self
    }

    /// Stores `txs` as `id` until `retention`; `Some(reason)` if it cannot.
    fn insert(&mut self, id: BatchId, txs: Vec<Tx>, retention: u64) -> Option<String> {
        self.insert_as(id, txs, retention, true)
    }

    /// [`Self::insert`]; `within_capacity: false` for a batch logged before a restart: this node
    /// vouched for it, so it is kept even over the capacity (the WAL holds about one epoch of
    /// batches, each admitted under the capacity when it came; garbage collection trims them).
    fn insert_as(
        &mut self,
        id: BatchId,
        txs: Vec<Tx>,
        retention: u64,
        within_capacity: bool,
    ) -> Option<String> {
        let size = super::total_bytes(&txs);
        if retention < self.gc_index {
            return Some(format!(
                "retention index {retention} is below the garbage-collection index {}",
                self.gc_index
            ));
        }
        if within_capacity
            && !self.batches.contains_key(&id)
            && self.bytes + size > self.capacity_bytes
        {
            return Some(format!(
                "the batch DB is full ({} of {} bytes held; the batch has {size})",
                self.bytes, self.capacity_bytes
            ));
        }
        let retention = match self.batches.get(&id) {
            Some(old) if old.retention >= retention => old.retention,
            Some(old) => {
                let old = old.retention;
                if let Some(s) = self.by_retention.get_mut(&old) {
                    s.remove(&id);
                }
                retention
            }
            None => retention,
        };
        self.by_retention.entry(retention).or_default().insert(id.clone());
        if let Some(old) = self.batches.insert(id, Stored { txs, retention }) {
            self.bytes -= super::total_bytes(&old.txs);
        }
        self.bytes += size;
        None
    }

    /// Holds at most `bytes` (by [`Tx::size`](super::Tx::size)).
    pub fn with_capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity_bytes = bytes;
        self
    }

    /// The bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many batches are stored.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// Whether no batch is stored.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }
}

#[protocol]
impl BatchDb {
    #[upon(event)]
    fn init(&mut self, _ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        Ok(())
    }

    /// upon ⟨StoreBatch | id, txs, r⟩ do store unless r is garbage-collected; answer whether
    /// stored (with a WAL, a new batch is logged first: the answer leaves once it is durable)
    #[upon(event)]
    fn store(&mut self, ctx: &mut Ctx<Self>, req: StoreBatch) -> Handled {
        let known =
            self.batches.get(&req.batch_id).is_some_and(|b| b.retention >= req.retention_index);
        let record = (self.wal.is_some() && !known).then(|| BatchRecord {
            batch_id: req.batch_id.clone(),
            txs: req.txs.clone(),
            retention_index: req.retention_index,
        });
        let error = self.insert(req.batch_id, req.txs, req.retention_index);
        let to = req.origin.module.clone();
        let answer = BatchStored { error: error.clone(), origin: req.origin };
        match (record, &error) {
            // Stored, and new: the answer waits for the record to be durable.
            (Some(r), None) => {
                let retention = r.retention_index;
                let p = ctx.persist(self.wal.as_ref(), retention, r);
                if to.is_node() {
                    p.then_nothing();
                } else {
                    p.then_emit(&to, answer);
                }
            }
            _ if to.is_node() => {
                // Sent with no origin: nobody waits for the answer.
                if let Some(e) = error {
                    tracing::warn!(error = %e, "a batch was not stored");
                }
            }
            // Known already: its record may still be on its way to the disk; the answer
            // follows it through the WAL (in order), never ahead of it.
            (None, None) if self.wal.is_some() => {
                ctx.after_logged(self.wal.as_ref()).then_emit(&to, answer)
            }
            _ => ctx.emit(&to, answer),
        }
        Ok(())
    }

    /// upon a batch logged before a restart do store it again (even over the capacity: this
    /// node vouched for it)
    #[upon(event)]
    fn recovered(&mut self, _ctx: &mut Ctx<Self>, r: BatchRecord) -> Handled {
        if let Some(e) = self.insert_as(r.batch_id, r.txs, r.retention_index, false) {
            tracing::warn!(error = %e, "a logged batch was not stored again");
        }
        Ok(())
    }

    /// upon ⟨LookupBatch | id⟩ do answer with the batch, if stored
    #[upon(event)]
    fn lookup(&mut self, ctx: &mut Ctx<Self>, req: LookupBatch) -> Handled {
        let txs = self.batches.get(&req.batch_id).map(|s| s.txs.clone());
        let to = req.origin.module.clone();
        ctx.emit(&to, LookupBatchResponse { batch_id: req.batch_id, txs, origin: req.origin });
        Ok(())
    }

    /// upon ⟨GarbageCollect | r⟩ do remove every batch kept for less than r
    #[upon(event)]
    fn gc(&mut self, _ctx: &mut Ctx<Self>, gc: GarbageCollect) -> Handled {
        self.gc_index = self.gc_index.max(gc.retention_index);
        let keep = self.by_retention.split_off(&self.gc_index);
        for ids in std::mem::replace(&mut self.by_retention, keep).into_values() {
            for id in ids {
                if let Some(old) = self.batches.remove(&id) {
                    self.bytes -= super::total_bytes(&old.txs);
                }
            }
        }
        Ok(())
    }
}
