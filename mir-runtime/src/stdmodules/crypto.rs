//! A deterministic, **insecure** crypto module for tests and simulations.
//!
//! Each node's secret is derived from a seed and its ID; a signature is
//! SHA-256(secret ‖ [framed](crate::stdevents::crypto::frame) data). Every instance can compute
//! every node's secret, so signatures prove nothing against a real adversary; they do let a
//! simulated Byzantine node be modelled honestly (it can only sign as itself, because the test
//! wires it with its own identity) and they fail for altered data, wrong signers or garbage. The
//! real module (k256 ECDSA) serves the same events.

use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::id::NodeId;
use crate::module::{Batch, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::crypto::{
    frame, SigCheck, SigVerified, SignRequest, SignResult, SigsVerified, VerifySig, VerifySigs,
};
use crate::stdevents::Init;

/// The test crypto module of node `me`.
#[derive(Debug, Clone)]
pub struct TestCrypto {
    me: NodeId,
    seed: u64,
}

impl TestCrypto {
    /// Crypto for node `me`; all nodes of a test must use the same `seed`.
    pub fn new(me: NodeId, seed: u64) -> Self {
        TestCrypto { me, seed }
    }

    /// `node`'s signature of `data` (what `me`'s module produces when `node == me`).
    pub fn sign_as(&self, node: &NodeId, data: &[Vec<u8>]) -> Vec<u8> {
        let mut secret = Sha256::new();
        secret.update(self.seed.to_le_bytes());
        secret.update(node.as_str().as_bytes());
        let secret = secret.finalize();
        let mut h = Sha256::new();
        h.update(secret);
        h.update(frame(data));
        h.finalize().to_vec()
    }
}

/// What a crypto module does; [`serve`] turns it into the request/response protocol shared by
/// every crypto module (so they answer the same events the same way).
pub(crate) trait CryptoImpl {
    /// This node's signature of `data`.
    fn sign(&self, data: &[Vec<u8>]) -> Vec<u8>;
    /// `None` if `signature` is `node`'s signature of `data`, else why not.
    fn check(&self, node: &NodeId, data: &[Vec<u8>], signature: &[u8]) -> Option<String>;
    /// [`CryptoImpl::check`] for each item, in order.
    fn check_all(&self, items: &[SigCheck]) -> Vec<Option<String>> {
        items
            .iter()
            .map(|i| self.check(&i.node, &i.data, &i.signature))
            .collect()
    }
}

/// Answers one crypto request (`Init` is ignored; other events are an error).
pub(crate) fn serve(c: &impl CryptoImpl, ev: Event, out: &mut Outbox) -> ModuleResult {
    if ev.is::<Init>() {
        return Ok(());
    }
    if ev.is::<SignRequest>() {
        let r: SignRequest = ev.into_payload().map_err(ModuleError::new)?;
        let signature = c.sign(&r.data);
        out.send(
            &r.origin.module.clone(),
            SignResult {
                signature,
                origin: r.origin,
            },
        );
    } else if ev.is::<VerifySig>() {
        let r: VerifySig = ev.into_payload().map_err(ModuleError::new)?;
        let error = c.check(&r.node, &r.data, &r.signature);
        out.send(
            &r.origin.module.clone(),
            SigVerified {
                node: r.node,
                error,
                origin: r.origin,
            },
        );
    } else if ev.is::<VerifySigs>() {
        let r: VerifySigs = ev.into_payload().map_err(ModuleError::new)?;
        let errors = c.check_all(&r.items);
        let all_ok = errors.iter().all(Option::is_none);
        out.send(
            &r.origin.module.clone(),
            SigsVerified {
                errors,
                all_ok,
                origin: r.origin,
            },
        );
    } else {
        return Err(ModuleError::unexpected_event(&ev));
    }
    Ok(())
}

impl CryptoImpl for TestCrypto {
    fn sign(&self, data: &[Vec<u8>]) -> Vec<u8> {
        self.sign_as(&self.me, data)
    }
    fn check(&self, node: &NodeId, data: &[Vec<u8>], signature: &[u8]) -> Option<String> {
        (self.sign_as(node, data) != signature).then(|| format!("invalid signature of node {node}"))
    }
}

impl PassiveModule for TestCrypto {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            serve(self, ev, out)?;
        }
        Ok(())
    }
}
