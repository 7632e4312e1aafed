//! Stage 3: the DSL's rules, one function per rule. Every rule runs on every handler and records
//! its errors in the [`Ctxt`], so one compilation reports every mistake, each underlining the
//! whole offending tokens.

use quote::ToTokens;
use syn::{FnArg, ItemImpl, ReturnType, Type};

use crate::attr::{Kind, ProtocolArgs};
use crate::model::{may_be_same, spelled, Ctxt, Handler, Protocol};

/// Runs every rule.
pub fn check(cx: &Ctxt, item: &ItemImpl, model: &Protocol) {
    inherent_impl(cx, item);
    concrete_protocol(cx, item);
    for h in &model.handlers {
        one_upon_per_method(cx, h);
        not_async(cx, h);
        not_generic(cx, h);
        takes_mut_self(cx, h);
        returns_handled(cx, h);
        concrete_parameter_types(cx, h);
        if parameter_list_of_its_kind(cx, h) {
            values_by_value(cx, h);
        }
    }
    one_spelling_per_type(cx, model);
    parts_listed_once(cx, model);
}

/// Rule: `#[protocol]` goes on an inherent impl block (the generated impls name the type).
fn inherent_impl(cx: &Ctxt, item: &ItemImpl) {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_at(path, "`#[protocol]` goes on an inherent impl block (`impl MyProtocol { … }`), not a trait impl");
    }
}

/// Rule: the protocol type is concrete.
fn concrete_protocol(cx: &Ctxt, item: &ItemImpl) {
    if !item.generics.params.is_empty() {
        cx.error_at(&item.generics, "generic protocols are not supported; make the protocol type concrete (keep generic parts in fields)");
    }
}

/// Rule: one `#[upon(…)]` per method.
fn one_upon_per_method(cx: &Ctxt, h: &Handler) {
    for extra in &h.extra_upons {
        cx.error_at(extra, "a method can have only one `#[upon(…)]`; write one method per handler");
    }
}

/// Rule: handlers are synchronous.
fn not_async(cx: &Ctxt, h: &Handler) {
    if let Some(a) = &h.sig.asyncness {
        cx.error_at(a, "handlers cannot be `async`: a protocol reacts to events synchronously; send a request instead");
    }
}

/// Rule: a handler takes one concrete type.
fn not_generic(cx: &Ctxt, h: &Handler) {
    if !h.sig.generics.params.is_empty() {
        cx.error_at(
            &h.sig.generics,
            "handlers cannot be generic: each handler takes one concrete type",
        );
    }
}

/// Rule: handlers are methods taking `&mut self` (they change the protocol's state).
fn takes_mut_self(cx: &Ctxt, h: &Handler) {
    match h.sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
        Some(FnArg::Receiver(r)) => {
            cx.error_at(r, "expected `&mut self`: handlers change the protocol's state")
        }
        Some(first) => {
            cx.error_at(first, "a handler is a method: its first parameter must be `&mut self`")
        }
        None => {
            cx.error_at(&h.sig, "a handler is a method: its first parameter must be `&mut self`")
        }
    }
}

/// Rule: handlers return `Handled`.
fn returns_handled(cx: &Ctxt, h: &Handler) {
    if let ReturnType::Default = h.sig.output {
        cx.error_at(
            &h.sig,
            "handlers return `Handled` (`Ok(())`, `ignore!(…)` or `fatal!(…)`): add `-> Handled`",
        );
    }
}

