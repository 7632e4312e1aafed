//! The mempool: admits transactions, forms batches, serves transactions by ID.
//!
//! ```text
//! upon ⟨NewTransactions | txs⟩ from client c do
//!     for each tx: admit unless too large, delivered, outside c's window, already here, or full
//!     reject the others with a reason, to c
//!     store the admitted in arrival order
//! upon ⟨RequestBatch | e⟩ do
//!     if e > epoch: keep it until epoch e starts
//!     else if a full batch is available (by count or bytes): answer it now
//!     else: wait BatchTimeout, then answer what there is (maybe nothing)
//!     (to answer: ids := hash(the batch's transactions not hashed before); record them)
//! upon ⟨NewEpoch | e, progress⟩ do
//!     prune the delivered; restart batching from the oldest transaction (re-propose what was
//!     proposed but not ordered)
//! ```
//!
//! **Bounds.** At most [`MempoolParams::capacity_txs`] transactions and
//! [`MempoolParams::capacity_bytes`] payload bytes, and per client
//! only transaction numbers in `[low_wm, low_wm + client_window)`, where `low_wm` is the client's
//! delivered low watermark from the last [`NewEpoch`]. A rejected transaction is answered with a
//! [`TransactionsRejected`] to the module that submitted it; nothing is dropped silently. A
//! submitting module written in the DSL needs an `#[upon(event)]` handler for
//! [`TransactionsRejected`] (unknown local events are fatal in the DSL): under a flood it will get
//! one.
//!
//! **Batches.** A batch takes transactions in arrival order while it has fewer than
//! `max_txs_in_batch` and their payloads fit in `max_payload_in_batch` bytes. A request is answered
//! at once when a *full* batch is available (the count is reached or the next transaction would
//! not fit), else after `batch_timeout` with what is there (possibly nothing). Requests are
//! answered in the order they came.
//!
//! **IDs.** A transaction's ID (a SHA-256, by the hasher) is computed when a batch first takes
//! it, not when it is admitted: clients send every transaction to every node, and a node
//! proposes only those of its buckets, so hashing at admission would hash most transactions for
//! nothing (it was a fifth of a node's time at 60,000 tx/s). [`LookupTransactions`] therefore
//! finds the transactions this mempool has put in a batch, and no others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use mir_dsl::{fatal, protocol, Ctx, Handled};
use mir_runtime::stdevents::crypto::{HashRequest, HashResult, Origin};
use mir_runtime::stdevents::Init;
use mir_runtime::{payload, request_response, ModuleId};
use serde::{Deserialize, Serialize};

use super::{bucket_of_key, tx_id_data, Buckets, ClientId, ClientKeys, ClientProgress, Tx, TxId};

// ---- Events ----

/// Transactions from a client module (or a transport relaying clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTransactions {
    /// The transactions.
    pub txs: Vec<Tx>,
}

/// One transaction the mempool did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// Its client.
    pub client: ClientId,
    /// Its number.
    pub tx_no: u64,
    /// Why, in words.
    pub reason: String,
    /// Why, for programs.
    pub kind: RejectKind,
}

/// The kinds of refusal (what a client can do about each differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectKind {
    /// Larger than a batch may hold: never taken.
    TooLarge,
    /// Delivered already.
    Delivered,
    /// Outside the client's window: submit it once the earlier ones are delivered.
    OutsideWindow,
    /// Waiting in this mempool already.
    Present,
    /// The mempool is full: later, or at another node.
    Full,
}

/// The answer to a [`NewTransactions`] of which some were not taken (sent to its source module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionsRejected {
    /// The rejected transactions, in submission order.
    pub rejected: Vec<Rejected>,
}

/// Asks for a batch to propose in epoch `epoch` (answered with [`NewBatch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    /// The epoch.
    pub epoch: u64,
    /// Only transactions of these buckets, if given.
    pub buckets: Option<Buckets>,
    /// Who asked.
    pub origin: Origin,
}

/// A batch: transaction IDs and the transactions, in the same order. May be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewBatch {
    /// The transaction IDs.
    pub tx_ids: Vec<TxId>,
    /// The transactions.
    pub txs: Vec<Tx>,
    /// The request's origin.
    pub origin: Origin,
}

