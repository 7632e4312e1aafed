//! The two executors that run nodes: [`tokio`] (production) and [`sim`] (deterministic
//! simulation). Both drive the same node core, so a module behaves the same in both.

pub mod sim;
pub mod tokio;
