//! Mutually authenticated, encrypted channels between members: TLS 1.3 (rustls, ring provider)
//! with raw Ed25519 public keys (RFC 7250) **pinned in the membership file**, no certificate
//! authority.
//!
//! Every member has a *transport key* ([`TransportKey`], Ed25519) beside its signing key; the
//! membership lists the public part of each (`transport_key`). A connection is accepted only if
//! both ends prove possession of the secret key of the member they present, and that key is the
//! one the membership lists:
//!
//! * the server presents its raw public key; the client accepts only the key the membership lists
//!   for the node it dialled;
//! * the client must present a raw public key too; the server accepts only keys listed in the
//!   membership, and the peer's [`NodeId`] is the member whose key it is — it comes from the
//!   authenticated channel, never from a frame;
//! * TLS 1.3 only, so everything after the handshake is encrypted and integrity-protected: an
//!   attacker on the path can relay bytes but cannot read them, inject frames or replay them.
//!
//! Key files hold the 32-byte secret in hex ([`TransportKey::to_hex`], [`TransportKey::from_hex`]);
//! `mir keygen` writes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::id::NodeId;

/// DER of an Ed25519 SubjectPublicKeyInfo, up to the 32 key bytes (RFC 8410).
const SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
/// DER of an Ed25519 PKCS#8 v1 private key, up to the 32 secret bytes (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A bad transport key or key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport key: {0}")]
pub struct TransportKeyError(pub String);

/// A member's transport key: an Ed25519 secret key (the secret never appears in `Debug`).
#[derive(Clone)]
pub struct TransportKey {
    secret: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransportKey(public {})", hex(&self.public))
    }
}

impl TransportKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, TransportKeyError> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| TransportKeyError("the system random source failed".into()))?;
        Self::from_secret(secret)
    }

    /// The key with this 32-byte secret (an Ed25519 seed).
    pub fn from_secret(secret: [u8; 32]) -> Result<Self, TransportKeyError> {
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&secret)
            .map_err(|e| TransportKeyError(format!("not an Ed25519 secret key: {e}")))?;
        let public = ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .try_into()
            .map_err(|_| TransportKeyError("unexpected public key length".into()))?;
        Ok(TransportKey { secret, public })
    }

    /// The key written by [`TransportKey::to_hex`] (64 hex digits; surrounding white space is
    /// ignored).
    ///
    /// ```
    /// use mir_runtime::transport::tls::TransportKey;
    /// let k = TransportKey::generate().unwrap();
    /// assert_eq!(TransportKey::from_hex(&k.to_hex()).unwrap().public_key(), k.public_key());
    /// assert!(TransportKey::from_hex("12").is_err());
    /// ```
    pub fn from_hex(text: &str) -> Result<Self, TransportKeyError> {
        let bytes = unhex(text.trim()).map_err(TransportKeyError)?;
        let secret: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            TransportKeyError(format!("expected 32 bytes (64 hex digits), got {}", b.len()))
        })?;
        Self::from_secret(secret)
    }

    /// The secret in hex, for a key file.
    pub fn to_hex(&self) -> String {
        hex(&self.secret)
    }

    /// The public key (what the membership lists as `transport_key`).
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn certified(&self, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TransportKeyError> {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&self.secret);
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
            .map_err(|e| TransportKeyError(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(spki(&self.public))], key)))
    }
}

/// Deterministic transport keys for `nodes`, derived from `seed` (tests and local demos only).
///
/// ```
/// use mir_runtime::{NodeId, transport::tls::test_transport_keys};
/// let nodes = [NodeId::from_index(0), NodeId::from_index(1)];
/// let a = test_transport_keys(1, &nodes);
/// assert_eq!(a[&nodes[1]].public_key(), test_transport_keys(1, &nodes)[&nodes[1]].public_key());
/// assert_ne!(a[&nodes[0]].public_key(), a[&nodes[1]].public_key());
/// ```
pub fn test_transport_keys(seed: u64, nodes: &[NodeId]) -> BTreeMap<NodeId, TransportKey> {
    nodes
        .iter()
        .map(|n| {
            let mut h = Sha256::new();
            h.update(b"mir test transport key");
            h.update(seed.to_le_bytes());
            h.update(n.as_str().as_bytes());
            let key = TransportKey::from_secret(h.finalize().into())
                .expect("every 32-byte string is an Ed25519 seed");
            (n.clone(), key)
        })
        .collect()
}

fn spki(public: &[u8; 32]) -> Vec<u8> {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public);
    der
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS settings of one node: its server config and one client config per peer.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) server: Arc<ServerConfig>,
    clients: BTreeMap<NodeId, Arc<ClientConfig>>,
    by_key: Keys,
    provider: Arc<CryptoProvider>,
    certified: Arc<CertifiedKey>,
}

