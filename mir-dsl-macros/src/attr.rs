//! Parsing of `#[protocol(…)]` and `#[upon(…)]`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, Token};

use crate::model::Ctxt;

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

/// Parses the arguments of `#[protocol(…)]`, recording mistakes in `cx` and returning what they
/// most likely meant, so the fallback can still stand in for the block (one mistake, one error).
/// `None` when no guess is safe (an unknown argument).
pub fn parse_protocol_args(cx: &Ctxt, args: TokenStream) -> Option<ProtocolArgs> {
    let parser = |input: ParseStream| {
        let args = protocol_args(cx, input);
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            cx.error_at(
                rest,
                "unexpected tokens; `#[protocol]` takes one argument: `part = name` or `parts(…)`",
            );
        }
        Ok(args)
    };
    parser.parse2(args).unwrap_or_else(|e| {
        cx.syn_error(e);
        None
    })
}

fn protocol_args(cx: &Ctxt, input: ParseStream) -> Option<ProtocolArgs> {
    if input.is_empty() {
        return Some(ProtocolArgs::Main { parts: Vec::new() });
    }
    // After a mistake that leaves the rest unreadable, the rest is skipped (one error).
    let skip_rest = || {
        let _ = input.parse::<TokenStream>();
    };
    let key: Ident = match input.parse() {
        Ok(k) => k,
        Err(e) => {
            cx.syn_error(syn::Error::new(
                e.span(),
                "expected `part = name` (on a part) or `parts(a, b, …)` (on the main block)",
            ));
            skip_rest();
            return None;
        }
    };
    if key == kw::PART {
        let eq = input.parse::<Token![=]>();
        let name = input.parse::<Ident>();
        match (eq, name) {
            (Ok(_), Ok(name)) => Some(ProtocolArgs::Part(name)),
            (Err(e), Ok(name)) => {
                cx.syn_error(syn::Error::new(
                    e.span(),
                    "expected `=`: write `#[protocol(part = name)]`",
                ));
                Some(ProtocolArgs::Part(name))
            }
            (Ok(eq), Err(_)) if input.is_empty() => {
                cx.error_at(
                    quote::quote!(#key #eq),
                    "expected the part's name: `#[protocol(part = name)]`",
                );
                None
            }
            (_, Err(e)) if !input.is_empty() => {
                cx.syn_error(syn::Error::new(
                    e.span(),
                    "expected the part's name: `#[protocol(part = name)]`",
                ));
                skip_rest();
                None
            }
            (_, Err(_)) => {
                cx.error_at(&key, "expected `= name` after `part`: `#[protocol(part = name)]`");
                None
            }
        }
    } else if key == kw::PARTS {
        let list = (|| {
            let content;
            syn::parenthesized!(content in input);
            let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content);
            if list.is_err() {
                let _ = content.parse::<TokenStream>();
            }
            list
        })();
        match list {
            Ok(parts) if parts.is_empty() => {
                cx.error_at(&key, "`parts()` is empty: list the parts, `#[protocol(parts(a, b))]`, or write `#[protocol]`");
            }
            Ok(parts) => return Some(ProtocolArgs::Main { parts: parts.into_iter().collect() }),
            Err(e) => {
                cx.syn_error(syn::Error::new(
                    e.span(),
                    "expected the parts' names: `#[protocol(parts(a, b))]`",
                ));
            }
        }
        Some(ProtocolArgs::Main { parts: Vec::new() })
    } else {
        cx.syn_error(syn::Error::new(
            key.span(),
            format!("unknown argument `{key}`; expected `part = name` (on a part) or `parts(a, b, …)` (on the main block)"),
        ));
        skip_rest();
        None
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