/// Asks for transactions by ID (answered with [`TransactionsFound`]): only those this mempool
/// has put in a batch have IDs here (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupTransactions {
    /// The IDs.
    pub tx_ids: Vec<TxId>,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`LookupTransactions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionsFound {
    /// The IDs found, in request order.
    pub found_ids: Vec<TxId>,
    /// Their transactions.
    pub found_txs: Vec<Tx>,
    /// The IDs not here.
    pub missing_ids: Vec<TxId>,
    /// The request's origin.
    pub origin: Origin,
}

/// Asks whether transactions lie in their clients' windows `[low_wm, low_wm + client_window)`
/// as this mempool knows them (answered with [`WindowChecked`]): a certificate's signer asks
/// before it signs, so a leader cannot get requests outside the windows certified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckWindow {
    /// The epoch whose windows apply: the answer waits until the mempool has reached it (a
    /// lagging signer must not refuse what the leader's epoch allows).
    pub epoch: u64,
    /// (client, number) of each transaction.
    pub txs: Vec<(ClientId, u64)>,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`CheckWindow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowChecked {
    /// The first transaction outside its client's window, if any.
    pub outside: Option<(ClientId, u64)>,
    /// The request's origin.
    pub origin: Origin,
}

impl CheckWindow {
    /// A check of `txs` against the windows of `epoch`.
    pub fn new(epoch: u64, txs: &[Tx]) -> Self {
        CheckWindow {
            epoch,
            txs: txs.iter().map(|t| (t.client.clone(), t.tx_no)).collect(),
            origin: Origin::unset(),
        }
    }
}

/// Epoch `epoch` starts; `client_progress` says what was delivered before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEpoch {
    /// The new epoch.
    pub epoch: u64,
    /// What was delivered so far.
    pub client_progress: ClientProgress,
}

/// A batch request waited long enough (from the timer, to the mempool itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTimeout {
    /// The request's local number.
    pub request: u64,
}

payload!(
    NewTransactions = "mempool.NewTransactions",
    TransactionsRejected = "mempool.TransactionsRejected",
    RequestBatch = "mempool.RequestBatch",
    NewBatch = "mempool.NewBatch",
    LookupTransactions = "mempool.LookupTransactions",
    TransactionsFound = "mempool.TransactionsFound",
    NewEpoch = "mempool.NewEpoch",
    CheckWindow = "mempool.CheckWindow",
    WindowChecked = "mempool.WindowChecked",
    BatchTimeout = "mempool.BatchTimeout",
);
request_response!(
    RequestBatch => NewBatch,
    LookupTransactions => TransactionsFound,
    CheckWindow => WindowChecked
);

impl RequestBatch {
    /// A request for a batch of epoch `epoch`.
    pub fn new(epoch: u64) -> Self {
        RequestBatch { epoch, buckets: None, origin: Origin::unset() }
    }

    /// The same request, for transactions of `buckets` only.
    pub fn in_buckets(mut self, buckets: Option<Buckets>) -> Self {
        self.buckets = buckets;
        self
    }
}

impl LookupTransactions {
    /// A request for transactions `tx_ids`.
    pub fn new(tx_ids: Vec<TxId>) -> Self {
        LookupTransactions { tx_ids, origin: Origin::unset() }
    }
}

// ---- Parameters ----

/// Limits and timing of a mempool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolParams {
    /// Most transactions in a batch (Mir: 1024).
    pub max_txs_in_batch: usize,
    /// Most bytes in a batch, counted by [`Tx::size`](super::Tx::size) (client ID, number and
    /// payload; Mir counted payloads only, 1 MiB); a larger transaction is rejected.
    pub max_payload_in_batch: usize,
    /// How long a batch request waits for a full batch (Mir: 100 ms).
    pub batch_timeout: Duration,
    /// Most transactions held.
    pub capacity_txs: usize,
    /// Most bytes held, counted by [`Tx::size`](super::Tx::size) (including transactions being
    /// hashed).
    pub capacity_bytes: usize,
    /// How many transaction numbers above its delivered low watermark a client may have.
    pub client_window: u64,
}

