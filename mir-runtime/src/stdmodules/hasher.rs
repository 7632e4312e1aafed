//! The hasher module: SHA-256 of [framed](crate::stdevents::crypto::frame) data, served through
//! [`HashRequest`] / [`HashResult`], the same request/response shape as the crypto module. Register
//! it with [`NodeBuilder::passive_on_worker`](crate::NodeBuilder::passive_on_worker) in production
//! so hashing large batches does not stall protocol modules.

use sha2::{Digest, Sha256};

use crate::module::{Batch, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::crypto::{HashRequest, HashResult};
use crate::stdevents::Init;

/// SHA-256 of framed data: what the hasher answers for one item.
///
/// ```
/// use mir_runtime::stdmodules::hasher::digest;
/// assert_ne!(digest(&[b"ab".to_vec(), b"c".to_vec()]), digest(&[b"a".to_vec(), b"bc".to_vec()]));
/// assert_eq!(digest(&[]).len(), 32);
/// // The same as hashing the framing in one piece.
/// use sha2::{Digest, Sha256};
/// let d = [b"ab".to_vec(), vec![7; 300]];
/// assert_eq!(digest(&d), Sha256::digest(mir_runtime::stdevents::crypto::frame(&d)).to_vec());
/// ```
pub fn digest(data: &[Vec<u8>]) -> Vec<u8> {
    // The framing, fed to the hash part by part (no copy of the data into one buffer).
    let mut h = Sha256::new();
    for d in data {
        h.update((d.len() as u64).to_le_bytes());
        h.update(d);
    }
    h.finalize().to_vec()
}

/// The hasher module.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hasher;

impl PassiveModule for Hasher {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                continue;
            }
            let r: HashRequest = match ev.into_payload() {
                Ok(r) => r,
                Err(crate::PayloadError::OtherType(p)) => {
                    return Err(ModuleError::new(format!(
                        "the hasher does not handle {}",
                        p.name()
                    )))
                }
                Err(e) => return Err(ModuleError::new(e)),
            };
            let digests = r.data.iter().map(|d| digest(d)).collect();
            out.send(&r.origin.module.clone(), HashResult { digests, origin: r.origin });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stdevents::crypto::Origin;
    use crate::{testing::apply, Event, ModuleId};

    #[test]
    fn hashes_each_item_in_order() {
        let data = vec![vec![b"x".to_vec()], vec![], vec![b"y".to_vec(), b"z".to_vec()]];
        let req = HashRequest {
            data: data.clone(),
            origin: Origin { module: ModuleId::new("app"), id: 3 },
        };
        let out =
            apply(&mut Hasher, ModuleId::new("hasher"), vec![Event::new("app", "hasher", req)])
                .unwrap();
        let r = out[0].get::<HashResult>().unwrap();
        assert_eq!(r.origin.id, 3);
        assert_eq!(r.digests, data.iter().map(|d| digest(d)).collect::<Vec<_>>());
        assert_eq!(out[0].dest.as_str(), "app");
        let err = apply(
            &mut Hasher,
            ModuleId::new("hasher"),
            vec![Event::new("app", "hasher", crate::stdevents::TestUint64(1))],
        );
        assert!(err.unwrap_err().0.contains("does not handle mir.TestUint64"));
    }
}
