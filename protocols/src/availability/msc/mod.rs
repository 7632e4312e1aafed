//! The multisig collector: availability certificates for batches, one instance per epoch.
//!
//! One protocol in three parts that share the state of [`Msc`]:
//!
//! * [certificate creation](creation): on [`RequestCert`], take a batch from the mempool, ask
//!   every member to store it and sign that it did, and answer with a certificate once the
//!   signers weigh a weak quorum (f + 1);
//! * [certificate verification](verification): [`VerifyCert`] checks the signers are distinct
//!   members of weak-quorum weight, then every signature;
//! * [batch reconstruction](reconstruction): [`RequestTransactions`] turns a (verified)
//!   certificate back into its transactions, from the local batch DB or else from the
//!   certificate's signers, checking each fetched batch against its ID and moving to the next
//!   signer on a timeout.
//!
//! A certificate's signatures are over `(instance, "BATCH_STORED", batch ID)`
//! ([`stored_statement`](super::stored_statement)); the instance bytes are the epoch, so a
//! certificate of one epoch does not verify in another.
//!
//! [`factory`] makes a [factory](mir_runtime::stdmodules::Factory) that creates
//! `<factory>/<epoch>` instances from [`MscInstance`] parameters and removes them by epoch.

pub mod creation;
pub mod reconstruction;
pub mod verification;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use mir_dsl::{fatal, protocol, Ctx, Handled, Voters, Weight};
use mir_runtime::stdevents::crypto::{HashResult, Origin};
use mir_runtime::stdevents::Init;
use mir_runtime::stdmodules::Factory;
use mir_runtime::{payload, request_response, ModuleError, ModuleId, NodeId};
use serde::{Deserialize, Serialize};

use super::{batch_id_request, tx_ids_request, BatchCert, BatchId, Buckets, Cert, Tx, TxId};

// ---- Events (requests and responses) ----

/// Asks for a certificate of a new batch (answered with [`NewCert`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCert {
    /// The buckets the batch's transactions must fall in, if any.
    pub buckets: Option<Buckets>,
    /// Who asked.
    pub origin: Origin,
}

/// A certificate (empty if the mempool had nothing to propose).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCert {
    /// The certificate.
    pub cert: Cert,
    /// The request's origin.
    pub origin: Origin,
}

/// Asks whether `cert` is valid (answered with [`CertVerified`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyCert {
    /// The certificate.
    pub cert: Cert,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`VerifyCert`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertVerified {
    /// Whether the certificate is valid.
    pub valid: bool,
    /// Why not, if not.
    pub error: Option<String>,
    /// The request's origin.
    pub origin: Origin,
}

/// Asks for the transactions of a verified certificate (answered with [`ProvideTransactions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestTransactions {
    /// The certificate.
    pub cert: Cert,
    /// Who asked.
    pub origin: Origin,
}

/// The transactions of a certificate, batch after batch in its order, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideTransactions {
    /// The transactions (empty when `error` is set).
    pub txs: Vec<Tx>,
    /// `None` if `txs` are the certificate's transactions; else why the certificate cannot be
    /// served (it is malformed: not a weak quorum of distinct members, more than one batch).
    pub error: Option<String>,
    /// The request's origin.
    pub origin: Origin,
}

/// Collecting the signatures of certificate `req_id` waited long enough for attempt `attempt`
/// (from the timer, to itself): ask the members that did not answer again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigTimeout {
    /// The certificate's number.
    pub req_id: u64,
    /// The attempt that timed out.
    pub attempt: u64,
}

/// A fetch of `batch_id` waited long enough for attempt `attempt` (from the timer, to itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchTimeout {
    /// The batch being fetched.
    pub batch_id: BatchId,
    /// The attempt that timed out.
    pub attempt: u64,
}

// ---- Messages ----

/// Source → members: store this batch and sign that you did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSigMessage {
    /// The source's number for this certificate.
    pub req_id: u64,
    /// The batch.
    pub txs: Vec<Tx>,
    /// The buckets its transactions must fall in (checked by each signer), if any.
    pub buckets: Option<Buckets>,
}

/// Member → source: my signature that I stored the batch of `req_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigMessage {
    /// The source's number for the certificate.
    pub req_id: u64,
    /// The signature of `(instance, "BATCH_STORED", batch ID)`.
    pub signature: Vec<u8>,
}