impl Default for MempoolParams {
    fn default() -> Self {
        MempoolParams {
            max_txs_in_batch: 1024,
            max_payload_in_batch: 1 << 20,
            batch_timeout: Duration::from_millis(100),
            capacity_txs: 100_000,
            capacity_bytes: 256 << 20,
            client_window: 10_000,
        }
    }
}

impl MempoolParams {
    /// Checks the limits make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_txs_in_batch == 0 {
            return Err("max_txs_in_batch must be at least 1".into());
        }
        if self.max_payload_in_batch == 0 {
            return Err("max_payload_in_batch must be at least 1".into());
        }
        if self.capacity_txs < self.max_txs_in_batch {
            return Err(format!(
                "capacity_txs ({}) must hold at least one full batch ({})",
                self.capacity_txs, self.max_txs_in_batch
            ));
        }
        if self.capacity_bytes < self.max_payload_in_batch {
            return Err(format!(
                "capacity_bytes ({}) must hold at least one full batch ({})",
                self.capacity_bytes, self.max_payload_in_batch
            ));
        }
        if self.client_window == 0 {
            return Err("client_window must be at least 1".into());
        }
        Ok(())
    }
}

/// The modules a mempool talks to.
#[derive(Debug, Clone)]
pub struct MempoolModules {
    /// The hasher (transaction IDs).
    pub hasher: ModuleId,
    /// The timer (batch timeouts).
    pub timer: ModuleId,
}

// ---- Continuations ----

/// Hashing the transactions of a batch that have no ID yet, before answering a request.
#[derive(Debug)]
pub struct Sealing {
    /// The request answered (its origin and epoch).
    origin: Origin,
    epoch: u64,
    /// The batch's transactions (arrival numbers), and which of them are being hashed.
    seqs: Vec<u64>,
    hashing: Vec<u64>,
}

// ---- State ----

struct Waiting {
    origin: Origin,
    epoch: u64,
    buckets: Option<Buckets>,
    number: u64,
    timer_set: bool,
    timed_out: bool,
}

/// The mempool (a `#[protocol]`; wrap it in [`mir_dsl::DslModule`]).
pub struct Mempool {
    params: MempoolParams,
    modules: MempoolModules,
    epoch: u64,
    progress: ClientProgress,
    /// Stored transactions by arrival number, with their client's bucket key
    /// ([`client_key`](super::client_key)).
    txs: BTreeMap<u64, (Option<TxId>, Tx, u64)>,
    /// Arrival numbers by transaction ID: a hash map, because it is looked up for every
    /// transaction and large maps of 32-byte keys are slow to search in order. It is only ever
    /// looked up, never iterated, so its (random) hashing changes no outcome.
    by_id: HashMap<IdKey, u64>,
    /// Per client, the number of every stored transaction and its arrival number: how
    /// delivered ones are found without a scan.
    present: BTreeMap<ClientId, BTreeMap<u64, u64>>,
    /// Transactions (and bytes) at or after the cursor per bucket, for one bucket count: how a
    /// request for some buckets learns whether a full batch is there without a scan.
    per_bucket: Option<(u64, Vec<(usize, usize)>)>,
    next_seq: u64,
    /// Batches of this epoch start at this arrival number.
    cursor: u64,
    held_bytes: usize,
    /// A batch is being sealed (its transactions hashed): later requests wait, so that requests
    /// are answered in the order they came.
    sealing: bool,
    /// Transactions (and their bytes) at or after the cursor.
    avail_txs: usize,
    avail_bytes: usize,
    waiting: VecDeque<Waiting>,
    next_request: u64,
    /// Window checks for epochs not started here yet (from this node's signers: at most
    /// `max_requests` per member and epoch).
    window_checks: Vec<CheckWindow>,
}

/// A transaction ID as a map key (SHA-256: 32 bytes; an ID of another length, which no
/// transaction here has, maps to all zeros and finds nothing stored under its own).
type IdKey = [u8; 32];

fn id_key(id: &[u8]) -> IdKey {
    id.try_into().unwrap_or([0; 32])
}

