//! The crypto module: ECDSA over secp256k1 (k256), serving [`SignRequest`], [`VerifySig`] and
//! [`VerifySigs`].
//!
//! * Signed data is a list of byte strings, signed as its
//!   [`signed_message`](crate::stdevents::crypto::signed_message) (the unambiguous framing of
//!   the data with a version tag, the deployment and the requester's domain, see
//!   [signature domains](crate::stdevents::crypto#signature-domains)), hashed with SHA-256.
//!   Signatures are deterministic (RFC 6979), so the module behaves the same in the simulator.
//! * The deployment defaults to the [fingerprint](KeyRegistry::fingerprint) of all public keys;
//!   set another with [`EcdsaCrypto::deployment`].
//! * Each (signer, message, signature) is verified at most once while it is remembered (see
//!   [the verification cache](crate::stdmodules::crypto#each-statement-is-verified-at-most-once)).
//! * Public keys of all nodes are in a [`KeyRegistry`] (SEC1-encoded, compressed or not).
//! * Bad input never panics: a malformed signature, an unknown signer or a forged signature is an
//!   error string in the response.
//! * In the production executor register it with
//!   [`NodeBuilder::passive_on_worker`](crate::NodeBuilder::passive_on_worker), so signature work
//!   runs off the protocol modules' thread; a [`VerifySigs`] request with many items is split over
//!   `threads` scoped threads (results keep their order, so the output does not depend on the
//!   number of threads).
//! * [`test_keys`] derives keys deterministically from a seed, for tests and local clusters.

use std::collections::BTreeMap;

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::crypto::{CryptoCounters, Server};
use crate::id::NodeId;
use crate::module::{Batch, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::crypto::frame;
#[cfg(doc)]
use crate::stdevents::crypto::{SignRequest, VerifySig, VerifySigs};

/// A key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad public key for node {node}: {reason}")]
pub struct KeyError {
    /// The node.
    pub node: NodeId,
    /// What is wrong.
    pub reason: String,
}

/// The public keys of the nodes.
#[derive(Debug, Clone, Default)]
pub struct KeyRegistry {
    keys: BTreeMap<NodeId, VerifyingKey>,
}

impl KeyRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        KeyRegistry::default()
    }

    /// A registry from SEC1-encoded public keys.
    pub fn from_sec1<'a>(
        keys: impl IntoIterator<Item = (NodeId, &'a [u8])>,
    ) -> Result<Self, KeyError> {
        let mut r = KeyRegistry::new();
        for (node, bytes) in keys {
            r.insert_sec1(node, bytes)?;
        }
        Ok(r)
    }

    /// Adds (or replaces) `node`'s key, SEC1-encoded.
    pub fn insert_sec1(&mut self, node: NodeId, bytes: &[u8]) -> Result<(), KeyError> {
        let key = VerifyingKey::from_sec1_bytes(bytes)
            .map_err(|e| KeyError { node: node.clone(), reason: e.to_string() })?;
        self.keys.insert(node, key);
        Ok(())
    }

    /// Adds (or replaces) `node`'s key.
    pub fn insert(&mut self, node: NodeId, key: VerifyingKey) {
        self.keys.insert(node, key);
    }

    /// Removes `node`'s key.
    pub fn remove(&mut self, node: &NodeId) -> Option<VerifyingKey> {
        self.keys.remove(node)
    }

    /// `node`'s key.
    pub fn get(&self, node: &NodeId) -> Option<&VerifyingKey> {
        self.keys.get(node)
    }

    /// SHA-256 of every (node, compressed public key), in node order: what identifies a
    /// deployment by default.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"mir key registry");
        for (node, key) in &self.keys {
            let id = node.as_str().as_bytes();
            let key = key.to_encoded_point(true);
            h.update((id.len() as u64).to_le_bytes());
            h.update(id);
            h.update((key.as_bytes().len() as u64).to_le_bytes());
            h.update(key.as_bytes());
        }
        h.finalize().to_vec()
    }

    /// Checks that `signature` is `node`'s signature of the [framing](frame) of `data` (no
    /// domain: for the transport's own handshake); `None` if valid, else why not.
    pub fn check(&self, node: &NodeId, data: &[Vec<u8>], signature: &[u8]) -> Option<String> {
        self.check_message(node, &frame(data), signature)
    }

    /// Checks that `signature` is `node`'s signature of `message`; `None` if valid, else why not.
    pub fn check_message(&self, node: &NodeId, message: &[u8], signature: &[u8]) -> Option<String> {
        let Some(key) = self.keys.get(node) else {
            return Some(format!("unknown node {node}"));
        };
        let Ok(sig) = Signature::from_slice(signature) else {
            return Some(format!(
                "malformed signature ({} bytes) from node {node}",
                signature.len()
            ));
        };
        match key.verify(message, &sig) {
            Ok(()) => None,
            Err(_) => Some(format!("invalid signature of node {node}")),
        }
    }
}

