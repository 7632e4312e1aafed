//! # mir-dsl-macros: the `#[protocol]` procedural macro
//!
//! Turns an impl block of upon-handlers into an implementation of `mir_dsl::Protocol`. The stages
//! follow the usual shape of a derive crate:
//!
//! 1. `attr`: parse `#[protocol(…)]` and each method's `#[upon(…)]`;
//! 2. `model`: build the protocol model (handlers with their kinds, types and spans), checking
//!    each DSL rule in its own function and collecting every error (a `model::Ctxt`);
//! 3. `expand`: generate small code — a dispatch method per impl block that tests the event's
//!    type and calls ordinary functions of `mir_dsl::__private`.
//!
//! On invalid input the macro still emits the impl block (without the DSL attributes) next to the
//! errors, so one mistake does not cascade into errors everywhere the protocol is used.
//!
//! Documentation of the DSL itself is in the `mir-dsl` crate.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod model;

/// Makes an impl block of upon-handlers a protocol. See the `mir-dsl` crate documentation.
#[proc_macro_attribute]
pub fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input = proc_macro2::TokenStream::from(input);
    expand::protocol(args, input).into()
}
