//! Client signatures: a client whose ID is its public key signs its transactions, and every node
//! checks them before the application sees them.
//!
//! A **signing client**'s ID is `k256:` followed by its compressed secp256k1 public key in hex
//! ([`client_id`]). It signs [`message`]: the client ID, the number and the payload, framed and
//! domain-separated. The gateway refuses a bad signature at once (`INVALID`); the application
//! module checks again at delivery (a Byzantine node can put anything in a batch), and a
//! transaction whose check fails is delivered with the result `!invalid signature: …` and not
//! applied. Checks are deterministic, so every correct node decides the same. Other client IDs
//! are unauthenticated, as before; a signature from one of them is refused (it could not be
//! checked). An application can then trust the client ID of a `k256:` client, e.g. to make it
//! an admin ([`members::Members::new`](super::members::Members::new)).
//!
//! ```
//! use mir_runtime::keys::NodeKeys;
//! use protocols::availability::Tx;
//! use protocols::smr::signed;
//! let key = NodeKeys::test(1, &"alice".into()).signing;
//! let id = signed::client_id(&key);
//! assert!(id.starts_with("k256:"));
//! let tx = signed::sign(&key, Tx::new(id.as_str(), 0, "put k v"));
//! assert_eq!(signed::check(&tx), Ok(()));
//! let mut forged = tx.clone();
//! forged.data = b"put k w".to_vec();
//! assert!(signed::check(&forged).is_err());
//! assert_eq!(signed::check(&Tx::new("bob", 0, "x")), Ok(())); // unsigned, not a key: as before
//! ```

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::availability::Tx;

/// The prefix of a signing client's ID.
pub const PREFIX: &str = "k256:";

/// The client ID of the holder of `key`.
pub fn client_id(key: &SigningKey) -> String {
    let point = key.verifying_key().to_encoded_point(true);
    let hex: String = point.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

/// What a signing client signs for `tx`.
pub fn message(tx: &Tx) -> Vec<u8> {
    let mut m = b"mir.smr.tx\0".to_vec();
    for part in [tx.client.0.as_bytes(), &tx.tx_no.to_le_bytes(), &tx.data] {
        m.extend_from_slice(&(part.len() as u64).to_le_bytes());
        m.extend_from_slice(part);
    }
    m
}

/// `tx` signed with `key` (its client ID should be [`client_id`] of `key`).
pub fn sign(key: &SigningKey, tx: Tx) -> Tx {
    let signature: Signature = key.sign(&message(&tx));
    tx.with_signature(signature.to_bytes().to_vec())
}

/// Checks `tx`: a `k256:` client's signature must be valid; any other client must not sign.
pub fn check(tx: &Tx) -> Result<(), String> {
    let Some(hex) = tx.client.0.strip_prefix(PREFIX) else {
        if tx.signature.is_empty() {
            return Ok(());
        }
        return Err(format!("a signature from client {}, whose ID is not a key", tx.client.0));
    };
    let bytes = unhex(hex).ok_or("the client ID is not a hex key")?;
    let key = VerifyingKey::from_sec1_bytes(&bytes).map_err(|_| "the client ID is not a key")?;
    let signature =
        Signature::from_slice(&tx.signature).map_err(|_| "invalid signature: malformed")?;
    key.verify(&message(tx), &signature).map_err(|_| "invalid signature".to_string())
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 200 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::batchfetcher::NewOrderedBatch;
    use crate::smr::app::{AppModule, Applied};
    use crate::smr::kv::KvStore;
    use mir_runtime::keys::NodeKeys;
    use mir_runtime::{testing::apply, Event, ModuleId, NodeId};

    /// A node that delivers a batch a Byzantine leader filled: the forged and the foreign
    /// transactions are not applied, the good one is.
    #[test]
    fn the_application_module_applies_only_well_signed_transactions() {
        let key = NodeKeys::test(1, &"alice".into()).signing;
        let id = client_id(&key);
        let good = sign(&key, Tx::new(id.as_str(), 0, "put k v"));
        let mut forged = good.clone();
        forged.tx_no = 1;
        forged.data = b"put k evil".to_vec();
        let unsigned_in_her_name = Tx::new(id.as_str(), 2, "put k evil");
        let signed_by_a_name = Tx::new("bob", 0, "put k evil").with_signature(vec![1; 64]);
        let mut m = AppModule::new(KvStore::default(), NodeId::from_index(0))
            .check_clients(check)
            .receipts_to(ModuleId::new("clients"));
        let txs = vec![good, forged, unsigned_in_her_name, signed_by_a_name];
        let batch = NewOrderedBatch { sn: 1, txs };
        let out =
            apply(&mut m, ModuleId::new("app"), vec![Event::new("bf", "app", batch)]).unwrap();
        let applied: Applied = out[0].payload.decode().unwrap().unwrap();
        let results: Vec<String> =
            applied.receipts.iter().map(|r| String::from_utf8_lossy(&r.result).into()).collect();
        assert_eq!(results[0], "-");
        for r in &results[1..] {
            assert!(r.starts_with('!'), "{results:?}");
        }
        assert_eq!(m.app().get(b"k"), Some(&b"v"[..]), "only the signed command was applied");
    }
}