impl Mempool {
    /// Forgets that `client`'s `tx_no` is here.
    fn forget(&mut self, client: &ClientId, tx_no: u64) {
        if let Some(p) = self.present.get_mut(client) {
            p.remove(&tx_no);
            if p.is_empty() {
                self.present.remove(client);
            }
        }
    }

    /// A mempool; panics on invalid `params` (a configuration bug: see
    /// [`MempoolParams::validate`]).
    pub fn new(params: MempoolParams, modules: MempoolModules) -> Self {
        if let Err(e) = params.validate() {
            panic!("invalid mempool parameters: {e}");
        }
        Mempool {
            params,
            modules,
            epoch: 0,
            progress: ClientProgress::default(),
            txs: BTreeMap::new(),
            by_id: HashMap::new(),
            present: BTreeMap::new(),
            per_bucket: None,
            next_seq: 0,
            cursor: 0,
            held_bytes: 0,
            sealing: false,
            avail_txs: 0,
            avail_bytes: 0,
            waiting: VecDeque::new(),
            next_request: 0,
            window_checks: Vec::new(),
        }
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.held_bytes
    }

    /// Why `tx` cannot be admitted now, if it cannot.
    fn refusal(&self, tx: &Tx) -> Option<(RejectKind, String)> {
        let p = &self.params;
        let low = self.progress.low_wm(&tx.client);
        if tx.size() > p.max_payload_in_batch {
            Some((
                RejectKind::TooLarge,
                format!(
                    "{} bytes is more than a batch may hold ({})",
                    tx.size(),
                    p.max_payload_in_batch
                ),
            ))
        } else if self.progress.contains(&tx.client, tx.tx_no) {
            Some((RejectKind::Delivered, "already delivered".into()))
        } else if tx.tx_no >= low.saturating_add(p.client_window) {
            Some((
                RejectKind::OutsideWindow,
                format!(
                    "outside the client's window [{low}, {})",
                    low.saturating_add(p.client_window)
                ),
            ))
        } else if self.present.get(&tx.client).is_some_and(|p| p.contains_key(&tx.tx_no)) {
            Some((RejectKind::Present, "already in the mempool".into()))
        } else if self.len() >= p.capacity_txs {
            Some((RejectKind::Full, format!("mempool full ({} transactions)", p.capacity_txs)))
        } else if self.bytes() + tx.size() > p.capacity_bytes {
            Some((RejectKind::Full, format!("mempool full ({} bytes)", p.capacity_bytes)))
        } else {
            None
        }
    }

    fn full_batch_available(&self, buckets: Option<&Buckets>) -> bool {
        let Some(b) = buckets else {
            return self.avail_txs >= self.params.max_txs_in_batch
                || self.avail_bytes >= self.params.max_payload_in_batch;
        };
        // Only transactions of the buckets count (see `take_batch`).
        let (n, bytes) = match &self.per_bucket {
            Some((count, per)) if *count == b.count => b
                .mine
                .iter()
                .filter_map(|m| per.get(*m as usize))
                .fold((0, 0), |(n, bytes), (tn, tb)| (n + tn, bytes + tb)),
            _ => return false, // counted for this bucket count first (`count_buckets`)
        };
        n >= self.params.max_txs_in_batch || bytes >= self.params.max_payload_in_batch
    }

    /// Counts the transactions at or after the cursor per bucket, for `count` buckets.
    fn count_buckets(&mut self, count: u64) {
        let mut per = vec![(0, 0); count as usize];
        for (_, tx, key) in self.txs.range(self.cursor..).map(|(_, v)| v) {
            let e = &mut per[bucket_of_key(*key, tx.tx_no, count) as usize];
            e.0 += 1;
            e.1 += tx.size();
        }
        self.per_bucket = Some((count, per));
    }

    /// Adds or removes a transaction at or after the cursor (its client's bucket key, its
    /// number and size) from the counts.
    fn count_one(&mut self, key: u64, tx_no: u64, size: usize, add: bool) {
        if let Some((count, per)) = &mut self.per_bucket {
            let e = &mut per[bucket_of_key(key, tx_no, *count) as usize];
            if add {
                e.0 += 1;
                e.1 += size;
            } else {
                e.0 -= 1;
                e.1 -= size;
            }
        }
    }

