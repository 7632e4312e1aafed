//! # ISS: Insanely Scalable SMR (issue 15, in progress)
//!
//! Stathakopoulou, Pavlovic, Vukolić, "State Machine Replication Scalability Made Simple",
//! EuroSys 2022; spec `iss-spec.md` §1, §5. ISS multiplexes sequenced-broadcast instances
//! ([`pbft`](super::pbft)) into one totally ordered log: epochs, segments interleaved over
//! sorted leaders, buckets so that no request is ordered twice, leader selection that sidelines
//! faulty leaders, checkpoints at epoch ends.
//!
//! Built so far: the deterministic building blocks, each with its tests —
//!
//! * [`epoch`]: an epoch's layout (interleaved segments, bucket assignment), request → bucket;
//! * [`leaders`]: the leader-selection policies (simple, single, backoff, blacklist).
//!
//! The ISS module itself (instances per epoch, the log, epoch transitions with checkpoints,
//! state transfer) is next; see `docs/status.md`.

pub mod epoch;
pub mod leaders;