/// Deterministic key pairs for `nodes`, derived from `seed` (for tests and local clusters only).
///
/// ```
/// use mir_runtime::{NodeId, stdmodules::ecdsa::test_keys};
/// let nodes: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
/// let (keys, registry) = test_keys(7, &nodes);
/// assert_eq!(keys.len(), 4);
/// assert!(registry.get(&nodes[3]).is_some());
/// ```
pub fn test_keys(seed: u64, nodes: &[NodeId]) -> (BTreeMap<NodeId, SigningKey>, KeyRegistry) {
    let mut keys = BTreeMap::new();
    let mut registry = KeyRegistry::new();
    for node in nodes {
        let mut counter = 0u32;
        let key = loop {
            let mut h = Sha256::new();
            h.update(b"mir test key");
            h.update(seed.to_le_bytes());
            h.update(node.as_str().as_bytes());
            h.update(counter.to_le_bytes());
            // A hash is a valid secp256k1 scalar with overwhelming probability; retry otherwise.
            if let Ok(k) = SigningKey::from_slice(&h.finalize()) {
                break k;
            }
            counter += 1;
        };
        registry.insert(node.clone(), *key.verifying_key());
        keys.insert(node.clone(), key);
    }
    (keys, registry)
}

/// Signs the [framing](frame) of `data` with `key` (no domain: what the module signs is
/// [`sign_message`] of a [`signed_message`](crate::stdevents::crypto::signed_message)): a
/// 64-byte signature.
pub fn sign(key: &SigningKey, data: &[Vec<u8>]) -> Vec<u8> {
    sign_message(key, &frame(data))
}

/// Signs `message` with `key`: a 64-byte signature.
pub fn sign_message(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign(message);
    sig.to_bytes().to_vec()
}

/// The crypto module of one node.
pub struct EcdsaCrypto {
    keys: Keys,
    server: Server,
}

/// The keys and the thread count: what checks signatures.
struct Keys {
    key: SigningKey,
    registry: KeyRegistry,
    threads: usize,
}

impl EcdsaCrypto {
    /// Crypto with this node's `key` and everyone's public keys; one thread; the deployment is
    /// the registry's [fingerprint](KeyRegistry::fingerprint).
    pub fn new(key: SigningKey, registry: KeyRegistry) -> Self {
        let server = Server::new(registry.fingerprint());
        EcdsaCrypto { keys: Keys { key, registry, threads: 1 }, server }
    }

    /// Signs and verifies for deployment `id` instead of the registry's fingerprint (see
    /// [signature domains](crate::stdevents::crypto#signature-domains)).
    pub fn deployment(mut self, id: impl Into<Vec<u8>>) -> Self {
        self.server.deployment = id.into();
        self.server.forget();
        self
    }

    /// Remembers at most `entries` check outcomes (0 turns the cache off).
    pub fn cache_entries(mut self, entries: usize) -> Self {
        self.server.set_capacity(entries);
        self
    }

    /// The module's counters (a shared handle).
    pub fn counters(&self) -> CryptoCounters {
        self.server.counters.clone()
    }

    /// Splits large [`VerifySigs`] requests over up to `threads` threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.keys.threads = threads.max(1);
        self
    }

    /// The public keys this module verifies against (remembered outcomes are forgotten, since
    /// the keys may change).
    pub fn registry_mut(&mut self) -> &mut KeyRegistry {
        self.server.forget();
        &mut self.keys.registry
    }
}

impl super::crypto::CryptoImpl for Keys {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        sign_message(&self.key, message)
    }

    fn check(&self, node: &NodeId, message: &[u8], signature: &[u8]) -> Option<String> {
        self.registry.check_message(node, message, signature)
    }

    fn check_all(&self, items: &[(&NodeId, &[u8], &[u8])]) -> Vec<Option<String>> {
        const MIN_PER_THREAD: usize = 4;
        let threads = self.threads.min(items.len() / MIN_PER_THREAD).max(1);
        let check = |(n, m, s): &(&NodeId, &[u8], &[u8])| self.registry.check_message(n, m, s);
        if threads == 1 {
            return items.iter().map(check).collect();
        }
        let chunk = items.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().map(check).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a verification thread panicked"))
                .collect()
        })
    }
}

#[cfg(feature = "grpc")]
impl EcdsaCrypto {
    /// Reconfiguration: learns the public keys of the nodes it did not know. A known node keeps
    /// its key; an unusable key is logged and skipped.
    fn update(&mut self, u: &crate::stdevents::MembershipUpdate) {
        for m in &u.members {
            if self.keys.registry.get(&m.id).is_some() {
                continue;
            }
            match self.keys.registry.insert_sec1(m.id.clone(), &m.public_key) {
                // Outcomes remembered for the unknown node are forgotten.
                Ok(()) => self.server.forget(),
                Err(e) => {
                    tracing::warn!(node = %m.id, error = %e.reason, "a new member's public key is unusable")
                }
            }
        }
    }
}

