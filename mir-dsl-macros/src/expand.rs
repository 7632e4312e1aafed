//! Stage 4: the code for a block that passed the checks. It stays small: a dispatch function
//! that tests the event's type against each group of handlers and calls them, the conditions,
//! and one-line marker impls; decoding, continuations and policy are ordinary functions of
//! `mir_dsl::__private`.
//!
//! Spans are chosen so that what rustc still has to check points at the user's tokens: an
//! argument carries the span of its parameter's type, a handler's result the span of its return
//! type, a marker impl the span of the handled type, anything about a part the span of its name.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Type;

use crate::attr::{Kind, ProtocolArgs};
use crate::model::{spelled, Handler, Protocol};

/// The generated code of a block that passed the checks.
pub fn expand(model: &Protocol) -> TokenStream {
    match model.args.as_ref().expect("checked") {
        ProtocolArgs::Main { parts } => main_block(model, parts),
        ProtocolArgs::Part(name) => part_block(model, name),
    }
}

fn private() -> TokenStream {
    quote!(::mir_dsl::__private)
}

/// `{ ::mir_dsl::__private::part_id("name") }`: the number that names a part in a trait's
/// generic argument, written so it reads as the name; every token at `name`.
pub fn part_id(name: &Ident) -> TokenStream {
    let lit = syn::LitStr::new(&name.to_string(), name.span());
    quote_spanned!(name.span()=> { ::mir_dsl::__private::part_id(#lit) })
}

/// `<Self as Part<…>>` of part `name`, every token at `name` (a part listed and defined nowhere
/// is reported on its name in `parts(…)`).
fn part_of_self(name: &Ident) -> TokenStream {
    let id = part_id(name);
    quote_spanned!(name.span()=> <Self as ::mir_dsl::__private::Part<#id>>)
}

/// The signature of a dispatch function, after its name.
pub fn dispatch_sig() -> TokenStream {
    quote! {
        (
            &mut self,
            ctx: &mut ::mir_dsl::Ctx<'_, Self>,
            ev: ::mir_dsl::mir_runtime::Event,
        ) -> ::core::result::Result<::core::option::Option<::mir_dsl::mir_runtime::Event>, ::mir_dsl::Reject>
    }
}

/// The handlers of one kind grouped by their types as written, in declaration order. (Two
/// spellings of one type would make two groups: `check::one_spelling_per_type` and the marker
/// impls refuse that.)
fn groups(model: &Protocol, kind: Kind) -> Vec<Vec<&Handler>> {
    let key = |h: &Handler| h.ty().into_iter().chain(h.cont()).map(spelled).collect::<Vec<_>>();
    let mut out: Vec<Vec<&Handler>> = Vec::new();
    for h in model.handlers.iter().filter(|h| h.kind == Some(kind)) {
        match out.iter_mut().find(|g| key(g[0]) == key(h)) {
            Some(g) => g.push(h),
            None => out.push(vec![h]),
        }
    }
    out
}

/// Calls one handler with `ctx` and `values`; each argument carries the span of its parameter's
/// type, and the result goes through `handled`, at the return type, so a parameter or return of
/// the wrong type is reported on the signature. `clone` passes clones (all handlers of a group but
/// the last).
fn call(h: &Handler, values: &[Ident], clone: bool) -> TokenStream {
    let params = h.params();
    let ctx = Ident::new("ctx", params[0].ty.span());
    let args = values.iter().zip(&params[1..]).map(|(v, p)| {
        let span = p.ty.span();
        let v = Ident::new(&v.to_string(), span);
        if clone {
            quote_spanned!(span=> ::core::clone::Clone::clone(&#v))
        } else {
            v.into_token_stream()
        }
    });
    let m = h.method();
    // The call `self.m(…)` spans the return type (its first token; the name keeps its own span):
    // rustc reports a result that is not `Handled` on the call.
    let ret = h.ret().map_or(h.span, |t| t.span());
    let receiver = Ident::new("self", ret);
    let mut args = Group::new(Delimiter::Parenthesis, quote!(#ctx, #(#args),*));
    args.set_span(ret);
    quote_spanned!(h.span=> ::mir_dsl::__private::handled(#receiver.#m #args)?;)
}

/// Calls each handler of a group in declaration order; all but the last get clones.
fn calls(group: &[&Handler], values: &[Ident]) -> TokenStream {
    let n = group.len();
    group.iter().enumerate().map(|(i, h)| call(h, values, i + 1 < n)).collect()
}

/// Offers `ev` to the block's handlers: each group returns once it took the event; an event no
/// group takes falls through (to the parts, then to the module's policy for unhandled events).
fn dispatch_body(model: &Protocol) -> TokenStream {
    let p = private();
    let done = quote!(return ::core::result::Result::Ok(::core::option::Option::None););
    let events = groups(model, Kind::Event).into_iter().map(|g| {
        let ty = g[0].ty().expect("checked");
        let c = calls(&g, &[format_ident!("value")]);
        quote! {
            if ev.is::<#ty>() {
                let value = #p::value::<#ty>(ev)?;
                #c
                #done
            }
        }
    });
    let messages = groups(model, Kind::Message).into_iter().map(|g| {
        let ty = g[0].ty().expect("checked");
        let c = calls(&g, &[format_ident!("from"), format_ident!("msg")]);
        quote! {
            if #p::message_is::<#ty>(&ev) {
                let (from, msg) = #p::message_value::<#ty>(ev)?;
                #c
                #done
            }
        }
    });
    let responses = groups(model, Kind::Response).into_iter().map(|g| {
        let (ty, cont) = (g[0].ty().expect("checked"), g[0].cont().expect("checked"));
        let c = calls(&g, &[format_ident!("res"), format_ident!("cont")]);
        quote! {
            let ev = if ev.is::<#ty>() {
                let ev = #p::typed::<#ty>(ev)?;
                if #p::pending_is::<Self, #ty, #cont>(ctx, #p::get::<#ty>(&ev))? {
                    let res = #p::value::<#ty>(ev)?;
                    let cont = #p::take_continuation::<Self, #ty, #cont>(ctx, &res);
                    #c
                    #done
                }
                ev
            } else {
                ev
            };
        }
    });
    quote! {
        #(#events)*
        #(#messages)*
        #(#responses)*
    }
}

/// The calls of the block's conditions of one kind (per event or per batch).
fn conditions(model: &Protocol, per_batch: bool) -> TokenStream {
    model
        .handlers
        .iter()
        .filter(|h| h.kind == Some(Kind::Condition { per_batch }))
        .map(|h| call(h, &[], false))
        .collect()
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|t| match t {
            TokenTree::Group(g) => {
                let mut new = Group::new(g.delimiter(), respan(g.stream(), span));
                new.set_span(span);
                TokenTree::Group(new)
            }
            mut t => {
                t.set_span(span);
                t
            }
        })
        .collect()
}

/// `impl trait_ for Self {}` whose header spans `types` (first to last token), so that two groups
/// of one type (E0119, conflicting implementations) are reported on both handlers' types.
fn marker(trait_: TokenStream, types: &[&Type], self_ty: &Type) -> TokenStream {
    let tokens: Vec<TokenTree> = types.iter().flat_map(|t| t.to_token_stream()).collect::<Vec<_>>();
    let first = tokens.first().map_or_else(Span::call_site, |t| t.span());
    let last = tokens.last().map_or_else(Span::call_site, |t| t.span());
    let impl_ = respan(quote!(impl), first);
    let trait_ = respan(trait_, first);
    let self_ty = respan(self_ty.to_token_stream(), last);
    let for_ = respan(quote!(for), last);
    let body = respan(quote!({}), last);
    quote! { #impl_ #trait_ #for_ #self_ty #body }
}

/// One marker impl per group: `HandlesEvent<T>`, `HandlesMessage<M>`, `HandlesResponse<R, C>`
/// (the last also lets `ctx.request` check its continuation).
fn markers(model: &Protocol) -> TokenStream {
    let p = private();
    let self_ty = &model.self_ty;
    let mut out = TokenStream::new();
    for g in groups(model, Kind::Event) {
        let ty = g[0].ty().expect("checked");
        out.extend(marker(quote!(#p::HandlesEvent<#ty>), &[ty], self_ty));
    }
    for g in groups(model, Kind::Message) {
        let ty = g[0].ty().expect("checked");
        out.extend(marker(quote!(#p::HandlesMessage<#ty>), &[ty], self_ty));
    }
    for g in groups(model, Kind::Response) {
        let (ty, cont) = (g[0].ty().expect("checked"), g[0].cont().expect("checked"));
        out.extend(marker(quote!(::mir_dsl::HandlesResponse<#ty, #cont>), &[ty, cont], self_ty));
    }
    out
}

/// Whether the block has a message handler (then the module takes peers' messages).
fn takes_messages(model: &Protocol) -> bool {
    model.handlers.iter().any(|h| h.kind == Some(Kind::Message))
}

fn main_block(model: &Protocol, parts: &[Ident]) -> TokenStream {
    let p = private();
    let self_ty = &model.self_ty;
    let sig = dispatch_sig();
    let body = dispatch_body(model);
    let parts: Vec<TokenStream> = parts.iter().map(part_of_self).collect();
    let (ce, cb) = (conditions(model, false), conditions(model, true));
    let has_ce = !ce.is_empty();
    let takes = takes_messages(model);
    let after_event = (has_ce || !parts.is_empty()).then(|| {
        quote! {
            fn __after_event(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #ce
                #(#parts::after_event(self, ctx)?;)*
                ::core::result::Result::Ok(())
            }
        }
    });
    let after_batch = (!cb.is_empty() || !parts.is_empty()).then(|| {
        quote! {
            fn __after_batch(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #cb
                #(#parts::after_batch(self, ctx)?;)*
                ::core::result::Result::Ok(())
            }
        }
    });
    let lists = match &model.args {
        Some(ProtocolArgs::Main { parts }) => parts.iter().map(|part| {
            let id = part_id(part);
            respan(quote!(impl #p::ListsPart<#id> for #self_ty {}), part.span())
        }),
        _ => unreachable!("a main block"),
    };
    let markers = markers(model);
    quote! {
        #[automatically_derived]
        impl ::mir_dsl::Protocol for #self_ty {
            const __HAS_AFTER_EVENT: bool = #has_ce #(|| #parts::HAS_AFTER_EVENT)*;
            const __TAKES_MESSAGES: bool = #takes #(|| #parts::TAKES_MESSAGES)*;

            #[inline(always)]
            #[allow(unused_variables, clippy::needless_return)]
            fn __dispatch #sig {
                let ev = #p::normalize(ev)?;
                #body
                #(
                    let ev = match #parts::dispatch(self, ctx, ev)? {
                        ::core::option::Option::None => return ::core::result::Result::Ok(::core::option::Option::None),
                        ::core::option::Option::Some(ev) => ev,
                    };
                )*
                ::core::result::Result::Ok(::core::option::Option::Some(ev))
            }

            #after_event
            #after_batch
        }
        #(#lists)*
        #markers
    }
}

fn part_block(model: &Protocol, name: &Ident) -> TokenStream {
    let p = private();
    let self_ty = &model.self_ty;
    let sig = dispatch_sig();
    let body = dispatch_body(model);
    let id = part_id(name);
    let (ce, cb) = (conditions(model, false), conditions(model, true));
    let takes = takes_messages(model).then(|| {
        quote!(
            const TAKES_MESSAGES: bool = true;
        )
    });
    let after_event = (!ce.is_empty()).then(|| {
        quote! {
            const HAS_AFTER_EVENT: bool = true;
            fn after_event(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #ce
                ::core::result::Result::Ok(())
            }
        }
    });
    let after_batch = (!cb.is_empty()).then(|| {
        quote! {
            fn after_batch(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #cb
                ::core::result::Result::Ok(())
            }
        }
    });
    // A part left out of the main block's `parts(…)` would never run: refused, on its name.
    let listed = respan(quote!(const _: () = #p::part_is_listed::<#self_ty, #id>();), name.span());
    let markers = markers(model);
    // The impl at the part's name (the header and the braces; the items inside keep their spans):
    // a part defined twice, or another part in a message about a missing one, is shown by its name.
    let header =
        respan(quote!(#[automatically_derived] impl #p::Part<#id> for #self_ty), name.span());
    let mut body = Group::new(
        Delimiter::Brace,
        quote! {
            #takes

            #[inline(always)]
            #[allow(unused_variables, clippy::needless_return)]
            fn dispatch #sig {
                #body
                ::core::result::Result::Ok(::core::option::Option::Some(ev))
            }

            #after_event
            #after_batch
        },
    );
    body.set_span(name.span());
    quote! {
        #header #body
        #listed
        #markers
    }
}
