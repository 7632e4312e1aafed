//! # The availability layer
//!
//! What lets an ordering protocol (ISS, PBFT) order small **certificates** instead of whole batches
//! of transactions, while every correct node can still get the batch behind each certificate.
//! Mir's `simplemempool`, `fakebatchdb`, `multisigcollector` and `batchfetcher`, rewritten in the
//! `#[protocol]` DSL. The parts, and the modules they are registered as in a node:
//!
//! ```text
//!  clients ──NewTransactions──▶ mempool ◀──RequestBatch── availability/<epoch> ──RequestSig──▶ peers
//!                                  │                      (multisig collector:   ◀──Sig──────
//!                                  └──NewBatch───────────▶  certificate creation,
//!                                                           verification,          ──RequestBatch──▶
//!             batchdb ◀──StoreBatch / LookupBatch──────────  batch reconstruction) ◀──ProvideBatch──
//!                                                                  ▲
//!  orderer ──DeliverCert──▶ batchfetcher ──RequestTransactions──────┘
//!                               │
//!                               └──NewOrderedBatch (in order, duplicates removed)──▶ application
//! ```
//!
//! * [`mempool`]: admits transactions (bounded in count and bytes, and per client by a watermark
//!   window), forms batches by count, bytes and timeout (hashing a transaction into its ID
//!   through the hasher when a batch first takes it),
//!   re-proposes what was not ordered when an epoch starts, and prunes what was delivered.
//! * [`batchdb`]: stores batches by ID, garbage-collected by retention index (the epoch).
//! * [`msc`]: the multisig collector, one instance per epoch made by [`msc::factory`]. A
//!   **certificate** is f + 1 (a weak quorum by weight) signatures of distinct members on
//!   `(instance, "BATCH_STORED", batch ID)`, so at least one correct node stored the batch.
//! * [`batchfetcher`]: turns ordered certificates into ordered batches, removing duplicate
//!   transactions by [`ClientProgress`] at delivery time.
//!
//! **Identifiers.** A transaction ID is the SHA-256 of the framed `(client, tx_no, data)`; a batch
//! ID is the SHA-256 of the framed list of its transaction IDs ([`tx_id_data`], [`batch_id_data`]).
//! Both are computed by the hasher module ([`HashRequest`]), never inline in protocol code, so
//! hashing large batches can run on a worker thread in production.
//!
//! **Differences from Mir.** The mempool is bounded and answers a rejected submission with a
//! reason ([`mempool::TransactionsRejected`]), and each client has a window of transaction numbers
//! above its delivered low watermark (Mir had neither: one client could fill a node's memory).
//! Certificate verification rejects repeated and non-member signers (through
//! [`mir_dsl::Voters::is_weak_quorum`]). Batch reconstruction asks one signer at a time and
//! moves to the next on a timeout, forever (Mir asked all signers once and never retried, so one
//! lost message stalled the node). A signer signs at most `max_requests` batches per source and
//! epoch, so a Byzantine source cannot make it store without bound.

pub mod batchdb;
pub mod batchfetcher;
pub mod mempool;
pub mod msc;

use std::collections::{BTreeMap, BTreeSet};

use mir_runtime::payload;
use mir_runtime::stdevents::crypto::HashRequest;
use serde::{Deserialize, Serialize};

/// A client's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub String);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ClientId {
    fn from(s: &str) -> Self {
        ClientId(s.to_owned())
    }
}

/// A transaction: the `tx_no`-th request of `client`, carrying an opaque payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    /// Who sent it.
    pub client: ClientId,
    /// The client's sequence number for it (each number is delivered at most once).
    pub tx_no: u64,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// The client's signature, or empty (see `smr::signed`: the SMR system checks the
    /// signatures of clients whose ID is their public key).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl Tx {
    /// The bytes this transaction makes a node hold, as every limit counts them: the client ID,
    /// the 8-byte number, the payload and the signature (a client controls all of them).
    ///
    /// ```
    /// use protocols::availability::Tx;
    /// assert_eq!(Tx::new("alice", 0, "xyz").size(), 5 + 8 + 3);
    /// ```
    pub fn size(&self) -> usize {
        self.client.0.len() + 8 + self.data.len() + self.signature.len()
    }

    /// A transaction (unsigned).
    pub fn new(client: impl Into<ClientId>, tx_no: u64, data: impl Into<Vec<u8>>) -> Self {
        Tx { client: client.into(), tx_no, data: data.into(), signature: Vec::new() }
    }

    /// This transaction with `signature`.
    pub fn with_signature(mut self, signature: Vec<u8>) -> Self {
        self.signature = signature;
        self
    }
}