/// Fetcher → signer: send me batch `batch_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatchMessage {
    /// The batch.
    pub batch_id: BatchId,
}

/// Signer → fetcher: batch `batch_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvideBatchMessage {
    /// The batch ID (checked by the receiver against the transactions).
    pub batch_id: BatchId,
    /// The transactions.
    pub txs: Vec<Tx>,
}

/// Parameters of a [`factory`]-made instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MscInstance {
    /// The epoch (also the batch DB retention index and the instance bytes).
    pub epoch: u64,
    /// The members and their weights in this epoch.
    pub membership: Vec<(NodeId, Weight)>,
}

payload!(
    RequestCert = "availability.RequestCert",
    NewCert = "availability.NewCert",
    VerifyCert = "availability.VerifyCert",
    CertVerified = "availability.CertVerified",
    RequestTransactions = "availability.RequestTransactions",
    ProvideTransactions = "availability.ProvideTransactions",
    FetchTimeout = "availability.FetchTimeout",
    SigTimeout = "availability.SigTimeout",
    RequestSigMessage = "availability.RequestSigMessage",
    SigMessage = "availability.SigMessage",
    RequestBatchMessage = "availability.RequestBatchMessage",
    ProvideBatchMessage = "availability.ProvideBatchMessage",
    MscInstance = "availability.Instance",
);
request_response!(
    RequestCert => NewCert,
    VerifyCert => CertVerified,
    RequestTransactions => ProvideTransactions,
);

impl RequestCert {
    /// A request for a certificate.
    pub fn new() -> Self {
        RequestCert { buckets: None, origin: Origin::unset() }
    }

    /// A request for a certificate of a batch of `buckets` only.
    pub fn in_buckets(buckets: Option<Buckets>) -> Self {
        RequestCert { buckets, origin: Origin::unset() }
    }
}

impl Default for RequestCert {
    fn default() -> Self {
        RequestCert::new()
    }
}

impl VerifyCert {
    /// A request to verify `cert`.
    pub fn new(cert: Cert) -> Self {
        VerifyCert { cert, origin: Origin::unset() }
    }
}

impl RequestTransactions {
    /// A request for the transactions of `cert`.
    pub fn new(cert: Cert) -> Self {
        RequestTransactions { cert, origin: Origin::unset() }
    }
}

// ---- Configuration ----

/// The modules an instance talks to.
#[derive(Debug, Clone)]
pub struct MscModules {
    /// The transport.
    pub net: ModuleId,
    /// The crypto module.
    pub crypto: ModuleId,
    /// The hasher.
    pub hasher: ModuleId,
    /// The mempool.
    pub mempool: ModuleId,
    /// The batch DB.
    pub batchdb: ModuleId,
    /// The timer.
    pub timer: ModuleId,
}

/// Limits and timing of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MscParams {
    /// Most batches a signer stores and signs for one source in one instance (ISS: the segment
    /// length). Bounds what a Byzantine source can make others store.
    pub max_requests: u64,
    /// Most bytes (by [`Tx::size`](super::Tx::size)) a signer stores for one source in one
    /// instance: with `max_requests`, what one Byzantine member can make every correct node
    /// hold per epoch. Default 64 MiB.
    pub max_bytes_per_source: usize,
    /// Most transactions in a batch a signer accepts (the mempool's `max_txs_in_batch`).
    pub max_txs_in_batch: usize,
    /// Most bytes in a batch a signer accepts, counted by [`Tx::size`](super::Tx::size) (the
    /// mempool's `max_payload_in_batch`).
    pub max_payload_in_batch: usize,
    /// How long reconstruction waits for a signer before asking the next one.
    pub fetch_timeout: Duration,
    /// How long certificate creation waits for signatures before asking the members that have
    /// not answered again.
    pub sig_timeout: Duration,
}

impl Default for MscParams {
    fn default() -> Self {
        MscParams {
            max_requests: 1024,
            max_bytes_per_source: 64 << 20,
            max_txs_in_batch: 1024,
            max_payload_in_batch: 1 << 20,
            fetch_timeout: Duration::from_millis(500),
            sig_timeout: Duration::from_millis(500),
        }
    }
}

