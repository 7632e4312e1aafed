//! Parsing of `#[protocol(…)]` and `#[upon(…)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

/// The DSL's keywords.
pub mod kw {
    pub const UPON: &str = "upon";
    pub const EVENT: &str = "event";
    pub const MESSAGE: &str = "message";
    pub const RESPONSE: &str = "response";
    pub const CONDITION: &str = "condition";
    pub const PER_BATCH: &str = "per_batch";
    pub const PART: &str = "part";
    pub const PARTS: &str = "parts";
}

/// `#[protocol]`, `#[protocol(part = name)]` or `#[protocol(parts(a, b))]`.
pub enum ProtocolArgs {
    Main { parts: Vec<Ident> },
    Part(Ident),
}

impl Parse for ProtocolArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(ProtocolArgs::Main { parts: Vec::new() });
        }
        let key: Ident = input.parse()?;
        let res = if key == kw::PART {
            input.parse::<Token![=]>().map_err(|e| {
                syn::Error::new(e.span(), "expected `=`: write `#[protocol(part = name)]`")
            })?;
            ProtocolArgs::Part(input.parse()?)
        } else if key == kw::PARTS {
            let content;
            syn::parenthesized!(content in input);
            let parts = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            if parts.is_empty() {
                return Err(syn::Error::new(key.span(), "`parts()` is empty: list the parts, `#[protocol(parts(a, b))]`, or write `#[protocol]`"));
            }
            ProtocolArgs::Main { parts: parts.into_iter().collect() }
        } else {
            return Err(syn::Error::new(
                key.span(),
                format!("unknown argument `{key}`; expected `part = name` (on a part) or `parts(a, b, …)` (on the main block)"),
            ));
        };
        if !input.is_empty() {
            return Err(input.error(
                "unexpected tokens; `#[protocol]` takes one argument: `part = name` or `parts(…)`",
            ));
        }
        Ok(res)
    }
}

/// What kind of handler a method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Message,
    Response,
    Condition { per_batch: bool },
}

/// The arguments of `#[upon(…)]`.
pub struct Upon {
    pub kind: Kind,
    pub span: Span,
}

pub fn parse_upon(attr: &syn::Attribute) -> syn::Result<Upon> {
    let span = attr.path().segments[0].ident.span();
    let syn::Meta::List(list) = &attr.meta else {
        return Err(syn::Error::new_spanned(
            attr,
            "`#[upon]` needs a kind: `#[upon(event)]`, `#[upon(message)]`, `#[upon(response)]` or `#[upon(condition)]`",
        ));
    };
    let words: Punctuated<Ident, Token![,]> = list.parse_args_with(Punctuated::parse_terminated).map_err(|e| {
        syn::Error::new(e.span(), "expected `#[upon(event)]`, `#[upon(message)]`, `#[upon(response)]` or `#[upon(condition)]`")
    })?;
    let mut it = words.iter();
    let Some(kind) = it.next() else {
        return Err(syn::Error::new_spanned(list, "`#[upon()]` is empty: write `#[upon(event)]`, `#[upon(message)]`, `#[upon(response)]` or `#[upon(condition)]`"));
    };
    let kind = match kind.to_string().as_str() {
        kw::EVENT => Kind::Event,
        kw::MESSAGE => Kind::Message,
        kw::RESPONSE => Kind::Response,
        kw::CONDITION => Kind::Condition { per_batch: false },
        other => {
            return Err(syn::Error::new(
                kind.span(),
                format!("unknown handler kind `{other}`; expected `event`, `message`, `response` or `condition`"),
            ))
        }
    };
    let kind = match (kind, it.next()) {
        (k, None) => k,
        (Kind::Condition { .. }, Some(w)) if w == kw::PER_BATCH => Kind::Condition { per_batch: true },
        (Kind::Condition { .. }, Some(w)) => {
            return Err(syn::Error::new(w.span(), format!("unknown option `{w}`; a condition takes only `per_batch`")))
        }
        (_, Some(w)) => {
            return Err(syn::Error::new(
                w.span(),
                format!("`{w}` not expected here; only conditions take an option: `#[upon(condition, per_batch)]`"),
            ))
        }
    };
    if let Some(w) = it.next() {
        return Err(syn::Error::new(w.span(), "too many arguments to `#[upon(…)]`"));
    }
    Ok(Upon { kind, span })
}

pub fn parse_protocol_args(args: TokenStream) -> syn::Result<ProtocolArgs> {
    syn::parse2(args)
}
