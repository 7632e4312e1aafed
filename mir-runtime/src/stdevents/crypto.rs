//! Request/response events for signing and verifying (served by a crypto module: the
//! [ECDSA module](crate::stdmodules::EcdsaCrypto) or the [test crypto](crate::stdmodules::TestCrypto))
//! and for hashing (the [hasher](crate::stdmodules::Hasher)).
//!
//! Every request carries an [`Origin`]: the requesting module and a request number it chose. The
//! response goes back to `origin.module` with the same origin, so the requester can match it with
//! what it stored when it asked (the DSL's typed continuations are built on this).
//!
//! Signed data is a list of byte strings. Implementations sign an unambiguous framing of the list
//! (each part length-prefixed), so `["ab", "c"]` and `["a", "bc"]` never share a signature (Mir
//! concatenated the parts).
//!
//! # Signature domains
//!
//! What is signed is never the data alone but [`signed_message`]: the framing of
//! `["mir-sig/1", deployment, domain, data…]`, where
//!
//! * `deployment` identifies the deployment (by default the crypto module's fingerprint of all
//!   members' public keys, [`KeyRegistry::fingerprint`](crate::stdmodules::KeyRegistry::fingerprint));
//!   a signature made in one deployment is useless in any other;
//! * `domain` is the full module ID of the protocol instance that asked (`origin.module`, e.g.
//!   `bcb/7` or `availability/3`), unless the request names another one (`domain`, set with
//!   `in_domain`): a signature made for one instance or factory is useless for another.
//!
//! Verification requests use the same rule, so an instance that verifies what its own peers
//! signed (same module ID on every node) needs no configuration. A module that checks signatures
//! made by *another* instance (a certificate checked by a different module) names that instance
//! with [`VerifySig::in_domain`] / [`VerifySigs::in_domain`].

use serde::{Deserialize, Serialize};

use crate::id::{ModuleId, NodeId};
use crate::payload;

/// Who asked: the module to answer, and its request number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Origin {
    /// The module the response goes to.
    pub module: ModuleId,
    /// The requester's number for this request.
    pub id: u64,
}

/// A request that carries an [`Origin`] and is answered by a response of type `Response`.
pub trait Request: crate::EventPayload {
    /// The response type.
    type Response: Response;
    /// Sets the origin the response will carry.
    fn set_origin(&mut self, origin: Origin);
}

/// A response that carries the [`Origin`] of its request.
pub trait Response: crate::EventPayload {
    /// The origin of the request this answers.
    fn origin(&self) -> &Origin;
}

/// Sign `data` with this node's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// What to sign.
    pub data: Vec<Vec<u8>>,
    /// The domain to sign in; `None` (the default) means the requester's module ID.
    pub domain: Option<ModuleId>,
    /// Who asked.
    pub origin: Origin,
}

/// The signature of a [`SignRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// The signature.
    pub signature: Vec<u8>,
    /// The request's origin.
    pub origin: Origin,
}