    /// Takes the next batch from the cursor: transactions in arrival order (of `buckets` only,
    /// if given: the others the cursor passes are not this node's to propose in this epoch; the
    /// next epoch starts from the oldest again).
    fn take_batch(&mut self, buckets: Option<&Buckets>) -> Vec<u64> {
        let (mut taken, mut bytes) = (Vec::new(), 0);
        let (mut next, mut passed, mut passed_bytes) = (self.cursor, 0, 0);
        // What the cursor moves over leaves the per-bucket counts.
        let mut left: Vec<(u64, u64, usize)> = Vec::new(); // (bucket key, number, size)
        for (&seq, (_, tx, key)) in self.txs.range(self.cursor..) {
            if buckets.is_some_and(|b| {
                b.mine.binary_search(&bucket_of_key(*key, tx.tx_no, b.count)).is_err()
            }) {
                next = seq + 1;
                passed += 1;
                passed_bytes += tx.size();
                left.push((*key, tx.tx_no, tx.size()));
                continue;
            }
            if taken.len() == self.params.max_txs_in_batch
                || bytes + tx.size() > self.params.max_payload_in_batch
            {
                break;
            }
            bytes += tx.size();
            taken.push(seq);
            left.push((*key, tx.tx_no, tx.size()));
            next = seq + 1;
        }
        self.cursor = next;
        for (key, tx_no, size) in left {
            self.count_one(key, tx_no, size, false);
        }
        self.avail_txs -= taken.len() + passed;
        self.avail_bytes -= bytes + passed_bytes;
        taken
    }

    /// The batch of the transactions `seqs` (all with IDs), or an empty one if one of them is
    /// no longer held.
    fn batch_of(&self, seqs: &[u64]) -> (Vec<TxId>, Vec<Tx>) {
        let mut ids = Vec::with_capacity(seqs.len());
        let mut txs = Vec::with_capacity(seqs.len());
        for seq in seqs {
            match self.txs.get(seq) {
                Some((Some(id), tx, _)) => {
                    ids.push(id.clone());
                    txs.push(tx.clone());
                }
                _ => return (Vec::new(), Vec::new()),
            }
        }
        (ids, txs)
    }

    /// Removes the transaction with arrival number `seq`.
    fn remove(&mut self, seq: u64) {
        if let Some((id, tx, key)) = self.txs.remove(&seq) {
            if let Some(id) = id {
                self.by_id.remove(&id_key(&id));
            }
            self.forget(&tx.client, tx.tx_no);
            self.held_bytes -= tx.size();
            if seq >= self.cursor {
                self.avail_txs -= 1;
                self.avail_bytes -= tx.size();
                self.count_one(key, tx.tx_no, tx.size(), false);
            }
        }
    }
}

#[protocol]
impl Mempool {
    #[upon(event)]
    fn init(&mut self, _ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        Ok(())
    }