/// A transaction ID: 32 bytes of SHA-256.
pub type TxId = Vec<u8>;
/// A batch ID: 32 bytes of SHA-256.
pub type BatchId = Vec<u8>;

/// What is hashed into a transaction's ID: `[client, tx_no (8 bytes LE), data]`, framed, and
/// the signature if there is one (so a certified batch pins it: nobody can swap it later).
pub fn tx_id_data(tx: &Tx) -> Vec<Vec<u8>> {
    let mut d =
        vec![tx.client.0.as_bytes().to_vec(), tx.tx_no.to_le_bytes().to_vec(), tx.data.clone()];
    if !tx.signature.is_empty() {
        d.push(tx.signature.clone());
    }
    d
}

/// What is hashed into a batch's ID: its transaction IDs, framed.
pub fn batch_id_data(tx_ids: &[TxId]) -> Vec<Vec<u8>> {
    tx_ids.to_vec()
}

/// A request for the IDs of `txs` (one digest per transaction, in order).
pub fn tx_ids_request(txs: &[Tx]) -> HashRequest {
    HashRequest::new(txs.iter().map(tx_id_data).collect())
}

/// A request for the ID of the batch with transaction IDs `tx_ids` (one digest).
pub fn batch_id_request(tx_ids: &[TxId]) -> HashRequest {
    HashRequest::new(vec![batch_id_data(tx_ids)])
}

/// The bytes of `txs` as limits count them ([`Tx::size`]: client IDs, numbers and payloads).
pub fn total_bytes(txs: &[Tx]) -> usize {
    txs.iter().map(Tx::size).sum()
}

/// Which transactions of each client were delivered: everything below `low_wm`, and the numbers
/// in `delivered` (all ≥ `low_wm`). Mir's `clientprogress`, kept in order (`BTreeMap`) so its
/// encoding is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProgress {
    /// Per client.
    pub clients: BTreeMap<ClientId, DeliveredTxs>,
}

/// One client's delivered transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredTxs {
    /// Every transaction number below it was delivered.
    pub low_wm: u64,
    /// Delivered numbers at or above `low_wm`.
    pub delivered: BTreeSet<u64>,
}

impl ClientProgress {
    /// Records that `client`'s transaction `tx_no` is delivered; false if it already was (a
    /// duplicate to drop).
    ///
    /// ```
    /// use protocols::availability::ClientProgress;
    /// let mut p = ClientProgress::default();
    /// assert!(p.add(&"c".into(), 0));
    /// assert!(!p.add(&"c".into(), 0));
    /// assert!(p.add(&"c".into(), 2));
    /// p.garbage_collect();
    /// assert_eq!(p.low_wm(&"c".into()), 1);
    /// assert!(p.contains(&"c".into(), 2) && !p.contains(&"c".into(), 1));
    /// ```
    pub fn add(&mut self, client: &ClientId, tx_no: u64) -> bool {
        let c = self.clients.entry(client.clone()).or_default();
        if tx_no < c.low_wm {
            return false;
        }
        c.delivered.insert(tx_no)
    }

    /// Whether `client`'s transaction `tx_no` was delivered.
    pub fn contains(&self, client: &ClientId, tx_no: u64) -> bool {
        self.clients.get(client).is_some_and(|c| tx_no < c.low_wm || c.delivered.contains(&tx_no))
    }

    /// The client's low watermark: every number below it was delivered.
    pub fn low_wm(&self, client: &ClientId) -> u64 {
        self.clients.get(client).map_or(0, |c| c.low_wm)
    }

    /// Raises each client's low watermark over the contiguous delivered prefix.
    pub fn garbage_collect(&mut self) {
        for c in self.clients.values_mut() {
            while c.delivered.remove(&c.low_wm) {
                c.low_wm += 1;
            }
        }
    }
}

