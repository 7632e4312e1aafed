//! The expansion when the checks found errors: the errors, the block as plain Rust, and stand-ins
//! for everything other code touches, so that one mistake gives one error, not a cascade at every
//! `ctx.request`, at `DslModule::new`, in the main block that calls a part, or in the parts of a
//! main block.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{ImplItem, ItemImpl};

use crate::attr::{Kind, ProtocolArgs};
use crate::expand::{dispatch_sig, part_id};
use crate::model::{may_be_same, Protocol};

pub fn fallback(mut item: ItemImpl, model: &Protocol, errors: syn::Error) -> TokenStream {
    // An `async` handler is reported once, by the DSL (not again by rustc's lifetime rules).
    for it in &mut item.items {
        if let ImplItem::Fn(f) = it {
            if model.handlers.iter().any(|h| h.sig.ident == f.sig.ident) {
                f.sig.asyncness = None;
            }
        }
    }
    let errors = errors.to_compile_error();
    let stand_in = stand_in(&item, model);
    quote! {
        #item
        #errors
        #stand_in
    }
}

/// The `Protocol` impl (a main block) or the `Part` impl (a part), taking no events, the main
/// block's `ListsPart` impls, and one `HandlesResponse` impl per (response, continuation) pair the
/// handlers name. Only what other code relies on: not the markers against duplicate groups, which
/// could only add errors. Nothing when the block's type cannot carry impls (a trait impl, a
/// generic type).
fn stand_in(item: &ItemImpl, model: &Protocol) -> TokenStream {
    if item.trait_.is_some() || !item.generics.params.is_empty() {
        return TokenStream::new();
    }
    let self_ty = &model.self_ty;
    let block = match &model.args {
        None => TokenStream::new(),
        Some(ProtocolArgs::Main { parts }) => {
            let mut ids: Vec<TokenStream> = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                if !parts[..i].contains(part) {
                    ids.push(part_id(part));
                }
            }
            let dispatch = takes_nothing("__dispatch");
            quote! {
                impl ::mir_dsl::Protocol for #self_ty { #dispatch }
                #(impl ::mir_dsl::__private::ListsPart<#ids> for #self_ty {})*
            }
        }
        Some(ProtocolArgs::Part(name)) => {
            let id = part_id(name);
            let dispatch = takes_nothing("dispatch");
            quote! { impl ::mir_dsl::__private::Part<#id> for #self_ty { #dispatch } }
        }
    };
    // One impl per pair that may be one type: two spellings of one pair (an error reported
    // already) must not add a conflict of their own.
    let mut pairs: Vec<(&syn::Type, &syn::Type)> = Vec::new();
    for h in model.handlers.iter().filter(|h| h.kind == Some(Kind::Response)) {
        let (Some(ty), Some(cont)) = (h.ty(), h.cont()) else { continue };
        if !pairs.iter().any(|(t, c)| may_be_same(t, ty) && may_be_same(c, cont)) {
            pairs.push((ty, cont));
        }
    }
    let resp = pairs.iter().map(|(ty, cont)| {
        quote! { impl ::mir_dsl::HandlesResponse<#ty, #cont> for #self_ty {} }
    });
    quote! {
        #block
        #(#resp)*
    }
}

/// A dispatch function `name` that takes no event.
fn takes_nothing(name: &str) -> TokenStream {
    let name = format_ident!("{name}");
    let sig = dispatch_sig();
    quote! {
        #[allow(unused_variables)]
        fn #name #sig { ::core::result::Result::Ok(::core::option::Option::Some(ev)) }
    }
}