/// Check that `signature` is `node`'s signature of `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySig {
    /// The signed data.
    pub data: Vec<Vec<u8>>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The supposed signer.
    pub node: NodeId,
    /// The domain the signature was made in; `None` (the default) means the requester's
    /// module ID.
    pub domain: Option<ModuleId>,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`VerifySig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigVerified {
    /// The supposed signer.
    pub node: NodeId,
    /// `None` if valid, else why not.
    pub error: Option<String>,
    /// The request's origin.
    pub origin: Origin,
}

/// One item of a [`VerifySigs`] request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigCheck {
    /// The signed data.
    pub data: Vec<Vec<u8>>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The supposed signer.
    pub node: NodeId,
}

/// Check many signatures in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySigs {
    /// The signatures to check.
    pub items: Vec<SigCheck>,
    /// The domain the signatures were made in; `None` (the default) means the requester's
    /// module ID.
    pub domain: Option<ModuleId>,
    /// Who asked.
    pub origin: Origin,
}

/// The outcome of a [`VerifySigs`], one entry per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigsVerified {
    /// `None` for a valid signature, else why not.
    pub errors: Vec<Option<String>>,
    /// Whether every signature is valid.
    pub all_ok: bool,
    /// The request's origin.
    pub origin: Origin,
}

/// Hash each item of `data` (each a list of byte strings, [framed](frame)) with SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashRequest {
    /// The items to hash.
    pub data: Vec<Vec<Vec<u8>>>,
    /// Who asked.
    pub origin: Origin,
}

/// The digests of a [`HashRequest`], one per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashResult {
    /// 32-byte SHA-256 digests.
    pub digests: Vec<Vec<u8>>,
    /// The request's origin.
    pub origin: Origin,
}

payload!(
    HashRequest = "mir.crypto.HashRequest",
    HashResult = "mir.crypto.HashResult",
    SignRequest = "mir.crypto.SignRequest",
    SignResult = "mir.crypto.SignResult",
    VerifySig = "mir.crypto.VerifySig",
    SigVerified = "mir.crypto.SigVerified",
    VerifySigs = "mir.crypto.VerifySigs",
    SigsVerified = "mir.crypto.SigsVerified",
);

impl Origin {
    /// A placeholder origin, for building a request that [`Ctx::request`]-style helpers fill in.
    ///
    /// [`Ctx::request`]: https://docs.rs/mir-dsl
    pub fn unset() -> Self {
        Origin { module: ModuleId::node(), id: 0 }
    }
}

impl SignRequest {
    /// A request to sign `data` (the origin is set when the request is made).
    pub fn new(data: Vec<Vec<u8>>) -> Self {
        SignRequest { data, domain: None, origin: Origin::unset() }
    }

    /// Signs in `domain` instead of the requester's module ID.
    pub fn in_domain(mut self, domain: impl Into<ModuleId>) -> Self {
        self.domain = Some(domain.into());
        self
    }
}

impl VerifySig {
    /// A request to check `node`'s `signature` of `data`.
    pub fn new(data: Vec<Vec<u8>>, signature: Vec<u8>, node: NodeId) -> Self {
        VerifySig { data, signature, node, domain: None, origin: Origin::unset() }
    }

    /// Checks a signature made in `domain` instead of the requester's module ID.
    pub fn in_domain(mut self, domain: impl Into<ModuleId>) -> Self {
        self.domain = Some(domain.into());
        self
    }
}

impl VerifySigs {
    /// A request to check all of `items`.
    pub fn new(items: Vec<SigCheck>) -> Self {
        VerifySigs { items, domain: None, origin: Origin::unset() }
    }

    /// Checks signatures made in `domain` instead of the requester's module ID.
    pub fn in_domain(mut self, domain: impl Into<ModuleId>) -> Self {
        self.domain = Some(domain.into());
        self
    }
}

impl HashRequest {
    /// A request to hash each of `data`.
    pub fn new(data: Vec<Vec<Vec<u8>>>) -> Self {
        HashRequest { data, origin: Origin::unset() }
    }
}

/// Implements [`Request`] and [`Response`] for request/response pairs whose types carry a
/// public `origin: Origin` field: `request_response!(MyRequest => MyResponse, …)`.
///
/// ```
/// use mir_runtime::stdevents::crypto::{Origin, Request};
/// use mir_runtime::{payload, request_response};
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// pub struct Lookup { pub key: u64, pub origin: Origin }
/// #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
/// pub struct Found { pub value: Option<u64>, pub origin: Origin }
/// payload!(Lookup = "doc.Lookup", Found = "doc.Found");
/// request_response!(Lookup => Found);
/// let mut l = Lookup { key: 1, origin: Origin::unset() };
/// l.set_origin(Origin { module: "kv".into(), id: 7 });
/// assert_eq!(l.origin.id, 7);
/// ```
#[macro_export]
macro_rules! request_response {
    ($($req:ty => $res:ty),* $(,)?) => {$(
        impl $crate::stdevents::crypto::Request for $req {
            type Response = $res;
            fn set_origin(&mut self, origin: $crate::stdevents::crypto::Origin) {
                self.origin = origin;
            }
        }
        impl $crate::stdevents::crypto::Response for $res {
            fn origin(&self) -> &$crate::stdevents::crypto::Origin {
                &self.origin
            }
        }
    )*};
}

crate::request_response!(SignRequest => SignResult, VerifySig => SigVerified, VerifySigs => SigsVerified, HashRequest => HashResult);

/// The unambiguous framing of signed data: each part as an 8-byte little-endian length and the
/// bytes.
///
/// ```
/// use mir_runtime::stdevents::crypto::frame;
/// assert_ne!(frame(&[b"ab".to_vec(), b"c".to_vec()]), frame(&[b"a".to_vec(), b"bc".to_vec()]));
/// ```
pub fn frame(data: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.iter().map(|d| d.len() + 8).sum());
    for d in data {
        out.extend_from_slice(&(d.len() as u64).to_le_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// The version tag that opens every [`signed_message`].
pub const SIGNATURE_TAG: &[u8] = b"mir-sig/1";

/// The bytes a crypto module signs for `data` in `domain` of `deployment`: the [framing](frame)
/// of `[SIGNATURE_TAG, deployment, domain, data…]` (see the [module docs](self)).
///
/// ```
/// use mir_runtime::stdevents::crypto::signed_message;
/// let d = vec![b"ECHO".to_vec(), b"m".to_vec()];
/// let a = signed_message(b"dep", &"bcb/1".into(), &d);
/// assert_ne!(a, signed_message(b"dep", &"bcb2/1".into(), &d), "another instance");
/// assert_ne!(a, signed_message(b"other", &"bcb/1".into(), &d), "another deployment");
/// ```
pub fn signed_message(deployment: &[u8], domain: &ModuleId, data: &[Vec<u8>]) -> Vec<u8> {
    let head = [SIGNATURE_TAG.to_vec(), deployment.to_vec(), domain.as_str().as_bytes().to_vec()];
    let mut out = frame(&head);
    out.extend_from_slice(&frame(data));
    out
}