/// The request buckets a batch may hold transactions of (ISS's buckets, spec §1): the request
/// space is split into `count` buckets, request `(client, n)` falls in [`bucket_of`], and a batch
/// for these buckets holds only requests of the buckets in `mine`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Buckets {
    /// How many buckets the request space is split into.
    pub count: u64,
    /// The buckets allowed, sorted, distinct, each below `count`.
    pub mine: Vec<u64>,
}

/// At most this many buckets (a peer cannot make a node check a huge bucket list).
pub const MAX_BUCKETS: u64 = 1 << 16;

impl Buckets {
    /// Checks the form: `1 ≤ count ≤ MAX_BUCKETS`, `mine` sorted, distinct, below `count`.
    pub fn validate(&self) -> Result<(), String> {
        if self.count == 0 || self.count > MAX_BUCKETS {
            return Err(format!("{} buckets (1 to {MAX_BUCKETS})", self.count));
        }
        if self.mine.windows(2).any(|w| w[0] >= w[1])
            || self.mine.last().is_some_and(|b| *b >= self.count)
        {
            return Err("the buckets are not sorted, distinct and below the count".into());
        }
        Ok(())
    }

    /// Whether `tx` falls in one of these buckets.
    ///
    /// ```
    /// use protocols::availability::{bucket_of, Buckets, Tx};
    /// let tx = Tx::new("alice", 7, "x");
    /// let b = bucket_of("alice", 7, 4);
    /// assert!(Buckets { count: 4, mine: vec![b] }.holds(&tx));
    /// assert!(!Buckets { count: 4, mine: vec![(b + 1) % 4] }.holds(&tx));
    /// ```
    pub fn holds(&self, tx: &Tx) -> bool {
        self.mine.binary_search(&bucket_of(&tx.client.0, tx.tx_no, self.count)).is_ok()
    }

    /// Whether every transaction of `txs` falls in one of these buckets ([`Buckets::holds`],
    /// hashing each client's ID once per run of its transactions).
    ///
    /// ```
    /// use protocols::availability::{bucket_of, Buckets, Tx};
    /// let b = Buckets { count: 4, mine: vec![bucket_of("alice", 0, 4)] };
    /// assert!(b.holds_all(&[Tx::new("alice", 0, "x"), Tx::new("alice", 4, "y")]));
    /// assert!(!b.holds_all(&[Tx::new("alice", 0, "x"), Tx::new("alice", 1, "y")]));
    /// ```
    pub fn holds_all(&self, txs: &[Tx]) -> bool {
        let mut keys = ClientKeys::default();
        txs.iter().all(|tx| {
            let key = keys.of(&tx.client);
            self.mine.binary_search(&bucket_of_key(key, tx.tx_no, self.count)).is_ok()
        })
    }
}

/// The bucket of request number `n` of `client` among `buckets`: `(H(client) + n) mod buckets`,
/// with `H` the first 8 bytes (little-endian) of the SHA-256 of the client ID, so a client's
/// consecutive requests fall in consecutive buckets.
///
/// ```
/// use protocols::availability::bucket_of;
/// let b: Vec<u64> = (0..4).map(|n| bucket_of("alice", n, 4)).collect();
/// assert_eq!(b[1], (b[0] + 1) % 4);
/// ```
pub fn bucket_of(client: &str, n: u64, buckets: u64) -> u64 {
    bucket_of_key(client_key(client), n, buckets)
}

