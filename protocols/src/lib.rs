//! # protocols: distributed protocols written in the `#[protocol]` DSL
//!
//! Each protocol module opens with its algorithm in prose, its phases, and the paper it follows;
//! its handlers carry the pseudocode lines they implement.
//!
//! | protocol | module |
//! |---|---|
//! | Signed Echo Broadcast (Reiter '94; Cachin, Guerraoui, Rodrigues) | [`bcb`] |
//!
//! Still to come: the availability layer, PBFT, checkpointing, ISS and the SMR system.

pub mod bcb;

pub use mir_dsl;
