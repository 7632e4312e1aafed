//! # examples: runnable programs built on the Mir runtime
//!
//! | binary | what it shows |
//! |---|---|
//! | `pingpong` | two modules, run by the production executor on tokio, or as two nodes over the simulated network in the deterministic simulator; written by hand ([`pingpong`]) and in the DSL ([`pingpong_dsl`], `--dsl`) |
//!
//! The modules of each example live in this library so that tests can drive them too.

pub mod pingpong;
pub mod pingpong_dsl;