/// `H(client)` of [`bucket_of`]: what a holder of many requests of one client computes once.
pub fn client_key(client: &str) -> u64 {
    let h = mir_runtime::stdmodules::hasher::digest(&[client.as_bytes().to_vec()]);
    u64::from_le_bytes(h[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// [`client_key`] of the last client asked for, kept: transactions come in runs of one client's.
#[derive(Debug, Default)]
pub struct ClientKeys {
    last: Option<(ClientId, u64)>,
}

impl ClientKeys {
    /// `client`'s key (hashed only when the client differs from the last one asked for).
    ///
    /// ```
    /// use protocols::availability::{client_key, ClientKeys};
    /// let mut keys = ClientKeys::default();
    /// assert_eq!(keys.of(&"alice".into()), client_key("alice"));
    /// assert_eq!(keys.of(&"bob".into()), client_key("bob"));
    /// ```
    pub fn of(&mut self, client: &ClientId) -> u64 {
        match &self.last {
            Some((c, k)) if c == client => *k,
            _ => {
                let k = client_key(&client.0);
                self.last = Some((client.clone(), k));
                k
            }
        }
    }
}

/// [`bucket_of`] from the client's [`client_key`].
pub fn bucket_of_key(key: u64, n: u64, buckets: u64) -> u64 {
    (key % buckets + n % buckets) % buckets
}

/// A certificate that the batch `batch_id` is available: `signatures[i]` is `signers[i]`'s
/// signature of [`stored_statement`]`(instance, batch_id, buckets)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCert {
    /// The batch.
    pub batch_id: BatchId,
    /// The buckets its transactions were checked against by each signer, if any.
    pub buckets: Option<Buckets>,
    /// Who signed (distinct members, a weak quorum by weight).
    pub signers: Vec<mir_runtime::NodeId>,
    /// Their signatures, one per signer.
    pub signatures: Vec<Vec<u8>>,
}

/// An availability certificate: zero or more batch certificates. The **empty** certificate stands
/// for an empty batch (nothing to order) and is always valid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cert {
    /// The batches, in order.
    pub batches: Vec<BatchCert>,
}

impl Cert {
    /// Whether this certificate stands for no transactions.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The canonical encoding (for printing, sending to another node, or pasting back).
    pub fn to_bytes(&self) -> Vec<u8> {
        mir_runtime::codec::encode(self)
    }

    /// Decodes [`Cert::to_bytes`]; an error for anything else.
    pub fn from_bytes(b: &[u8]) -> Result<Self, mir_runtime::codec::DecodeError> {
        mir_runtime::codec::decode("availability.Cert", b)
    }
}

/// The statement a signer signs: it stored batch `batch_id` for instance `instance` (and checked
/// that its transactions fall in `buckets`, if given: their canonical encoding is signed too).
pub fn stored_statement(
    instance: &[u8],
    batch_id: &[u8],
    buckets: Option<&Buckets>,
) -> Vec<Vec<u8>> {
    let mut s = vec![instance.to_vec(), b"BATCH_STORED".to_vec(), batch_id.to_vec()];
    if let Some(b) = buckets {
        s.push(mir_runtime::codec::encode(b));
    }
    s
}

payload!(
    Tx = "availability.Tx",
    Cert = "availability.Cert",
    ClientProgress = "availability.ClientProgress",
);

/// Settings of the availability modules of one node (see [`add_to`]).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The mempool's limits.
    pub mempool: mempool::MempoolParams,
    /// The multisig collector's limits.
    pub msc: msc::MscParams,
    /// Most bytes the batch database holds, if not
    /// [`batchdb::DEFAULT_CAPACITY_BYTES`]. Under ISS it holds the batches of the epochs not
    /// yet garbage-collected: `retained_epochs + 1` whole epochs and the current one, just
    /// before a stable checkpoint. It must fit them, or signers refuse to store (and vouch for)
    /// new batches until garbage collection frees space.
    pub batchdb_capacity_bytes: Option<usize>,
    /// Where the batch fetcher sends ordered batches (and the mempool's rejections go to their
    /// submitter). Default `app`.
    pub destination: Option<String>,
    /// Where the batch fetcher sends the client progress at each snapshot, if anywhere.
    pub checkpoint: Option<String>,
    /// The write-ahead log module, if any: the batch database logs every batch it stores
    /// before answering (so a signature vouches for a durable batch), and takes them again on a
    /// restart ([`batchdb`]).
    pub wal: Option<String>,
}

/// The module names [`add_to`] uses.
pub mod names {
    /// The transport (provided by the caller or the simulator).
    pub const NET: &str = "net";
    /// The crypto module (provided by the caller).
    pub const CRYPTO: &str = "crypto";
    /// The timer (provided by the caller).
    pub const TIMER: &str = "timer";
    /// The hasher.
    pub const HASHER: &str = "hasher";
    /// The mempool.
    pub const MEMPOOL: &str = "mempool";
    /// The batch DB.
    pub const BATCHDB: &str = "batchdb";
    /// The multisig collector factory; epoch `e`'s instance is `availability/e`.
    pub const AVAILABILITY: &str = "availability";
    /// The batch fetcher.
    pub const BATCHFETCHER: &str = "batchfetcher";
}

