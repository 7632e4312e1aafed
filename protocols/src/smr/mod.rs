//! # The SMR system: replicate an application with one trait
//!
//! Mir's Trantor puts ISS, the availability layer and checkpointing behind one constructor; this
//! module does the same for an [`Application`]: a deterministic state machine that applies
//! ordered transactions, takes snapshots for checkpoints and restores from them.
//!
//! * [`Application`]: the trait; [`kv::KvStore`] is the reference application (a key-value
//!   store the tests, the benchmark and the docs use);
//! * [`app::AppModule`]: runs an application as a node's `app` module: it applies every ordered
//!   batch, answers the checkpoint's snapshot requests, restores transferred states, and reports
//!   each transaction's result ([`app::Applied`]) to the module that answers clients;
//! * `system::System` (feature `system`, on by default): one builder for a whole node (gRPC
//!   transport, crypto, availability layer, ISS, checkpointing, WAL, the application and its
//!   client service);
//! * `gateway` and `service`: the client service (`protocols/proto/smr_client.proto`): submit
//!   a transaction, get a receipt (its log position and result) or a rejection with a reason,
//!   follow the log; `client::SmrClient`: the Rust client;
//! * `members` (feature `system`): a membership kept in the application's state and changed by
//!   ordered `add-node` / `remove-node` commands ([`Application::membership`]: reconfiguration);
//! * `signed` (feature `system`): signing clients, whose ID is their public key.
//!
//! `docs/smr.md` says how the pieces fit and how to replicate your own application.

pub mod app;
#[cfg(feature = "system")]
pub mod client;
#[cfg(feature = "system")]
pub mod gateway;
pub mod kv;
#[cfg(feature = "system")]
pub mod members;
#[cfg(feature = "system")]
pub mod service;
#[cfg(feature = "system")]
pub mod signed;
#[cfg(feature = "system")]
pub mod system;

use crate::availability::Tx;

/// A deterministic state machine replicated by the SMR system.
///
/// Every correct node applies the same transactions in the same order, so `apply` must depend
/// only on the state and the transaction: no clock, no randomness, no iteration over a `HashMap`
/// into anything ordered. A node that caught up by state transfer never sees the transactions
/// before the restored state: `restore` replaces everything.
///
/// ```
/// use protocols::availability::Tx;
/// use protocols::smr::Application;
///
/// /// Counts transactions; the result of each is the count so far.
/// #[derive(Default)]
/// struct Counter(u64);
///
/// impl Application for Counter {
///     fn apply(&mut self, _tx: &Tx) -> Vec<u8> {
///         self.0 += 1;
///         self.0.to_le_bytes().to_vec()
///     }
///     fn snapshot(&self) -> Vec<u8> {
///         self.0.to_le_bytes().to_vec()
///     }
///     fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
///         let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes".to_string())?;
///         self.0 = u64::from_le_bytes(bytes);
///         Ok(())
///     }
/// }
///
/// let mut c = Counter::default();
/// assert_eq!(c.apply(&Tx::new("alice", 0, "x")), 1u64.to_le_bytes());
/// let s = c.snapshot();
/// let mut d = Counter::default();
/// d.restore(&s).unwrap();
/// assert_eq!(d.0, 1);
/// ```
pub trait Application: Send + 'static {
    /// Applies one ordered transaction and returns its result (sent to the client that
    /// submitted it, in its receipt).
    fn apply(&mut self, tx: &Tx) -> Vec<u8>;

    /// The whole state, as bytes: a checkpoint certifies their hash, and a node that falls
    /// behind gets them (they must fit in one message of the transport: 16 MiB by default).
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with `snapshot` (a strong quorum certified it). An error means this
    /// node runs another application (or version) than the others: the node stops.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;

    /// Reconfiguration: the membership this application has decided, or `None` (the default)
    /// if it never changes the membership. Asked at every epoch boundary, after the epoch's last
    /// batch and before the snapshot: when the answer differs from the one at the previous
    /// boundary (or at the start, or at a restore), it becomes the membership
    /// `config_offset` epochs later ([`IssConfig::config_offset`]). It must be a function of the
    /// state, like everything else. [`kv::KvStore::with_membership`] shows one: `add-node` and
    /// `remove-node` commands.
    ///
    /// [`IssConfig::config_offset`]: crate::ordering::iss::IssConfig::config_offset
    /// (Feature `system`: memberships have addresses and keys.)
    #[cfg(feature = "system")]
    fn membership(&self) -> Option<Vec<mir_runtime::membership::Member>> {
        None
    }
}
