//! # protocols: distributed protocols written in the `#[protocol]` DSL
//!
//! Each protocol module opens with its algorithm in prose, its phases, and the paper it follows;
//! its handlers carry the pseudocode lines they implement.
//!
//! | protocol | module |
//! |---|---|
//! | Signed Echo Broadcast (Reiter '94; Cachin, Guerraoui, Rodrigues) | [`bcb`] |
//! | Availability layer: mempool, batch DB, multisig collector, batch fetcher (Mir's, as used by ISS) | [`availability`] |
//! | Ordering: PBFT as sequenced broadcast (Castro–Liskov, as Mir runs it for ISS), checkpointing, ISS, crash recovery, reconfiguration | [`ordering`] |
//! | The SMR system: an application trait, the reference key-value store, memberships the application decides, signing clients, one builder for a whole node and its gRPC client service | [`smr`] |
//!
//! Invariants checked online in the simulator or offline over recorded runs live in
//! [`monitors`].

pub mod availability;
pub mod bcb;
pub mod monitors;
pub mod ordering;
pub mod smr;

pub use mir_dsl;
