//! Stage 2: the protocol model, built leniently from the impl block. Nothing is judged here
//! (that is [`crate::check`]); the model keeps what each handler looks like, with the tokens an
//! error would underline.

use std::cell::RefCell;

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, ImplItem, ItemImpl, Type};

use crate::attr::{self, Kind, ProtocolArgs};

/// Collects errors; combining them lets one compilation report every mistake at its own span.
/// Panics if dropped without being checked (a bug of the macro).
pub struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt { errors: RefCell::new(Some(Vec::new())) }
    }

    /// An error underlining all of `tokens`.
    pub fn error_at(&self, tokens: impl quote::ToTokens, msg: impl std::fmt::Display) {
        self.syn_error(syn::Error::new_spanned(tokens, msg));
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

/// One method marked `#[upon(…)]`, as written.
pub struct Handler {
    /// `None` when its `#[upon(…)]` did not parse (the error is already recorded).
    pub kind: Option<Kind>,
    /// Further `#[upon]` attributes on the same method (an error).
    pub extra_upons: Vec<syn::Attribute>,
    pub sig: syn::Signature,
    /// Where the generated call points (the `upon` keyword).
    pub span: Span,
}

impl Handler {
    pub fn method(&self) -> &syn::Ident {
        &self.sig.ident
    }

    /// The typed parameters after the receiver.
    pub fn params(&self) -> Vec<&syn::PatType> {
        self.sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect()
    }

    /// How many typed parameters each kind takes after `&mut self`.
    pub fn expected_params(kind: Kind) -> usize {
        match kind {
            Kind::Event => 2,
            Kind::Message | Kind::Response => 3,
            Kind::Condition { .. } => 1,
        }
    }

    /// The event, message or response type, if the parameter list has the kind's shape.
    pub fn ty(&self) -> Option<&Type> {
        let kind = self.kind?;
        let ps = self.params();
        if ps.len() != Self::expected_params(kind) {
            return None;
        }
        match kind {
            Kind::Event => Some(&ps[1].ty),
            Kind::Message => Some(&ps[2].ty),
            Kind::Response => Some(&ps[1].ty),
            Kind::Condition { .. } => None,
        }
    }

    /// The declared return type (`None` for none).
    pub fn ret(&self) -> Option<&Type> {
        match &self.sig.output {
            syn::ReturnType::Type(_, ty) => Some(ty),
            syn::ReturnType::Default => None,
        }
    }

    /// The continuation type (responses only).
    pub fn cont(&self) -> Option<&Type> {
        match self.kind? {
            Kind::Response if self.params().len() == 3 => Some(&self.params()[2].ty),
            _ => None,
        }
    }
}

/// A `#[protocol]` impl block.
pub struct Protocol {
    /// What `#[protocol(…)]` said, as far as it could be read (see [`attr::parse_protocol_args`]).
    pub args: Option<ProtocolArgs>,
    pub self_ty: Type,
    pub handlers: Vec<Handler>,
}

/// Takes the `#[upon]` attributes out of `item` (so the block compiles as plain Rust whatever
/// happens next) and builds the model; `#[upon(…)]` arguments that do not parse are errors.
pub fn build(cx: &Ctxt, args: Option<ProtocolArgs>, item: &mut ItemImpl) -> Protocol {
    let mut handlers = Vec::new();
    for it in &mut item.items {
        let ImplItem::Fn(f) = it else { continue };
        let mut upons = Vec::new();
        f.attrs.retain(|a| {
            let upon = a.path().is_ident(attr::kw::UPON);
            if upon {
                upons.push(a.clone());
            }
            !upon
        });
        let mut upons = upons.into_iter();
        let Some(first) = upons.next() else { continue };
        let (kind, span) = match attr::parse_upon(&first) {
            Ok(u) => (Some(u.kind), u.span),
            Err(e) => {
                cx.syn_error(e);
                (None, first.path().segments[0].ident.span())
            }
        };
        handlers.push(Handler { kind, extra_upons: upons.collect(), sig: f.sig.clone(), span });
    }
    Protocol { args, self_ty: (*item.self_ty).clone(), handlers }
}

/// A type as written, without spaces (`stdevents::TestString`).
pub fn spelled(ty: &Type) -> String {
    ty.to_token_stream().to_string().replace(' ', "")
}

/// The last segment of a path type with its arguments (`a::b::C<X>` → `C<X>`), if it is one.
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().map(|s| s.to_token_stream().to_string().replace(' ', ""))
        }
        _ => None,
    }
}

/// Whether two types as written may be one type: written the same way, or paths that end in the
/// same segment (`TestString`, `stdevents::TestString`). The macro cannot resolve paths.
pub fn may_be_same(a: &Type, b: &Type) -> bool {
    spelled(a) == spelled(b) || (last_segment(a).is_some() && last_segment(a) == last_segment(b))
}
