//! What every crypto module shares (the request/response protocol, signature domains, the
//! verification cache and its counters), and a deterministic, **insecure** crypto module for
//! tests and simulations.
//!
//! # The test crypto
//!
//! Each node's secret is derived from a seed and its ID; a signature is
//! SHA-256(secret ‖ [`signed_message`]). Every instance can compute every node's secret, so
//! signatures prove nothing against a real adversary; they do let a simulated Byzantine node be
//! modelled honestly (it can only sign as itself, because the test wires it with its own
//! identity) and they fail for altered data, wrong signers, other domains or garbage. The real
//! module (k256 ECDSA) serves the same events.
//!
//! # Each statement is verified at most once
//!
//! A peer can resend one signed message many times (a FINAL, a certificate, an echo). Every
//! crypto module remembers the outcome of its last [`DEFAULT_CACHE_ENTRIES`] checks, keyed by
//! SHA-256 of (signer, [`signed_message`], signature), failures included, so a repeat costs a
//! hash and a map lookup instead of an elliptic-curve verification. The cache holds 32-byte keys
//! and short error strings (about 200 bytes an entry, ~13 MiB at the default), evicts the oldest
//! entry first and is cleared when the key registry changes. [`CryptoCounters`] tell how many
//! checks were computed and how many were answered from the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::module::{Batch, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::crypto::{
    signed_message, SigVerified, SignRequest, SignResult, SigsVerified, VerifySig, VerifySigs,
};
use crate::stdevents::Init;

/// How many check outcomes a crypto module remembers by default.
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// Counters of a crypto module, shared with whoever holds a clone (cheap to clone; read them
/// with [`CryptoCounters::snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct CryptoCounters(Arc<CounterCells>);

#[derive(Debug, Default)]
struct CounterCells {
    signed: AtomicU64,
    verified: AtomicU64,
    cached: AtomicU64,
}

/// A reading of [`CryptoCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CryptoStats {
    /// Signatures made.
    pub signed: u64,
    /// Signature checks computed (each one an elliptic-curve verification for ECDSA).
    pub verified: u64,
    /// Signature checks answered from the cache.
    pub cached: u64,
}

impl CryptoCounters {
    /// The current values.
    pub fn snapshot(&self) -> CryptoStats {
        CryptoStats {
            signed: self.0.signed.load(Ordering::Relaxed),
            verified: self.0.verified.load(Ordering::Relaxed),
            cached: self.0.cached.load(Ordering::Relaxed),
        }
    }
}

/// What a crypto module does with bytes; [`Server`] turns it into the request/response protocol
/// shared by every crypto module (so they answer the same events the same way).
pub(crate) trait CryptoImpl {
    /// This node's signature of `message`.
    fn sign(&self, message: &[u8]) -> Vec<u8>;
    /// `None` if `signature` is `node`'s signature of `message`, else why not.
    fn check(&self, node: &NodeId, message: &[u8], signature: &[u8]) -> Option<String>;
    /// [`CryptoImpl::check`] for each `(node, message, signature)`, in order.
    fn check_all(&self, items: &[(&NodeId, &[u8], &[u8])]) -> Vec<Option<String>> {
        items.iter().map(|(n, m, s)| self.check(n, m, s)).collect()
    }
}

/// The state every crypto module keeps beside its keys: the deployment it signs for, the
/// verification cache and the counters.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) deployment: Vec<u8>,
    capacity: usize,
    outcomes: HashMap<[u8; 32], Option<String>>,
    order: VecDeque<[u8; 32]>,
    pub(crate) counters: CryptoCounters,
}

impl Server {
    pub(crate) fn new(deployment: Vec<u8>) -> Self {
        Server {
            deployment,
            capacity: DEFAULT_CACHE_ENTRIES,
            outcomes: HashMap::new(),
            order: VecDeque::new(),
            counters: CryptoCounters::default(),
        }
    }

    pub(crate) fn set_capacity(&mut self, entries: usize) {
        self.capacity = entries;
        self.forget();
    }

    /// Forgets every remembered outcome (keys changed).
    pub(crate) fn forget(&mut self) {
        self.outcomes.clear();
        self.order.clear();
    }

    fn domain<'a>(requested: &'a Option<ModuleId>, origin: &'a ModuleId) -> &'a ModuleId {
        requested.as_ref().unwrap_or(origin)
    }

