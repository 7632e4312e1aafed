//! # mir-dsl-macros: the `#[protocol]` procedural macro
//!
//! Not built yet (issue 3). It will turn a protocol written as upon-handlers into a
//! `mir_runtime::PassiveModule` implementation that calls ordinary functions of `mir-dsl`.