    /// upon ⟨NewTransactions | txs⟩ from client c do admit or reject each; store the admitted in
    /// arrival order (their IDs are computed when a batch takes them)
    #[upon(event)]
    fn new_transactions(&mut self, ctx: &mut Ctx<Self>, new: NewTransactions) -> Handled {
        let mut rejected = Vec::new();
        // The client's bucket key, computed once per run of one client's transactions.
        let mut keys = ClientKeys::default();
        for tx in new.txs {
            if let Some((kind, reason)) = self.refusal(&tx) {
                rejected.push(Rejected { client: tx.client, tx_no: tx.tx_no, reason, kind });
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.held_bytes += tx.size();
            self.avail_txs += 1;
            self.avail_bytes += tx.size();
            let bucket_key = keys.of(&tx.client);
            self.count_one(bucket_key, tx.tx_no, tx.size(), true);
            // (No `entry(client.clone())`: that would copy the client's ID for every transaction.)
            match self.present.get_mut(&tx.client) {
                Some(p) => {
                    p.insert(tx.tx_no, seq);
                }
                None => {
                    self.present.insert(tx.client.clone(), BTreeMap::from([(tx.tx_no, seq)]));
                }
            }
            self.txs.insert(seq, (None, tx, bucket_key));
        }
        if !rejected.is_empty() {
            tracing::debug!(count = rejected.len(), first = %rejected[0].reason, "transactions rejected");
            let src = ctx.source().clone();
            ctx.emit(&src, TransactionsRejected { rejected });
        }
        Ok(())
    }

    /// … once the batch's transactions are hashed: record their IDs and answer the request (with
    /// an empty batch if its epoch has passed or a transaction was delivered meanwhile)
    #[upon(response)]
    fn sealed(&mut self, ctx: &mut Ctx<Self>, ids: HashResult, s: Sealing) -> Handled {
        if ids.digests.len() != s.hashing.len() {
            fatal!(
                "the hasher returned {} digests for {} transactions",
                ids.digests.len(),
                s.hashing.len()
            );
        }
        self.sealing = false;
        for (seq, id) in s.hashing.iter().zip(ids.digests) {
            if let Some(entry) = self.txs.get_mut(seq) {
                self.by_id.insert(id_key(&id), *seq);
                entry.0 = Some(id);
            }
        }
        let (tx_ids, txs) =
            if s.epoch == self.epoch { self.batch_of(&s.seqs) } else { (Vec::new(), Vec::new()) };
        let to = s.origin.module.clone();
        ctx.emit(&to, NewBatch { tx_ids, txs, origin: s.origin });
        Ok(())
    }

    /// upon ⟨RequestBatch | e⟩ do queue it (answered by `serve_batches`)
    #[upon(event)]
    fn request_batch(&mut self, ctx: &mut Ctx<Self>, req: RequestBatch) -> Handled {
        let number = self.next_request;
        self.next_request += 1;
        let mut w = Waiting {
            origin: req.origin,
            epoch: req.epoch,
            buckets: req.buckets,
            number,
            timer_set: false,
            timed_out: false,
        };
        if let Some(b) = &w.buckets {
            if self.per_bucket.as_ref().is_none_or(|(count, _)| *count != b.count) {
                self.count_buckets(b.count);
            }
        }
        if req.epoch <= self.epoch {
            self.set_timer(ctx, &mut w);
        }
        self.waiting.push_back(w);
        Ok(())
    }

    /// upon BatchTimeout for request r do answer r with what there is
    #[upon(event)]
    fn batch_timeout(&mut self, _ctx: &mut Ctx<Self>, t: BatchTimeout) -> Handled {
        if let Some(w) = self.waiting.iter_mut().find(|w| w.number == t.request) {
            w.timed_out = true;
        }
        Ok(())
    }

    /// upon exists a waiting request of this (or an earlier) epoch such that a full batch is
    /// available or it timed out do answer it
    #[upon(condition)]
    fn serve_batches(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        while let Some(w) = self.waiting.front() {
            if w.epoch > self.epoch || self.sealing {
                break; // waits for its epoch, or for the batch being sealed (answers in order)
            }
            let seqs = if w.epoch < self.epoch {
                Vec::new() // a stale request: nothing to propose in a past epoch
            } else if self.full_batch_available(w.buckets.as_ref()) || w.timed_out {
                let b = w.buckets.clone();
                self.take_batch(b.as_ref())
            } else {
                break;
            };
            let w = self.waiting.pop_front().expect("front exists");
            // … hash the transactions without an ID first (each is hashed once, when a batch
            // first takes it)
            let hashing: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|s| self.txs.get(s).is_some_and(|(id, _, _)| id.is_none()))
                .collect();
            if hashing.is_empty() {
                let (tx_ids, txs) = self.batch_of(&seqs);
                let to = w.origin.module.clone();
                ctx.emit(&to, NewBatch { tx_ids, txs, origin: w.origin });
                continue;
            }
            let request =
                HashRequest::new(hashing.iter().map(|s| tx_id_data(&self.txs[s].1)).collect());
            self.sealing = true;
            let seal = Sealing { origin: w.origin, epoch: w.epoch, seqs, hashing };
            ctx.request(&self.modules.hasher, request, seal);
        }
        Ok(())
    }