impl MscParams {
    /// Checks the limits make sense.
    ///
    /// ```
    /// use protocols::availability::msc::MscParams;
    /// assert!(MscParams::default().validate().is_ok());
    /// let zero = MscParams { fetch_timeout: std::time::Duration::ZERO, ..MscParams::default() };
    /// assert!(zero.validate().unwrap_err().contains("fetch_timeout"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.max_requests == 0 {
            return Err("max_requests must be at least 1 (else no node ever signs)".into());
        }
        if self.max_bytes_per_source < self.max_payload_in_batch {
            return Err(format!(
                "max_bytes_per_source ({}) must hold at least one full batch ({})",
                self.max_bytes_per_source, self.max_payload_in_batch
            ));
        }
        if self.max_txs_in_batch == 0 || self.max_payload_in_batch == 0 {
            return Err("max_txs_in_batch and max_payload_in_batch must be at least 1".into());
        }
        if self.fetch_timeout.is_zero() {
            return Err("fetch_timeout must be positive (else fetches retry in a busy loop)".into());
        }
        Ok(())
    }
}

// ---- State ----

/// The certificate being collected.
struct Collecting {
    req_id: u64,
    batch_id: BatchId,
    /// The batch (sent again to members that do not answer).
    txs: Vec<Tx>,
    /// The buckets it was drawn from.
    buckets: Option<Buckets>,
    /// Times the signatures were asked for.
    attempt: u64,
    /// Valid signatures so far.
    sigs: BTreeMap<NodeId, Vec<u8>>,
    /// Signatures being verified.
    checking: BTreeSet<NodeId>,
}

/// A batch being fetched from signers.
struct Missing {
    signers: Vec<NodeId>,
    /// Index into `signers` of the one asked last.
    asked: usize,
    attempt: u64,
    /// (fetch, batch index) waiting for it.
    waiting: Vec<(u64, usize)>,
}

/// A [`RequestTransactions`] being served.
struct Fetch {
    origin: Origin,
    batches: Vec<Option<Vec<Tx>>>,
}

/// One multisig collector instance (a `#[protocol]` in parts; wrap it in
/// [`mir_dsl::DslModule`]).
pub struct Msc {
    modules: MscModules,
    params: MscParams,
    instance: Vec<u8>,
    epoch: u64,
    membership: Voters,
    me: NodeId,
    // Certificate creation, source side.
    requests: VecDeque<(Origin, Option<Buckets>)>,
    /// A batch was asked for and is not being collected yet (asked, or its ID being hashed).
    asked_mempool: bool,
    collecting: Option<Collecting>,
    next_req_id: u64,
    // Certificate creation, signer side: per source, its certificate numbers and our signature
    // (`None` while it is being made); at most `max_requests` per source.
    signed: BTreeMap<NodeId, BTreeMap<u64, Option<Vec<u8>>>>,
    /// Bytes of the batches stored for each source (this instance: this epoch).
    stored_bytes: BTreeMap<NodeId, usize>,
    /// Requests refused per source (a transaction outside its client's window); they count
    /// against `max_requests`.
    refused: BTreeMap<NodeId, u64>,
    // Reconstruction.
    fetches: BTreeMap<u64, Fetch>,
    next_fetch: u64,
    /// Numbers fetch attempts across all batches, so a timeout of an earlier fetch of the same
    /// batch never matches a later one.
    next_attempt: u64,
    missing: BTreeMap<BatchId, Missing>,
}

impl Msc {
    /// Instance for epoch `epoch` run by node `me`.
    pub fn new(
        modules: MscModules,
        params: MscParams,
        epoch: u64,
        membership: Voters,
        me: NodeId,
    ) -> Self {
        Msc {
            modules,
            params,
            instance: epoch.to_le_bytes().to_vec(),
            epoch,
            membership,
            me,
            requests: VecDeque::new(),
            asked_mempool: false,
            collecting: None,
            next_req_id: 0,
            signed: BTreeMap::new(),
            stored_bytes: BTreeMap::new(),
            refused: BTreeMap::new(),
            fetches: BTreeMap::new(),
            next_fetch: 0,
            next_attempt: 0,
            missing: BTreeMap::new(),
        }
    }

    fn members(&self) -> Vec<NodeId> {
        self.membership.nodes().cloned().collect()
    }

    /// Whether a batch of `txs` is within the limits a signer accepts.
    fn batch_within_limits(&self, txs: &[Tx]) -> Result<(), String> {
        if txs.len() > self.params.max_txs_in_batch {
            return Err(format!(
                "{} transactions, more than {}",
                txs.len(),
                self.params.max_txs_in_batch
            ));
        }
        let bytes = super::total_bytes(txs);
        if bytes > self.params.max_payload_in_batch {
            return Err(format!("{bytes} bytes, more than {}", self.params.max_payload_in_batch));
        }
        Ok(())
    }
}

