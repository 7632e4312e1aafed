//! The protocol model, built from the impl block, with one check per DSL rule.

use std::cell::RefCell;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, Pat, ReturnType, Type};

use crate::attr::{self, Kind};

/// Collects errors; combining them lets one compilation report every mistake at its own span.
/// Panics if dropped without being checked (a bug of the macro).
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt { errors: RefCell::new(Some(Vec::new())) }
    }

    pub fn error(&self, span: Span, msg: impl std::fmt::Display) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("checked already")
            .push(syn::Error::new(span, msg));
    }

    pub fn syn_error(&self, e: syn::Error) {
        self.errors.borrow_mut().as_mut().expect("checked already").push(e);
    }

    /// The combined errors, if any.
    pub fn check(self) -> Result<(), syn::Error> {
        let errors = self.errors.borrow_mut().take().expect("checked twice");
        let mut it = errors.into_iter();
        let Some(mut first) = it.next() else {
            return Ok(());
        };
        for e in it {
            first.combine(e);
        }
        Err(first)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("Ctxt dropped without being checked");
        }
    }
}

/// One upon-handler.
pub struct Handler {
    pub kind: Kind,
    pub method: syn::Ident,
    /// The event, message or response type (not for conditions).
    pub ty: Option<Type>,
    /// The continuation type (responses only).
    pub cont: Option<Type>,
    pub span: Span,
}

/// A `#[protocol]` impl block.
pub struct Protocol {
    pub self_ty: Type,
    pub handlers: Vec<Handler>,
}

/// Takes the `#[upon]` attributes out of `item` and builds the model.
pub fn build(cx: &Ctxt, item: &mut ItemImpl) -> Protocol {
    check_impl(cx, item);
    let mut handlers = Vec::new();
    for it in &mut item.items {
        let ImplItem::Fn(f) = it else { continue };
        let mut upons = Vec::new();
        f.attrs.retain(|a| {
            if a.path().is_ident(attr::kw::UPON) {
                upons.push(a.clone());
                false
            } else {
                true
            }
        });
        let Some(first) = upons.first() else { continue };
        if let Some(second) = upons.get(1) {
            cx.error(
                second.span(),
                "a method can have only one `#[upon(…)]`; write one method per handler",
            );
        }
        match attr::parse_upon(first) {
            Ok(upon) => {
                if let Some(h) = handler(cx, f, upon.kind, upon.span) {
                    handlers.push(h);
                }
            }
            Err(e) => cx.syn_error(e),
        }
    }
    Protocol { self_ty: (*item.self_ty).clone(), handlers }
}

/// Rule: `#[protocol]` goes on an inherent, non-generic impl block (generated impls name the type).
fn check_impl(cx: &Ctxt, item: &ItemImpl) {
    if let Some((_, path, _)) = &item.trait_ {
        cx.error(path.span(), "`#[protocol]` goes on an inherent impl block (`impl MyProtocol { … }`), not a trait impl");
    }
    if !item.generics.params.is_empty() {
        cx.error(item.generics.span(), "generic protocols are not supported; make the protocol type concrete (keep generic parts in fields)");
    }
}

/// The parameters of a handler after the receiver: (pattern, type).
fn params(f: &ImplItemFn) -> Vec<(&Pat, &Type)> {
    f.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(t) => Some((&*t.pat, &*t.ty)),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// Rule: handlers are plain methods taking `&mut self` (they change the protocol's state and are
/// called from the generated dispatch).
fn check_signature(cx: &Ctxt, f: &ImplItemFn) -> bool {
    let mut ok = true;
    if let Some(a) = &f.sig.asyncness {
        cx.error(a.span(), "handlers cannot be `async`: a protocol reacts to events synchronously; send a request instead");
        ok = false;
    }
    if !f.sig.generics.params.is_empty() {
        cx.error(
            f.sig.generics.span(),
            "handlers cannot be generic: each handler takes one concrete type",
        );
        ok = false;
    }
    match f.sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => {}
        Some(FnArg::Receiver(r)) => {
            cx.error(r.span(), "expected `&mut self`: handlers change the protocol's state");
            ok = false;
        }
        _ => {
            cx.error(
                f.sig.ident.span(),
                "a handler is a method: its first parameter must be `&mut self`",
            );
            ok = false;
        }
    }
    if let ReturnType::Default = f.sig.output {
        cx.error(
            f.sig.ident.span(),
            "handlers return `Handled` (`Ok(())`, `ignore!(…)` or `fatal!(…)`): add `-> Handled`",
        );
        ok = false;
    }
    ok
}

/// Rule: each kind has a fixed parameter list; values are taken by value (they are moved out of
/// the event).
fn handler(cx: &Ctxt, f: &ImplItemFn, kind: Kind, span: Span) -> Option<Handler> {
    if !check_signature(cx, f) {
        return None;
    }
    let ps = params(f);
    let (expected, shape) = match kind {
        Kind::Event => (2, "`fn name(&mut self, ctx: &mut Ctx<Self>, event: EventType) -> Handled`"),
        Kind::Message => (3, "`fn name(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: MessageType) -> Handled`"),
        Kind::Response => (3, "`fn name(&mut self, ctx: &mut Ctx<Self>, res: ResponseType, cont: ContinuationType) -> Handled`"),
        Kind::Condition { .. } => (1, "`fn name(&mut self, ctx: &mut Ctx<Self>) -> Handled`"),
    };
    if ps.len() != expected {
        let what = match kind {
            Kind::Event => "an event handler",
            Kind::Message => "a message handler",
            Kind::Response => "a response handler",
            Kind::Condition { .. } => "a condition",
        };
        // Point at the first parameter too many, or at the name when some are missing.
        let typed: Vec<&FnArg> =
            f.sig.inputs.iter().filter(|a| matches!(a, FnArg::Typed(_))).collect();
        let span = typed.get(expected).map_or(f.sig.ident.span(), |a| a.span());
        let count = match expected {
            1 => "one parameter",
            2 => "two parameters",
            _ => "three parameters",
        };
        cx.error(span, format!("{what} takes {count} after `&mut self`: {shape}"));
        return None;
    }
    let mut ok = true;
    for (_, ty) in ps.iter().skip(1) {
        if let Type::Reference(r) = ty {
            cx.error(r.span(), "take the value, not a reference: the handler owns what it receives (write `T`, not `&T`)");
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let ty =
        (expected >= 2).then(|| ps[ps.len() - if kind == Kind::Event { 1 } else { 2 }].1.clone());
    let ty = match kind {
        Kind::Message => Some(ps[2].1.clone()),
        _ => ty,
    };
    let cont = (kind == Kind::Response).then(|| ps[2].1.clone());
    Some(Handler { kind, method: f.sig.ident.clone(), ty, cont, span })
}