    /// upon ⟨LookupTransactions | ids⟩ do answer with those held
    #[upon(event)]
    fn lookup(&mut self, ctx: &mut Ctx<Self>, req: LookupTransactions) -> Handled {
        let (mut found_ids, mut found_txs, mut missing_ids) = (Vec::new(), Vec::new(), Vec::new());
        for id in req.tx_ids {
            match self.by_id.get(&id_key(&id)).and_then(|s| self.txs.get(s)) {
                Some((_, tx, _)) => {
                    found_txs.push(tx.clone());
                    found_ids.push(id);
                }
                None => missing_ids.push(id),
            }
        }
        let to = req.origin.module.clone();
        ctx.emit(&to, TransactionsFound { found_ids, found_txs, missing_ids, origin: req.origin });
        Ok(())
    }

    /// upon ⟨CheckWindow | e, txs⟩ do (once epoch e has started here) answer with the first
    /// outside its client's window
    #[upon(event)]
    fn check_window(&mut self, ctx: &mut Ctx<Self>, req: CheckWindow) -> Handled {
        if req.epoch > self.epoch {
            self.window_checks.push(req); // answered when epoch e starts (bounded by the signer)
            return Ok(());
        }
        self.answer_window(ctx, req);
        Ok(())
    }

    /// upon ⟨NewEpoch | e, progress⟩ do prune the delivered; restart batching from the oldest
    #[upon(event)]
    fn new_epoch(&mut self, ctx: &mut Ctx<Self>, ne: NewEpoch) -> Handled {
        if ne.epoch < self.epoch {
            fatal!("NewEpoch {} after epoch {}: epochs only go forward", ne.epoch, self.epoch);
        }
        self.epoch = ne.epoch;
        self.progress = ne.client_progress;
        // The delivered, found through `present` (below each client's low watermark, and the
        // numbers delivered above it), not by a scan of everything held.
        let mut delivered: Vec<u64> = Vec::new();
        for (client, d) in &self.progress.clients {
            let Some(present) = self.present.get(client) else { continue };
            delivered.extend(present.range(..d.low_wm).map(|(_, seq)| *seq));
            // Above the watermark: whichever is smaller, what is held or what was delivered.
            let held = present.range(d.low_wm..);
            if held.clone().take(d.delivered.len() + 1).count() <= d.delivered.len() {
                delivered.extend(held.filter(|(n, _)| d.delivered.contains(n)).map(|(_, s)| *s));
            } else {
                delivered.extend(d.delivered.iter().filter_map(|n| present.get(n).copied()));
            }
        }
        for seq in delivered {
            self.remove(seq);
        }
        // Re-propose everything not ordered: batching starts again from the oldest.
        self.cursor = 0;
        self.avail_txs = self.txs.len();
        self.avail_bytes = self.held_bytes;
        if let Some((count, _)) = self.per_bucket {
            self.count_buckets(count);
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        for w in waiting.iter_mut() {
            if w.epoch == self.epoch {
                self.set_timer(ctx, w);
            }
        }
        self.waiting = waiting;
        let (now, later): (Vec<CheckWindow>, Vec<CheckWindow>) =
            std::mem::take(&mut self.window_checks)
                .into_iter()
                .partition(|c| c.epoch <= self.epoch);
        self.window_checks = later;
        for c in now {
            self.answer_window(ctx, c);
        }
        Ok(())
    }
}

impl Mempool {
    /// Answers `req`: the first transaction outside its client's window, if any.
    fn answer_window(&self, ctx: &mut Ctx<Self>, req: CheckWindow) {
        let window = self.params.client_window;
        let outside = req.txs.into_iter().find(|(client, n)| {
            let low = self.progress.low_wm(client);
            *n < low || *n >= low.saturating_add(window)
        });
        let to = req.origin.module.clone();
        ctx.emit(&to, WindowChecked { outside, origin: req.origin });
    }

    fn set_timer(&self, ctx: &mut Ctx<Self>, w: &mut Waiting) {
        if !w.timer_set {
            w.timer_set = true;
            ctx.after(
                &self.modules.timer,
                self.params.batch_timeout,
                BatchTimeout { request: w.number },
            );
        }
    }
}