impl PassiveModule for EcdsaCrypto {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            #[cfg(feature = "grpc")]
            if let Some(u) = ev.get::<crate::stdevents::MembershipUpdate>() {
                self.update(u);
                continue;
            }
            self.server.serve(&self.keys, ev, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ModuleId;
    use crate::stdevents::crypto::{signed_message, Origin, SigCheck};
    use crate::stdevents::crypto::{SignRequest, SignResult, SigsVerified, VerifySigs};
    use crate::testing::apply;
    use crate::Event;

    fn nodes() -> Vec<NodeId> {
        (0..4).map(NodeId::from_index).collect()
    }

    fn origin(id: u64) -> Origin {
        Origin { module: ModuleId::new("app"), id }
    }

    #[test]
    fn sign_then_verify_one_and_many() {
        let (keys, registry) = test_keys(1, &nodes());
        let data = vec![b"ab".to_vec(), b"c".to_vec()];
        let sigs: Vec<Vec<u8>> = nodes().iter().map(|n| sign(&keys[n], &data)).collect();
        for (n, s) in nodes().iter().zip(&sigs) {
            assert_eq!(registry.check(n, &data, s), None);
        }
        // Framing: ["a","bc"] is other data.
        assert!(registry.check(&nodes()[0], &[b"a".to_vec(), b"bc".to_vec()], &sigs[0]).is_some());
        // Wrong signer, garbage, unknown node: errors, not panics.
        assert!(registry.check(&nodes()[1], &data, &sigs[0]).unwrap().contains("invalid"));
        assert!(registry.check(&nodes()[1], &data, &[1, 2, 3]).unwrap().contains("malformed"));
        assert!(registry
            .check(&NodeId::new("9"), &data, &sigs[0])
            .unwrap()
            .contains("unknown node"));

        // What the module signs for "app": the data in app's domain of this deployment.
        let message = signed_message(&registry.fingerprint(), &ModuleId::new("app"), &data);
        let sigs: Vec<Vec<u8>> = nodes().iter().map(|n| sign_message(&keys[n], &message)).collect();
        let mut m = EcdsaCrypto::new(keys[&nodes()[0]].clone(), registry).threads(3);
        let counters = m.counters();
        let mut items: Vec<SigCheck> = nodes()
            .iter()
            .zip(&sigs)
            .cycle()
            .take(20)
            .map(|(n, s)| SigCheck { data: data.clone(), signature: s.clone(), node: n.clone() })
            .collect();
        items[13].signature[5] ^= 1;
        let out = apply(
            &mut m,
            ModuleId::new("crypto"),
            vec![
                Event::new(
                    "app",
                    "crypto",
                    SignRequest { data: data.clone(), domain: None, origin: origin(0) },
                ),
                Event::new("app", "crypto", VerifySigs { items, domain: None, origin: origin(1) }),
            ],
        )
        .unwrap();
        assert_eq!(
            out[0].get::<SignResult>().unwrap().signature,
            sigs[0],
            "deterministic signatures"
        );
        let v = out[1].get::<SigsVerified>().unwrap();
        assert!(!v.all_ok);
        let bad: Vec<usize> =
            v.errors.iter().enumerate().filter(|(_, e)| e.is_some()).map(|(i, _)| i).collect();
        assert_eq!(bad, [13], "results keep their order across threads");
        assert_eq!(out[1].dest.as_str(), "app");
        // 20 items: 4 distinct valid ones and one forged, each computed once.
        let s = counters.snapshot();
        assert_eq!((s.signed, s.verified, s.cached), (1, 5, 15));
    }

    #[test]
    fn registry_rejects_bad_keys() {
        assert!(KeyRegistry::from_sec1([(NodeId::new("0"), &[1u8, 2, 3][..])]).is_err());
        let (_, reg) = test_keys(3, &nodes());
        let pk = reg.get(&nodes()[0]).unwrap().to_encoded_point(true);
        assert!(KeyRegistry::from_sec1([(NodeId::new("0"), pk.as_bytes())]).is_ok());
    }

    #[test]
    fn test_keys_are_deterministic() {
        let (a, _) = test_keys(5, &nodes());
        let (b, _) = test_keys(5, &nodes());
        let (c, _) = test_keys(6, &nodes());
        assert_eq!(a[&nodes()[2]].to_bytes(), b[&nodes()[2]].to_bytes());
        assert_ne!(a[&nodes()[2]].to_bytes(), c[&nodes()[2]].to_bytes());
    }
}
