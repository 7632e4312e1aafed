//! # mir-dsl-macros: the `#[protocol]` procedural macro
//!
//! Turns an impl block of upon-handlers into an implementation of `mir_dsl::Protocol` (a main
//! block) or of one of its parts. The stages follow the usual shape of a derive crate (serde,
//! thiserror), one module each:
//!
//! 1. `attr`: parse `#[protocol(…)]` and each method's `#[upon(…)]`, leniently: a mistake is
//!    recorded and the most likely meaning kept, so later stages still run;
//! 2. `model`: build the protocol model as written (handlers with their kinds, signatures and
//!    spans), and the error collector, `model::Ctxt`;
//! 3. `check`: one function per DSL rule, every rule on every handler, all errors combined into
//!    one `syn::Error`, each underlining the whole offending tokens;
//! 4. `expand`: small code, a dispatch function per block that tests the event's type and calls
//!    ordinary functions of `mir_dsl::__private`, and one-line marker impls that make a handler
//!    that would never run a compile error; or, on any error,
//! 5. `fallback`: the block as plain Rust, the errors, and stand-ins for what other code touches
//!    (the `Protocol` or `Part` impl, the main block's `ListsPart` impls, the `HandlesResponse`
//!    impls), so one mistake gives one error, not a cascade at every `ctx.request` and at
//!    `DslModule::new`.
//!
//! `tests/expand/small.expanded.rs` is the output for a small protocol, checked by a test
//! (`src/snapshot.rs`). Documentation of the DSL itself is in the `mir-dsl` crate.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

mod attr;
mod check;
mod expand;
mod fallback;
mod model;
#[cfg(test)]
mod snapshot;

/// Makes an impl block of upon-handlers a protocol. See the `mir-dsl` crate documentation.
#[proc_macro_attribute]
pub fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    expand_protocol(args.into(), input.into()).into()
}

/// The whole macro on `proc_macro2` tokens: parse, model, check, then expand or fall back.
/// (Callable outside a macro invocation: the expansion snapshot uses it.)
fn expand_protocol(args: TokenStream2, input: TokenStream2) -> TokenStream2 {
    let mut item: syn::ItemImpl = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let e = syn::Error::new_spanned(
                &input,
                "`#[protocol]` goes on an impl block: `#[protocol] impl MyProtocol { … }`",
            )
            .to_compile_error();
            return quote! { #e #input };
        }
    };
    let cx = model::Ctxt::new();
    let args = attr::parse_protocol_args(&cx, args);
    let model = model::build(&cx, args, &mut item);
    check::check(&cx, &item, &model);
    match cx.check() {
        Ok(()) => {
            let generated = expand::expand(&model);
            quote! {
                #item
                #generated
            }
        }
        Err(errors) => fallback::fallback(item, &model, errors),
    }
}