    fn key(node: &NodeId, message: &[u8], signature: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [node.as_str().as_bytes(), message, signature] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn remember(&mut self, key: [u8; 32], outcome: Option<String>) {
        if self.capacity == 0 || self.outcomes.contains_key(&key) {
            return;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        self.order.push_back(key);
        self.outcomes.insert(key, outcome);
    }

    /// Checks every `(node, message, signature)`: remembered outcomes first, then the rest (each
    /// distinct one once) through `c`.
    fn check_all(
        &mut self,
        c: &impl CryptoImpl,
        items: &[(&NodeId, Vec<u8>, &[u8])],
    ) -> Vec<Option<String>> {
        let keys: Vec<[u8; 32]> = items.iter().map(|(n, m, s)| Self::key(n, m, s)).collect();
        let mut todo: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, k) in keys.iter().enumerate() {
            if !self.outcomes.contains_key(k) && seen.insert(*k) {
                todo.push(i);
            }
        }
        let work: Vec<(&NodeId, &[u8], &[u8])> =
            todo.iter().map(|&i| (items[i].0, items[i].1.as_slice(), items[i].2)).collect();
        let fresh = c.check_all(&work);
        let cells = &self.counters.0;
        cells.verified.fetch_add(todo.len() as u64, Ordering::Relaxed);
        cells.cached.fetch_add((items.len() - todo.len()) as u64, Ordering::Relaxed);
        let mut computed: HashMap<[u8; 32], Option<String>> = HashMap::new();
        for (&i, outcome) in todo.iter().zip(fresh) {
            computed.insert(keys[i], outcome.clone());
            self.remember(keys[i], outcome);
        }
        keys.iter()
            .map(|k| match computed.get(k) {
                Some(o) => o.clone(),
                None => self.outcomes.get(k).cloned().flatten(),
            })
            .collect()
    }

    /// Answers one crypto request (`Init` is ignored; other events are an error).
    pub(crate) fn serve(
        &mut self,
        c: &impl CryptoImpl,
        ev: Event,
        out: &mut Outbox,
    ) -> ModuleResult {
        if ev.is::<Init>() {
            return Ok(());
        }
        if ev.is::<SignRequest>() {
            let r: SignRequest = ev.into_payload().map_err(ModuleError::new)?;
            let domain = Self::domain(&r.domain, &r.origin.module);
            let signature = c.sign(&signed_message(&self.deployment, domain, &r.data));
            self.counters.0.signed.fetch_add(1, Ordering::Relaxed);
            out.send(&r.origin.module.clone(), SignResult { signature, origin: r.origin });
        } else if ev.is::<VerifySig>() {
            let r: VerifySig = ev.into_payload().map_err(ModuleError::new)?;
            let domain = Self::domain(&r.domain, &r.origin.module);
            let message = signed_message(&self.deployment, domain, &r.data);
            let error = self.check_all(c, &[(&r.node, message, &r.signature)]).pop().flatten();
            out.send(
                &r.origin.module.clone(),
                SigVerified { node: r.node, error, origin: r.origin },
            );
        } else if ev.is::<VerifySigs>() {
            let r: VerifySigs = ev.into_payload().map_err(ModuleError::new)?;
            let domain = Self::domain(&r.domain, &r.origin.module);
            let items: Vec<(&NodeId, Vec<u8>, &[u8])> = r
                .items
                .iter()
                .map(|i| {
                    let message = signed_message(&self.deployment, domain, &i.data);
                    (&i.node, message, i.signature.as_slice())
                })
                .collect();
            let errors = self.check_all(c, &items);
            let all_ok = errors.iter().all(Option::is_none);
            out.send(&r.origin.module.clone(), SigsVerified { errors, all_ok, origin: r.origin });
        } else {
            return Err(ModuleError::unexpected_event(&ev));
        }
        Ok(())
    }
}

/// The test crypto module of node `me` (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TestCrypto {
    keys: TestKeys,
    server: Server,
}

/// The secrets of [`TestCrypto`]: every node's is derivable from the seed.
#[derive(Debug, Clone)]
struct TestKeys {
    me: NodeId,
    seed: u64,
}

impl TestKeys {
    fn sign_as(&self, node: &NodeId, message: &[u8]) -> Vec<u8> {
        let mut secret = Sha256::new();
        secret.update(self.seed.to_le_bytes());
        secret.update(node.as_str().as_bytes());
        let secret = secret.finalize();
        let mut h = Sha256::new();
        h.update(secret);
        h.update(message);
        h.finalize().to_vec()
    }
}

impl CryptoImpl for TestKeys {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.sign_as(&self.me, message)
    }
    fn check(&self, node: &NodeId, message: &[u8], signature: &[u8]) -> Option<String> {
        (self.sign_as(node, message) != signature)
            .then(|| format!("invalid signature of node {node}"))
    }
}

impl TestCrypto {
    /// Crypto for node `me`; all nodes of a test must use the same `seed`. The deployment is
    /// `"test-crypto"` and the seed (little-endian), unless set with [`TestCrypto::deployment`].
    pub fn new(me: NodeId, seed: u64) -> Self {
        let mut deployment = b"test-crypto".to_vec();
        deployment.extend_from_slice(&seed.to_le_bytes());
        TestCrypto { keys: TestKeys { me, seed }, server: Server::new(deployment) }
    }