/// A received batch being hashed: id := hash(hash(txs)) takes two hasher rounds (the
/// transaction IDs, then the batch ID over them). Signers and reconstruction both need it.
#[derive(Debug)]
pub struct HashingBatch {
    txs: Vec<Tx>,
    /// Set once the first round is back.
    tx_ids: Option<Vec<TxId>>,
    then: AfterHash,
}

/// A signer's pending signature: for `from`'s request `req_id`, over `buckets`.
#[derive(Debug)]
pub(super) struct SignFor {
    pub(super) from: NodeId,
    pub(super) req_id: u64,
    pub(super) buckets: Option<Buckets>,
}

/// A signer checking `from`'s batch against the clients' windows ([`creation`]).
#[derive(Debug)]
pub struct SignerWindow {
    pub(super) from: NodeId,
    pub(super) req_id: u64,
    pub(super) buckets: Option<Buckets>,
    pub(super) txs: Vec<Tx>,
}

/// Who waits for a batch's ID.
#[derive(Debug)]
pub(super) enum AfterHash {
    /// A signer storing `from`'s batch of request `req_id` ([`creation`]).
    Sign(SignFor),
    /// A batch `from` provided for the missing `batch_id` ([`reconstruction`]).
    Provided { from: NodeId, batch_id: BatchId },
}

impl Msc {
    /// Starts computing the ID of `txs`; [`AfterHash`] says what follows.
    fn hash_batch(&self, ctx: &mut Ctx<Self>, txs: Vec<Tx>, then: AfterHash) {
        let first = tx_ids_request(&txs);
        ctx.request(&self.modules.hasher, first, HashingBatch { txs, tx_ids: None, then });
    }
}

#[protocol(parts(creation, verification, reconstruction))]
impl Msc {
    #[upon(event)]
    fn init(&mut self, _ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        Ok(())
    }

    /// id := hash(hash(txs)): the transaction IDs are back, hash them into the batch ID …
    #[upon(response)]
    fn batch_hashed(&mut self, ctx: &mut Ctx<Self>, h: HashResult, mut c: HashingBatch) -> Handled {
        let Some(tx_ids) = c.tx_ids.take() else {
            let second = batch_id_request(&h.digests);
            c.tx_ids = Some(h.digests);
            ctx.request(&self.modules.hasher, second, c);
            return Ok(());
        };
        // … and hand (id, ids, txs) to whoever waits for it.
        let Some(id) = h.digests.into_iter().next() else {
            fatal!("the hasher returned no digest")
        };
        match c.then {
            AfterHash::Sign(to) => self.signer_hashed(ctx, to, id, tx_ids, c.txs),
            AfterHash::Provided { from, batch_id } => {
                self.provided_hashed(ctx, from, batch_id, id, tx_ids, c.txs)
            }
        }
    }
}

/// A factory of instances: `NewSubmodule { id: <factory>/<epoch>, params: MscInstance { epoch,
/// membership }, retention_index: epoch }` creates the instance of `epoch`; `GarbageCollect`
/// removes old epochs. Messages for an epoch not created yet wait (bounded per sender).
pub fn factory(modules: MscModules, params: MscParams, me: NodeId) -> Factory {
    let timer = modules.timer.clone();
    Factory::of(move |_id, inst: MscInstance| {
        if inst.membership.is_empty() {
            let e = format!("availability factory: epoch {} has an empty membership", inst.epoch);
            return Err(ModuleError::new(e));
        }
        let voters = Voters::new(inst.membership);
        Ok(mir_dsl::DslModule::new(Msc::new(
            modules.clone(),
            params.clone(),
            inst.epoch,
            voters,
            me.clone(),
        )))
    })
    .cancel_timers_at(timer) // a garbage-collected epoch's timers stop
}

/// The certificate of one batch, from collected signatures.
fn batch_cert(
    batch_id: BatchId,
    buckets: Option<Buckets>,
    sigs: &BTreeMap<NodeId, Vec<u8>>,
) -> BatchCert {
    let (signers, signatures) = sigs.iter().map(|(n, s)| (n.clone(), s.clone())).unzip();
    BatchCert { batch_id, buckets, signers, signatures }
}
