//! A node's secret keys, and the files that hold them.
//!
//! Every member has two key pairs: a **signing key** (secp256k1 ECDSA, the protocols' signatures,
//! served by the [crypto module](crate::stdmodules::EcdsaCrypto)) and a **transport key**
//! (Ed25519, the [TLS channel](crate::transport::tls)). The membership file lists the public
//! parts (`public_key`, `transport_key`); the secret parts live in two files, each the 32-byte
//! secret in hex, readable only by their owner:
//!
//! ```text
//! keys/<id>.signing.key
//! keys/<id>.transport.key
//! ```
//!
//! `mir keygen --id 3 --address 10.0.0.3:7000 --out keys/` writes them and prints the node's
//! membership entry ([`NodeKeys::member`]); `mir membership` assembles entries into a file.
//!
//! [`NodeKeys::test`] derives **public, insecure** keys from a seed for tests and local demos.
//! Anyone can compute them: a node started from a membership file must refuse them unless told
//! otherwise ([`NodeKeys::is_demo`] tells them apart).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;

use crate::id::NodeId;
use crate::membership::Member;
use crate::stdmodules::ecdsa::test_keys;
use crate::transport::tls::{hex, test_transport_keys, unhex, TransportKey};

/// The seed of the keys the local demos use.
pub const DEMO_SEED: u64 = 42;

/// A key file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("key file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file holds no valid key.
    #[error("key file {path}: {reason}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No secure random source.
    #[error("cannot generate keys: {0}")]
    Random(String),
}

/// A node's secret keys.
#[derive(Clone)]
pub struct NodeKeys {
    /// The signing key (secp256k1).
    pub signing: SigningKey,
    /// The transport key (Ed25519).
    pub transport: TransportKey,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys").field("transport", &self.transport).finish_non_exhaustive()
    }
}

impl NodeKeys {
    /// Fresh keys from the operating system's random source.
    pub fn generate() -> Result<Self, KeyFileError> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let signing = loop {
            let mut secret = [0u8; 32];
            rng.fill(&mut secret)
                .map_err(|_| KeyFileError::Random("the system random source failed".into()))?;
            // Fails only for 0 or a value ≥ the curve order (probability ~2⁻¹²⁸): draw again.
            if let Ok(k) = SigningKey::from_slice(&secret) {
                break k;
            }
        };
        let transport =
            TransportKey::generate().map_err(|e| KeyFileError::Random(e.to_string()))?;
        Ok(NodeKeys { signing, transport })
    }

    /// The **insecure** test keys of `id` for `seed` (anyone can compute them).
    ///
    /// ```
    /// use mir_runtime::{keys::NodeKeys, NodeId};
    /// let id = NodeId::from_index(1);
    /// let k = NodeKeys::test(42, &id);
    /// assert!(k.is_demo(&id));
    /// ```
    pub fn test(seed: u64, id: &NodeId) -> Self {
        let ids = std::slice::from_ref(id);
        let signing = test_keys(seed, ids).0.remove(id).expect("made for id");
        let transport = test_transport_keys(seed, ids).remove(id).expect("made for id");
        NodeKeys { signing, transport }
    }

    /// Whether these are `id`'s demo keys ([`NodeKeys::test`] with [`DEMO_SEED`]), which anyone
    /// can compute.
    pub fn is_demo(&self, id: &NodeId) -> bool {
        let demo = NodeKeys::test(DEMO_SEED, id);
        demo.signing.to_bytes() == self.signing.to_bytes()
            || demo.transport.public_key() == self.transport.public_key()
    }

    /// `id`'s membership entry with these keys.
    pub fn member(&self, id: NodeId, address: SocketAddr, weight: u128) -> Member {
        Member {
            id,
            address,
            public_key: self.signing.verifying_key().to_encoded_point(true).as_bytes().to_vec(),
            transport_key: self.transport.public_key(),
            weight,
        }
    }

    /// The two key files of `id` in `dir`.
    pub fn paths(dir: &Path, id: &NodeId) -> (PathBuf, PathBuf) {
        (dir.join(format!("{id}.signing.key")), dir.join(format!("{id}.transport.key")))
    }

    /// Writes `id`'s key files into `dir` (created if missing), readable only by the owner; an
    /// existing file is never overwritten.
    pub fn write(&self, dir: &Path, id: &NodeId) -> Result<(PathBuf, PathBuf), KeyFileError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| KeyFileError::Io { path: dir.to_owned(), reason: e.to_string() })?;
        let (s, t) = Self::paths(dir, id);
        write_secret(&s, &hex(&self.signing.to_bytes()))?;
        write_secret(&t, &self.transport.to_hex())?;
        Ok((s, t))
    }

    /// Reads `id`'s key files from `dir`.
    pub fn read(dir: &Path, id: &NodeId) -> Result<Self, KeyFileError> {
        let (s, t) = Self::paths(dir, id);
        let text = read_secret(&s)?;
        let signing = unhex(text.trim())
            .map_err(|e| e.to_string())
            .and_then(|b| SigningKey::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|reason| KeyFileError::Bad {
                path: s.clone(),
                reason: format!("not a secp256k1 secret key in hex: {reason}"),
            })?;
        let transport = TransportKey::from_hex(&read_secret(&t)?)
            .map_err(|e| KeyFileError::Bad { path: t.clone(), reason: e.to_string() })?;
        Ok(NodeKeys { signing, transport })
    }
}

fn write_secret(path: &Path, text: &str) -> Result<(), KeyFileError> {
    use std::io::Write;
    let io = |e: std::io::Error| KeyFileError::Io { path: path.to_owned(), reason: e.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io)?;
    f.write_all(format!("{text}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn read_secret(path: &Path) -> Result<String, KeyFileError> {
    let io = |e: std::io::Error| KeyFileError::Io { path: path.to_owned(), reason: e.to_string() };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > 1024 {
        return Err(KeyFileError::Bad {
            path: path.to_owned(),
            reason: format!("{} bytes: a key file holds 65", meta.len()),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(KeyFileError::Bad {
                path: path.to_owned(),
                reason: format!(
                    "readable by others (mode {:o}); make it readable only by its owner: chmod 600",
                    meta.permissions().mode() & 0o777
                ),
            });
        }
    }
    std::fs::read_to_string(path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_owner_only_files() {
        let dir = std::env::temp_dir().join(format!("mir-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = NodeId::new("3");
        let k = NodeKeys::generate().unwrap();
        assert!(!k.is_demo(&id));
        let (s, t) = k.write(&dir, &id).unwrap();
        #[cfg(unix)]
        for p in [&s, &t] {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let back = NodeKeys::read(&dir, &id).unwrap();
        assert_eq!(back.signing.to_bytes(), k.signing.to_bytes());
        assert_eq!(back.transport.public_key(), k.transport.public_key());
        // Never overwritten.
        assert!(k.write(&dir, &id).unwrap_err().to_string().contains("exists"));
        // Too open: refused with the fix in the message.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(NodeKeys::read(&dir, &id).unwrap_err().to_string().contains("chmod 600"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