    /// Signs and verifies for deployment `id` (see
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

    /// `node`'s signature of `data` in `domain` (what `node`'s module produces when asked by
    /// module `domain`): lets a test play a Byzantine node that signs what it likes.
    ///
    /// ```
    /// use mir_runtime::{NodeId, stdmodules::TestCrypto};
    /// let c = TestCrypto::new(NodeId::from_index(0), 1);
    /// let d = vec![b"x".to_vec()];
    /// let n = NodeId::from_index(2);
    /// assert_ne!(c.sign_as(&n, &"bcb/1".into(), &d), c.sign_as(&n, &"bcb/2".into(), &d));
    /// ```
    pub fn sign_as(&self, node: &NodeId, domain: &ModuleId, data: &[Vec<u8>]) -> Vec<u8> {
        self.keys.sign_as(node, &signed_message(&self.server.deployment, domain, data))
    }
}

impl PassiveModule for TestCrypto {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            self.server.serve(&self.keys, ev, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdevents::crypto::{Origin, SigCheck};
    use crate::testing::apply;

    fn verify(c: &mut TestCrypto, from: &str, items: Vec<SigCheck>) -> SigsVerified {
        let mut r = VerifySigs::new(items);
        r.origin = Origin { module: from.into(), id: 1 };
        let out = apply(c, "crypto".into(), vec![Event::new(from, "crypto", r)]).unwrap();
        out[0].get::<SigsVerified>().unwrap().clone()
    }

    #[test]
    fn domains_and_deployments_separate_signatures() {
        let me = NodeId::from_index(0);
        let mut c = TestCrypto::new(me.clone(), 1);
        let data = vec![b"m".to_vec()];
        let item = |sig: Vec<u8>| SigCheck { data: data.clone(), signature: sig, node: me.clone() };
        let sig = c.sign_as(&me, &"bcb/1".into(), &data);
        assert!(verify(&mut c, "bcb/1", vec![item(sig.clone())]).all_ok);
        assert!(!verify(&mut c, "bcb2/1", vec![item(sig.clone())]).all_ok);
        assert!(!verify(&mut c, "bcb/2", vec![item(sig.clone())]).all_ok);
        let mut other = TestCrypto::new(me.clone(), 1).deployment(b"other".to_vec());
        assert!(!verify(&mut other, "bcb/1", vec![item(sig.clone())]).all_ok);
        // A named domain overrides the requester's.
        let mut r = VerifySig::new(data.clone(), sig, me.clone()).in_domain("bcb/1");
        r.origin = Origin { module: "checker".into(), id: 2 };
        let out = apply(&mut c, "crypto".into(), vec![Event::new("checker", "crypto", r)]).unwrap();
        assert_eq!(out[0].get::<SigVerified>().unwrap().error, None);
    }

    #[test]
    fn each_check_is_computed_once_failures_included() {
        let me = NodeId::from_index(0);
        let mut c = TestCrypto::new(me.clone(), 1);
        let counters = c.counters();
        let data = vec![b"m".to_vec()];
        let good = c.sign_as(&me, &"app".into(), &data);
        let items = vec![
            SigCheck { data: data.clone(), signature: good, node: me.clone() },
            SigCheck { data: data.clone(), signature: vec![7; 32], node: me.clone() },
        ];
        for _ in 0..100 {
            let v = verify(&mut c, "app", items.clone());
            assert_eq!(v.errors[0], None);
            assert!(v.errors[1].as_ref().unwrap().contains("invalid"));
        }
        let s = counters.snapshot();
        assert_eq!((s.verified, s.cached), (2, 198));
        // Duplicates within one request are computed once too.
        let v = verify(&mut c, "other", vec![items[1].clone(), items[1].clone()]);
        assert!(v.errors.iter().all(Option::is_some));
        assert_eq!(counters.snapshot().verified, 3);
    }

    #[test]
    fn the_cache_is_bounded() {
        let me = NodeId::from_index(0);
        let mut c = TestCrypto::new(me.clone(), 1).cache_entries(4);
        let counters = c.counters();
        let item = |i: u8| SigCheck { data: vec![vec![i]], signature: vec![i], node: me.clone() };
        for i in 0..10 {
            verify(&mut c, "app", vec![item(i)]);
        }
        assert_eq!(c.server.outcomes.len(), 4);
        verify(&mut c, "app", vec![item(0)]); // evicted: computed again
        verify(&mut c, "app", vec![item(9)]); // remembered
        let s = counters.snapshot();
        assert_eq!((s.verified, s.cached), (11, 1));
    }
}
