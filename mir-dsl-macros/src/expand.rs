//! Stage 4: code generation, and the fallback expansion used when the checks found errors.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::{ItemImpl, Type};

use crate::attr::{parse_protocol_args, Kind, ProtocolArgs};
use crate::check;
use crate::model::{self, Ctxt, Handler, Protocol};

pub fn protocol(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut item: ItemImpl = match syn::parse2(input.clone()) {
        Ok(i) => i,
        Err(_) => {
            let e = syn::Error::new_spanned(
                &input,
                "`#[protocol]` goes on an impl block: `#[protocol] impl MyProtocol { … }`",
            );
            let e = e.to_compile_error();
            return quote! { #e #input };
        }
    };
    let cx = Ctxt::new();
    let args = match parse_protocol_args(args) {
        Ok(a) => Some(a),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    };
    let model = model::build(&cx, &mut item);
    check::check(&cx, &item, &model);
    if let Err(e) = cx.check() {
        // The impl block without DSL attributes, the errors, and stand-in impls so that code
        // using the protocol (`DslModule::new`, `ctx.request`) compiles: one mistake, one error.
        let e = e.to_compile_error();
        let fallback = fallback(&item, &model, args.as_ref());
        // An `async` handler is reported once, by the DSL (not again by rustc's lifetime rules).
        for it in &mut item.items {
            if let syn::ImplItem::Fn(f) = it {
                if model.handlers.iter().any(|h| h.sig.ident == f.sig.ident) {
                    f.sig.asyncness = None;
                }
            }
        }
        return quote! { #item #e #fallback };
    }
    let args = args.expect("no errors");
    let generated = match &args {
        ProtocolArgs::Main { parts } => main_block(&model, parts),
        ProtocolArgs::Part(name) => part_block(&model, name),
    };
    quote! {
        #item
        #generated
    }
}

/// What the macro emits besides the errors when the block is wrong: the `Protocol` impl (main
/// block) or the part's functions, doing nothing, and the `HandlesResponse` impls of every
/// response handler whose types could be read. Nothing when the block's type itself is unusable
/// (a trait impl, a generic type) or the arguments did not parse.
fn fallback(item: &ItemImpl, model: &Protocol, args: Option<&ProtocolArgs>) -> TokenStream {
    if item.trait_.is_some() || !item.generics.params.is_empty() {
        return TokenStream::new();
    }
    let self_ty = &model.self_ty;
    let resp: TokenStream = model
        .handlers
        .iter()
        .filter_map(|h| Some((h.ty()?, h.cont()?)))
        .map(|(ty, cont)| quote! { impl ::mir_dsl::HandlesResponse<#ty, #cont> for #self_ty {} })
        .collect();
    let sig = dispatch_sig();
    let block = match args {
        None => return TokenStream::new(),
        Some(ProtocolArgs::Main { .. }) => quote! {
            impl ::mir_dsl::Protocol for #self_ty {
                fn __dispatch #sig { ::core::result::Result::Ok(::core::option::Option::Some(ev)) }
            }
        },
        Some(ProtocolArgs::Part(part)) => {
            let (d, m) = (part_fn("dispatch", part), part_fn("messages", part));
            let (ae, ab, hs) = (
                part_fn("after_event", part),
                part_fn("after_batch", part),
                part_fn("handlers", part),
            );
            quote! {
                #[allow(non_upper_case_globals, dead_code, unused_variables)]
                impl #self_ty {
                    pub(crate) fn #d #sig { ::core::result::Result::Ok(::core::option::Option::Some(ev)) }
                    pub(crate) const #m: bool = false;
                    pub(crate) fn #ae(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled { ::core::result::Result::Ok(()) }
                    pub(crate) fn #ab(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled { ::core::result::Result::Ok(()) }
                    pub(crate) fn #hs(out: &mut ::std::vec::Vec<::mir_dsl::__private::HandlerInfo>) {}
                }
            }
        }
    };
    quote! { #block #resp }
}

/// The signature of a dispatch function, after its name.
fn dispatch_sig() -> TokenStream {
    quote! {
        (
            &mut self,
            ctx: &mut ::mir_dsl::Ctx<'_, Self>,
            ev: ::mir_dsl::mir_runtime::Event,
        ) -> ::core::result::Result<::core::option::Option<::mir_dsl::mir_runtime::Event>, ::mir_dsl::Reject>
    }
}

fn p() -> TokenStream {
    quote!(::mir_dsl::__private)
}

/// Types compared as written (`a::B` and `B` differ: write the same path in each handler).
fn same(a: &Type, b: &Type) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

/// A handler's types as written: the value type, and the continuation type for responses.
fn key(h: &Handler) -> Vec<&Type> {
    h.ty().into_iter().chain(h.cont()).collect()
}

/// What the module checks when it is built: one entry per group of handlers (kind, types,
/// first method, block), so that one type handled by two groups (two spellings, an alias, the
/// main block and a part) is found (`mir_dsl::DslModule::new`).
fn handlers_list(model: &Protocol, block: &str) -> TokenStream {
    let p = p();
    let kinds = [(Kind::Event, "event"), (Kind::Message, "message"), (Kind::Response, "response")];
    kinds
        .iter()
        .flat_map(|(kind, name)| {
            let p = p.clone();
            groups(&model.handlers, *kind, key).into_iter().map(move |g| {
                let m = g[0].method().to_string();
                let ty = g[0].ty().expect("checked");
                let cont = match g[0].cont() {
                    Some(c) => {
                        quote!(::core::option::Option::Some(::core::any::TypeId::of::<#c>()))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote! {
                    out.push(#p::HandlerInfo {
                        kind: #name,
                        types: (::core::any::TypeId::of::<#ty>(), #cont),
                        type_name: ::core::stringify!(#ty),
                        method: #m,
                        block: #block,
                    });
                }
            })
        })
        .collect()
}

/// Groups handlers of one kind by type, keeping declaration order.
fn groups(
    handlers: &[Handler],
    kind: Kind,
    key: impl Fn(&Handler) -> Vec<&Type>,
) -> Vec<Vec<&Handler>> {
    let mut out: Vec<Vec<&Handler>> = Vec::new();
    for h in handlers.iter().filter(|h| h.kind == Some(kind)) {
        match out.iter_mut().find(|g| key(g[0]).iter().zip(key(h)).all(|(a, b)| same(a, b))) {
            Some(g) => g.push(h),
            None => out.push(vec![h]),
        }
    }
    out
}

/// Calls each handler of a group; all but the last get a clone of the value(s).
fn calls(group: &[&Handler], args: &[Ident]) -> TokenStream {
    let n = group.len();
    group
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let m = h.method();
            let a: Vec<TokenStream> =
                args.iter()
                    .map(|a| {
                        if i + 1 < n {
                            quote!(::core::clone::Clone::clone(&#a))
                        } else {
                            quote!(#a)
                        }
                    })
                    .collect();
            quote_spanned! {h.span=> self.#m(ctx, #(#a),*)?; }
        })
        .collect()
}

/// The dispatch method of one impl block: offers the event to its handlers, gives it back if
/// none takes it.
fn dispatch_fn(model: &Protocol, name: &Ident, vis: TokenStream) -> TokenStream {
    let p = p();
    let hs = &model.handlers;
    let events = groups(hs, Kind::Event, key).into_iter().map(|g| {
        let ty = g[0].ty().expect("checked");
        let c = calls(&g, &[format_ident!("value")]);
        quote! {
            if ev.is::<#ty>() {
                let value = #p::value::<#ty>(ev)?;
                #c
                return ::core::result::Result::Ok(::core::option::Option::None);
            }
        }
    });
    let messages = groups(hs, Kind::Message, key).into_iter().map(|g| {
        let ty = g[0].ty().expect("checked");
        let c = calls(&g, &[format_ident!("from"), format_ident!("msg")]);
        quote! {
            if #p::message_is::<#ty>(&ev) {
                let (from, msg) = #p::message_value::<#ty>(ev)?;
                #c
                return ::core::result::Result::Ok(::core::option::Option::None);
            }
        }
    });
    let responses = groups(hs, Kind::Response, key).into_iter().map(|g| {
        let (ty, cont) = (g[0].ty().expect("checked"), g[0].cont().expect("checked"));
        let c = calls(&g, &[format_ident!("res"), format_ident!("cont")]);
        quote! {
            let ev = if ev.is::<#ty>() {
                let ev = #p::typed::<#ty>(ev)?;
                if #p::pending_is::<Self, #ty, #cont>(ctx, #p::get::<#ty>(&ev))? {
                    let res = #p::value::<#ty>(ev)?;
                    let cont = #p::take_continuation::<Self, #ty, #cont>(ctx, &res);
                    #c
                    return ::core::result::Result::Ok(::core::option::Option::None);
                }
                ev
            } else {
                ev
            };
        }
    });
    let sig = dispatch_sig();
    quote! {
        #[doc(hidden)]
        #[inline(always)]
        #[allow(unused_variables, clippy::needless_return)]
        #vis fn #name #sig {
            #(#events)*
            #(#messages)*
            #(#responses)*
            ::core::result::Result::Ok(::core::option::Option::Some(ev))
        }
    }
}

fn conditions(model: &Protocol, per_batch: bool) -> TokenStream {
    model
        .handlers
        .iter()
        .filter(|h| h.kind == Some(Kind::Condition { per_batch }))
        .map(|h| {
            let m = h.method();
            quote_spanned! {h.span=> self.#m(ctx)?; }
        })
        .collect()
}

fn response_impls(model: &Protocol) -> TokenStream {
    let self_ty = &model.self_ty;
    groups(&model.handlers, Kind::Response, key)
    .into_iter()
    .map(|g| {
        let (ty, cont) = (g[0].ty().expect("checked"), g[0].cont().expect("checked"));
        quote_spanned! {g[0].span=> impl ::mir_dsl::HandlesResponse<#ty, #cont> for #self_ty {} }
    })
    .collect()
}

/// Whether the block has a message handler (then the module takes peers' messages).
fn takes_messages(model: &Protocol) -> bool {
    model.handlers.iter().any(|h| h.kind == Some(Kind::Message))
}

fn part_fn(prefix: &str, part: &Ident) -> Ident {
    format_ident!("__mir_{}_{}", prefix, part)
}

fn part_block(model: &Protocol, part: &Ident) -> TokenStream {
    let p = p();
    let self_ty = &model.self_ty;
    // Parts may live in other modules of the crate than the main block.
    let dispatch = dispatch_fn(model, &part_fn("dispatch", part), quote!(pub(crate)));
    let (ae, ab) = (part_fn("after_event", part), part_fn("after_batch", part));
    let (ce, cb) = (conditions(model, false), conditions(model, true));
    let resp = response_impls(model);
    let msgs = part_fn("messages", part);
    let takes = takes_messages(model);
    let hs = part_fn("handlers", part);
    let list = handlers_list(model, &format!("part {part}"));
    quote! {
        #[automatically_derived]
        impl #self_ty {
            #dispatch
            #[doc(hidden)]
            #[allow(non_upper_case_globals)]
            pub(crate) const #msgs: bool = #takes;
            #[doc(hidden)]
            pub(crate) fn #ae(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled { #ce ::core::result::Result::Ok(()) }
            #[doc(hidden)]
            pub(crate) fn #ab(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled { #cb ::core::result::Result::Ok(()) }
            #[doc(hidden)]
            pub(crate) fn #hs(out: &mut ::std::vec::Vec<#p::HandlerInfo>) { #list }
        }
        #resp
    }
}

fn main_block(model: &Protocol, parts: &[Ident]) -> TokenStream {
    let p = p();
    let self_ty = &model.self_ty;
    let dispatch = dispatch_fn(model, &format_ident!("__mir_dispatch"), quote!());
    let part_dispatch = parts.iter().map(|part| {
        let f = part_fn("dispatch", part);
        quote! {
            let ev = match self.#f(ctx, ev)? {
                ::core::option::Option::None => return ::core::result::Result::Ok(::core::option::Option::None),
                ::core::option::Option::Some(ev) => ev,
            };
        }
    });
    let part_ae = parts.iter().map(|part| {
        let f = part_fn("after_event", part);
        quote!(self.#f(ctx)?;)
    });
    let part_ab = parts.iter().map(|part| {
        let f = part_fn("after_batch", part);
        quote!(self.#f(ctx)?;)
    });
    let (ce, cb) = (conditions(model, false), conditions(model, true));
    let has_after_event = !ce.is_empty() || !parts.is_empty();
    let resp = response_impls(model);
    let takes = takes_messages(model);
    let sig = dispatch_sig();
    let part_takes = parts.iter().map(|part| {
        let c = part_fn("messages", part);
        quote!(|| Self::#c)
    });
    let list = handlers_list(model, "the main block");
    let part_lists = parts.iter().map(|part| {
        let f = part_fn("handlers", part);
        quote!(Self::#f(out);)
    });
    quote! {
        #[automatically_derived]
        impl #self_ty {
            #dispatch
        }

        #[automatically_derived]
        impl ::mir_dsl::Protocol for #self_ty {
            const __HAS_AFTER_EVENT: bool = #has_after_event;
            const __TAKES_MESSAGES: bool = #takes #(#part_takes)*;

            #[inline(always)]
            fn __dispatch #sig {
                let ev = if ev.payload.is_encoded() { #p::normalize(ev)? } else { ev };
                let ev = match self.__mir_dispatch(ctx, ev)? {
                    ::core::option::Option::None => return ::core::result::Result::Ok(::core::option::Option::None),
                    ::core::option::Option::Some(ev) => ev,
                };
                #(#part_dispatch)*
                ::core::result::Result::Ok(::core::option::Option::Some(ev))
            }

            fn __after_event(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #ce
                #(#part_ae)*
                ::core::result::Result::Ok(())
            }

            fn __after_batch(&mut self, ctx: &mut ::mir_dsl::Ctx<'_, Self>) -> ::mir_dsl::Handled {
                #cb
                #(#part_ab)*
                ::core::result::Result::Ok(())
            }

            fn __handlers(out: &mut ::std::vec::Vec<#p::HandlerInfo>) {
                #list
                #(#part_lists)*
            }
        }
        #resp
    }
}
