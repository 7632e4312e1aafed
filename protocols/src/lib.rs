//! # protocols: distributed protocols on the Mir runtime
//!
//! Not built yet: BCB (issue 3), the availability layer (issue 6), then PBFT, checkpointing, ISS
//! and the SMR system, each module opening with its algorithm in prose and the paper it follows.

pub use mir_dsl;
