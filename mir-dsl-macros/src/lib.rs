//! # mir-dsl-macros: the `#[protocol]` procedural macro
//!
//! Turns an impl block of upon-handlers into an implementation of `mir_dsl::Protocol`. The stages
//! follow the usual shape of a derive crate:
//!
//! 1. `attr`: parse `#[protocol(…)]` and each method's `#[upon(…)]`;
//! 2. `model`: build the protocol model leniently (handlers as written, with their kinds,
//!    signatures and spans);
//! 3. `check`: one function per DSL rule, every rule on every handler, all errors collected (a
//!    `model::Ctxt`) and each underlining the whole offending tokens;
//! 4. `expand`: generate small code — a dispatch method per impl block that tests the event's
//!    type and calls ordinary functions of `mir_dsl::__private`, plus the list of handler groups
//!    the module checks when it is built.
//!
//! On invalid input the macro emits the impl block (without the DSL attributes), the errors, and
//! a fallback: the `Protocol` impl (or the part's functions) doing nothing and the
//! `HandlesResponse` impls of every response handler it could read, so one mistake gives one
//! error, not a cascade at every `ctx.request` and `DslModule::new`.
//!
//! `tests/expand/small.expanded.rs` is the output for a small protocol, checked by a test.
//!
//! Documentation of the DSL itself is in the `mir-dsl` crate.

use proc_macro::TokenStream;

mod attr;
mod check;
mod expand;
mod model;
#[cfg(test)]
mod snapshot;

/// Makes an impl block of upon-handlers a protocol. See the `mir-dsl` crate documentation.
#[proc_macro_attribute]
pub fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input = proc_macro2::TokenStream::from(input);
    expand::protocol(args, input).into()
}