/// Accepted keys (SPKI) and their nodes, shared by a node's TLS settings and its server's
/// verifier (reconfiguration adds to them).
type Keys = Arc<std::sync::RwLock<BTreeMap<Vec<u8>, NodeId>>>;

impl Tls {
    /// TLS for node `me` with `key`, among `members` (ID and public transport key).
    pub(crate) fn new(
        key: &TransportKey,
        members: &[(NodeId, [u8; 32])],
    ) -> Result<Self, TransportKeyError> {
        let provider = provider();
        let certified = key.certified(&provider)?;
        let by_key: Keys = Arc::new(std::sync::RwLock::new(
            members.iter().map(|(id, pk)| (spki(pk), id.clone())).collect(),
        ));
        let verifier =
            Arc::new(PinnedKeys { accepted: by_key.clone(), provider: provider.clone() });
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportKeyError(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::server::AlwaysResolvesServerRawPublicKeys::new(
                certified.clone(),
            )));
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut clients = BTreeMap::new();
        for (id, pk) in members {
            clients.insert(id.clone(), client_config_with(&provider, &certified, id, pk)?);
        }
        Ok(Tls { server: Arc::new(server), clients, by_key, provider, certified })
    }

    /// Adds member `id` with public transport key `pk` (reconfiguration): its connections are
    /// accepted from now on (by every clone of these settings), and it can be dialled. A known
    /// member keeps its key (returns false).
    pub(crate) fn add_member(
        &mut self,
        id: &NodeId,
        pk: &[u8; 32],
    ) -> Result<bool, TransportKeyError> {
        if self.clients.contains_key(id) {
            return Ok(false);
        }
        let client = client_config_with(&self.provider, &self.certified, id, pk)?;
        self.by_key.write().expect("lock").insert(spki(pk), id.clone());
        self.clients.insert(id.clone(), client);
        Ok(true)
    }

    /// The client config to dial `peer` (which accepts only `peer`'s pinned key).
    pub(crate) fn client(&self, peer: &NodeId) -> Option<Arc<ClientConfig>> {
        self.clients.get(peer).cloned()
    }

    /// The member whose key the peer of an established connection presented.
    pub(crate) fn peer_of(&self, certs: Option<&[CertificateDer<'_>]>) -> Option<NodeId> {
        let cert = certs?.first()?;
        self.by_key.read().expect("lock").get(cert.as_ref()).cloned()
    }
}

/// The TLS client settings to dial a node whose transport key is `server_key`, presenting `key`
/// (which the node's membership must list). What [`PeerClient`](super::grpc::PeerClient) uses.
pub fn client_config(
    key: &TransportKey,
    server_key: [u8; 32],
) -> Result<Arc<ClientConfig>, TransportKeyError> {
    let provider = provider();
    let certified = key.certified(&provider)?;
    client_config_with(&provider, &certified, &NodeId::new("server"), &server_key)
}

fn client_config_with(
    provider: &Arc<CryptoProvider>,
    certified: &Arc<CertifiedKey>,
    id: &NodeId,
    server_key: &[u8; 32],
) -> Result<Arc<ClientConfig>, TransportKeyError> {
    let pinned = Arc::new(PinnedKeys {
        accepted: Arc::new(std::sync::RwLock::new(
            [(spki(server_key), id.clone())].into_iter().collect(),
        )),
        provider: provider.clone(),
    });
    let mut client = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportKeyError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(pinned)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified.clone()),
        ));
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(client))
}

/// The server name clients put in their ClientHello (identity comes from the pinned key, not
/// from the name).
pub(crate) fn server_name() -> ServerName<'static> {
    ServerName::try_from("mir-node").expect("a valid DNS name")
}

/// Accepts exactly the raw public keys it holds (a client verifier on the server, a server
/// verifier on the client).
#[derive(Debug)]
struct PinnedKeys {
    accepted: Keys,
    provider: Arc<CryptoProvider>,
}

impl PinnedKeys {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.accepted.read().expect("lock").contains_key(cert.as_ref()) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for PinnedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PinnedKeys {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Lowercase hex.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (an error names the first bad pair).
pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err("expected an even number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("{:?} is not hex", &s[i..i + 2]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_der_matches_what_rustls_derives() {
        let key = TransportKey::from_secret([7; 32]).unwrap();
        let provider = provider();
        let c = key.certified(&provider).unwrap();
        let derived = c.key.public_key().expect("Ed25519 keys know their SPKI");
        assert_eq!(derived.as_ref(), spki(&key.public_key()).as_slice());
    }
}