/// Adds the availability layer to a node: `hasher` (on a worker thread in production),
/// `mempool`, `batchdb`, the `availability` factory and `batchfetcher`. The node must also have
/// `net`, `crypto` and `timer`. Create epoch `e`'s instance by sending the factory a
/// `NewSubmodule { id: availability/e, params: MscInstance { epoch: e, membership }, .. }`
/// ([`new_epoch_instance`]).
///
/// Returns an error for invalid limits.
pub fn add_to(
    builder: mir_runtime::NodeBuilder,
    me: mir_runtime::NodeId,
    config: &Config,
) -> Result<mir_runtime::NodeBuilder, String> {
    use mir_dsl::DslModule;
    use mir_runtime::{stdmodules::Hasher, ModuleId};
    config.mempool.validate().map_err(|e| format!("mempool: {e}"))?;
    config.msc.validate().map_err(|e| format!("msc: {e}"))?;
    if config.msc.max_txs_in_batch < config.mempool.max_txs_in_batch
        || config.msc.max_payload_in_batch < config.mempool.max_payload_in_batch
    {
        return Err(
            "msc: signers would refuse the mempool's full batches: its batch limits must be at least the mempool's"
                .into(),
        );
    }
    let id = ModuleId::new;
    if config.batchdb_capacity_bytes.is_some_and(|c| c < config.msc.max_payload_in_batch) {
        return Err(
            "batchdb_capacity_bytes must hold at least one full batch (msc.max_payload_in_batch)"
                .into(),
        );
    }
    let batchdb = batchdb::BatchDb::new().with_capacity_bytes(
        config.batchdb_capacity_bytes.unwrap_or(batchdb::DEFAULT_CAPACITY_BYTES),
    );
    let batchdb = match &config.wal {
        Some(w) => {
            batchdb.with_wal(ModuleId::try_new(w).map_err(|e| format!("availability wal: {e}"))?)
        }
        None => batchdb,
    };
    let mp = mempool::Mempool::new(
        config.mempool.clone(),
        mempool::MempoolModules { hasher: id(names::HASHER), timer: id(names::TIMER) },
    );
    let msc_modules = msc::MscModules {
        net: id(names::NET),
        crypto: id(names::CRYPTO),
        hasher: id(names::HASHER),
        mempool: id(names::MEMPOOL),
        batchdb: id(names::BATCHDB),
        timer: id(names::TIMER),
    };
    let fetcher = batchfetcher::BatchFetcher::new(batchfetcher::BatchFetcherModules {
        availability: id(names::AVAILABILITY),
        mempool: id(names::MEMPOOL),
        destination: id(config.destination.as_deref().unwrap_or("app")),
        checkpoint: config.checkpoint.as_deref().map(id),
    })
    .with_client_window(config.mempool.client_window);
    Ok(builder
        .passive_on_worker(names::HASHER, Hasher)
        .passive(names::MEMPOOL, DslModule::new(mp))
        .passive(names::BATCHDB, DslModule::new(batchdb))
        .passive(names::AVAILABILITY, msc::factory(msc_modules, config.msc.clone(), me))
        .passive(names::BATCHFETCHER, DslModule::new(fetcher)))
}

/// The event that creates the multisig collector instance of `epoch` (send it to the
/// `availability` factory, e.g. from the application's `Init` handler or by injecting it).
pub fn new_epoch_instance(
    epoch: u64,
    membership: &[(mir_runtime::NodeId, mir_dsl::Weight)],
) -> mir_runtime::stdevents::NewSubmodule {
    mir_runtime::stdevents::NewSubmodule {
        id: mir_runtime::ModuleId::new(names::AVAILABILITY).then(epoch),
        params: msc::MscInstance { epoch, membership: membership.to_vec() }.into(),
        retention_index: epoch,
    }
}