/// Rule: each kind has a fixed parameter list. Returns whether it has.
fn parameter_list_of_its_kind(cx: &Ctxt, h: &Handler) -> bool {
    let Some(kind) = h.kind else { return false };
    let expected = Handler::expected_params(kind);
    let ps = h.params();
    if ps.len() == expected {
        return true;
    }
    let (what, shape) = match kind {
        Kind::Event => ("an event handler", "`fn name(&mut self, ctx: &mut Ctx<Self>, event: EventType) -> Handled`"),
        Kind::Message => ("a message handler", "`fn name(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: MessageType) -> Handled`"),
        Kind::Response => ("a response handler", "`fn name(&mut self, ctx: &mut Ctx<Self>, res: ResponseType, cont: ContinuationType) -> Handled`"),
        Kind::Condition { .. } => ("a condition", "`fn name(&mut self, ctx: &mut Ctx<Self>) -> Handled`"),
    };
    let count = ["no parameters", "one parameter", "two parameters", "three parameters"][expected];
    let msg = format!("{what} takes {count} after `&mut self`: {shape}");
    // Underline the parameters too many, or the whole list when some are missing.
    match ps.get(expected..) {
        Some(extra) if !extra.is_empty() => {
            let extra: Vec<_> = extra.iter().map(|p| p.to_token_stream()).collect();
            cx.error_at(quote::quote!(#(#extra)*), msg);
        }
        _ => cx.error_at(&h.sig, msg),
    }
    false
}

/// Rule: values are taken by value (they are moved out of the event).
fn values_by_value(cx: &Ctxt, h: &Handler) {
    for p in h.params().iter().skip(1) {
        if let Type::Reference(r) = &*p.ty {
            cx.error_at(r, "take the value, not a reference: the handler owns what it receives (write `T`, not `&T`)");
        }
    }
}

/// Rule: a type is written the same way in every handler of one kind in a block. Handlers of one
/// type are grouped as written (several run in declaration order); `TestString` and
/// `stdevents::TestString` would form two groups, the event would reach only the first, and the
/// second would never run. The compiler refuses two groups that *are* one type (each group
/// implements a marker trait, and two impls conflict), but its message cannot say why; this rule
/// says it for the common case, two paths that end in the same name. The macro cannot resolve
/// paths, so two different types of one name (`a::Msg`, `b::Msg`) are refused too: the message
/// says to import one under another name.
fn one_spelling_per_type(cx: &Ctxt, model: &Protocol) {
    let keyed: Vec<(&Handler, Vec<&Type>)> = model
        .handlers
        .iter()
        .filter_map(|h| Some((h, std::iter::once(h.ty()?).chain(h.cont()).collect())))
        .collect();
    for (i, (h, tys)) in keyed.iter().enumerate() {
        let earlier = keyed[..i].iter().find(|(e, etys)| {
            e.kind == h.kind
                && etys.len() == tys.len()
                && etys.iter().zip(tys).all(|(a, b)| may_be_same(a, b))
                && etys.iter().zip(tys).any(|(a, b)| spelled(a) != spelled(b))
        });
        if let Some((e, etys)) = earlier {
            let (a, b): (Vec<String>, Vec<String>) =
                etys.iter().zip(tys).map(|(a, b)| (spelled(a), spelled(b))).unzip();
            cx.error_at(
                tys.iter().map(|t| t.to_token_stream()).collect::<proc_macro2::TokenStream>(),
                format!(
                    "`{}` here and `{}` in handler `{}` are written differently, so they would form two groups and `{}` would never run; \
                     write the type the same way in every handler (handlers of one type run in declaration order), \
                     or, if these are two types, import one under another name",
                    b.join(", "),
                    a.join(", "),
                    e.method(),
                    h.method(),
                ),
            );
        }
    }
}

/// Rule: a part is listed once (listed twice, its handlers would be offered every event twice).
fn parts_listed_once(cx: &Ctxt, model: &Protocol) {
    let Some(ProtocolArgs::Main { parts }) = &model.args else { return };
    for (i, part) in parts.iter().enumerate() {
        if parts[..i].contains(part) {
            cx.error_at(part, format!("part `{part}` is listed twice; list each part once"));
        }
    }
}

/// Rule: parameter types are concrete: no `impl Trait` (a hidden generic) and no `_` (the
/// generated code dispatches on the written type).
fn concrete_parameter_types(cx: &Ctxt, h: &Handler) {
    use proc_macro2::TokenTree;
    /// Whether `word` occurs in `ts` as an identifier (not as a lifetime's name: `'_`).
    fn has(ts: proc_macro2::TokenStream, word: &str) -> bool {
        let mut after_quote = false;
        ts.into_iter().any(|t| {
            let found = match &t {
                TokenTree::Ident(i) => i == word && !after_quote,
                TokenTree::Group(g) => has(g.stream(), word),
                _ => false,
            };
            after_quote = matches!(&t, TokenTree::Punct(p) if p.as_char() == '\'');
            found
        })
    }
    for p in h.params() {
        let ts = p.ty.to_token_stream();
        if has(ts.clone(), "impl") {
            cx.error_at(
                &p.ty,
                "handlers cannot be generic: write the concrete type, not `impl Trait`",
            );
        } else if has(ts, "_") {
            cx.error_at(&p.ty, "write the concrete type: the handler is chosen by it, so it cannot be inferred (`_`)");
        }
    }
}
