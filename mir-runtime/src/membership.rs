//! Membership files: the nodes of a deployment, their addresses, public keys and voting weights.
//!
//! A TOML (`.toml`) or JSON (`.json`) file lists the nodes:
//!
//! ```toml
//! [[node]]
//! id = "0"
//! address = "127.0.0.1:7000"
//! public_key = "02…"          # SEC1 secp256k1 public key, hex (compressed or not): signatures
//! transport_key = "3b6a…"     # Ed25519 public key, 64 hex digits: the TLS channel (pinned)
//! weight = 1                  # optional, default 1; a string for weights beyond 64 bits
//! ```
//!
//! `mir keygen` makes a node's keys and prints its entry; `mir membership` assembles entries into
//! a file ([`Membership::to_toml`]).
//!
//! Every way a file can be wrong is a [`MembershipError`] that names the file and, for parse
//! errors, the place: unknown fields, a missing field, a bad ID, address or key, a zero weight,
//! a node or address listed twice, an empty list.
//!
//! ```
//! use mir_runtime::membership::Membership;
//! let m = Membership::from_toml_str(r#"
//!     [[node]]
//!     id = "a"
//!     address = "127.0.0.1:7000"
//!     public_key = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
//!     transport_key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
//!     weight = "100000000000000000000"
//! "#, "inline").unwrap();
//! assert_eq!(m.nodes[0].weight, 100_000_000_000_000_000_000);
//! assert_eq!(m.registry().unwrap().get(&"a".into()).is_some(), true);
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::NodeId;
use crate::stdmodules::ecdsa::{KeyError, KeyRegistry};

/// One node of a membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's ID.
    pub id: NodeId,
    /// Where it listens.
    pub address: SocketAddr,
    /// Its SEC1-encoded secp256k1 public key (signatures).
    pub public_key: Vec<u8>,
    /// Its Ed25519 public transport key (the TLS channel; see [`crate::transport::tls`]).
    pub transport_key: [u8; 32],
    /// Its voting weight (> 0).
    pub weight: u128,
}

impl Member {
    /// This member's `[[node]]` entry (TOML).
    pub fn to_toml(&self) -> String {
        use crate::transport::tls::hex;
        let weight = if self.weight <= u64::MAX as u128 {
            self.weight.to_string()
        } else {
            format!("\"{}\"", self.weight)
        };
        format!(
            "[[node]]\nid = \"{}\"\naddress = \"{}\"\npublic_key = \"{}\"\ntransport_key = \"{}\"\nweight = {weight}\n",
            self.id,
            self.address,
            hex(&self.public_key),
            hex(&self.transport_key)
        )
    }
}

/// The nodes of a deployment, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The nodes.
    pub nodes: Vec<Member>,
}

/// Why a membership file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The file cannot be read.
    #[error("cannot read membership file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The file's extension is neither `.toml` nor `.json`.
    #[error("membership file {0}: unknown format; use a .toml or .json file")]
    UnknownFormat(PathBuf),
    /// The file is not valid TOML/JSON for a membership.
    #[error("membership file {source_name}: {reason}")]
    Parse {
        /// The file (or description of the input).
        source_name: String,
        /// What is wrong and where.
        reason: String,
    },
    /// A node entry is invalid.
    #[error("membership file {source_name}, node #{index} ({id}): {reason}")]
    BadNode {
        /// The file.
        source_name: String,
        /// The entry's position (0-based).
        index: usize,
        /// The entry's ID as written.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The file lists no node.
    #[error("membership file {0} lists no node")]
    Empty(String),
    /// A node ID appears twice.
    #[error("membership file {source_name}: node {id} is listed twice")]
    DuplicateNode {
        /// The file.
        source_name: String,
        /// The ID.
        id: NodeId,
    },
    /// An address appears twice.
    #[error("membership file {source_name}: address {address} is used by two nodes")]
    DuplicateAddress {
        /// The file.
        source_name: String,
        /// The address.
        address: SocketAddr,
    },
    /// The total weight does not fit in 128 bits.
    #[error("membership file {0}: the total weight overflows 128 bits")]
    WeightOverflow(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    node: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    address: String,
    public_key: String,
    transport_key: String,
    #[serde(default)]
    weight: Option<RawWeight>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawWeight {
    Int(u64),
    Str(String),
}

fn hex(field: &str, s: &str) -> Result<Vec<u8>, String> {
    crate::transport::tls::unhex(s.trim()).map_err(|e| format!("{field}: {e}"))
}

impl Membership {
    /// Reads a `.toml` or `.json` membership file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MembershipError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| MembershipError::Io { path: path.to_owned(), reason: e.to_string() })?;
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text, &name),
            Some("json") => Self::from_json_str(&text, &name),
            _ => Err(MembershipError::UnknownFormat(path.to_owned())),
        }
    }

    /// Parses TOML; `source_name` names the input in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, MembershipError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| MembershipError::Parse {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
        Self::validate(raw, source_name)
    }

    /// Parses JSON (`{"node": [{"id": …}, …]}`); `source_name` names the input in errors.
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Self, MembershipError> {
        let raw: RawFile = serde_json::from_str(text).map_err(|e| MembershipError::Parse {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
        Self::validate(raw, source_name)
    }

    fn validate(raw: RawFile, source_name: &str) -> Result<Self, MembershipError> {
        if raw.node.is_empty() {
            return Err(MembershipError::Empty(source_name.into()));
        }
        let mut nodes = Vec::new();
        let (mut ids, mut addrs) = (BTreeSet::new(), BTreeSet::new());
        let mut total: u128 = 0;
        for (index, n) in raw.node.into_iter().enumerate() {
            let bad = |reason: String| MembershipError::BadNode {
                source_name: source_name.into(),
                index,
                id: n.id.clone(),
                reason,
            };
            let id = NodeId::try_new(&n.id).map_err(|e| bad(e.to_string()))?;
            let address: SocketAddr = n.address.parse().map_err(|_| {
                bad(format!(
                    "address {:?} is not an IP address and port (e.g. 127.0.0.1:7000)",
                    n.address
                ))
            })?;
            let public_key = hex("public_key", &n.public_key).map_err(bad)?;
            let transport_key: [u8; 32] = hex("transport_key", &n.transport_key)
                .map_err(bad)?
                .try_into()
                .map_err(|k: Vec<u8>| {
                    bad(format!(
                        "transport_key: expected 32 bytes (64 hex digits), got {}",
                        k.len()
                    ))
                })?;
            let mut check = KeyRegistry::new();
            check
                .insert_sec1(id.clone(), &public_key)
                .map_err(|e: KeyError| bad(format!("public_key: {}", e.reason)))?;
            let weight = match n.weight {
                None => 1,
                Some(RawWeight::Int(w)) => w as u128,
                Some(RawWeight::Str(s)) => s
                    .trim()
                    .parse::<u128>()
                    .map_err(|_| bad(format!("weight {s:?} is not a non-negative integer")))?,
            };
            if weight == 0 {
                return Err(bad("weight must be at least 1".into()));
            }
            total = total
                .checked_add(weight)
                .ok_or_else(|| MembershipError::WeightOverflow(source_name.into()))?;
            if !ids.insert(id.clone()) {
                return Err(MembershipError::DuplicateNode { source_name: source_name.into(), id });
            }
            if !addrs.insert(address) {
                return Err(MembershipError::DuplicateAddress {
                    source_name: source_name.into(),
                    address,
                });
            }
            if nodes.iter().any(|m: &Member| m.transport_key == transport_key) {
                return Err(bad("transport_key: used by another node".into()));
            }
            nodes.push(Member { id, address, public_key, transport_key, weight });
        }
        Ok(Membership { nodes })
    }

    /// The node IDs, in file order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// A member by ID.
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The public keys, for the crypto module.
    pub fn registry(&self) -> Result<KeyRegistry, KeyError> {
        KeyRegistry::from_sec1(self.nodes.iter().map(|n| (n.id.clone(), n.public_key.as_slice())))
    }

    /// (node, public transport key) pairs, for the TLS channels.
    pub fn transport_keys(&self) -> Vec<(NodeId, [u8; 32])> {
        self.nodes.iter().map(|n| (n.id.clone(), n.transport_key)).collect()
    }

    /// The file text (TOML) of this membership: what [`Membership::from_toml_str`] reads back.
    pub fn to_toml(&self) -> String {
        self.nodes.iter().map(Member::to_toml).collect::<Vec<_>>().join("\n")
    }

    /// (node, weight) pairs, for weighted quorums.
    pub fn weights(&self) -> Vec<(NodeId, u128)> {
        self.nodes.iter().map(|n| (n.id.clone(), n.weight)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    fn node(id: &str, port: u16, extra: &str) -> String {
        // A distinct transport key per port.
        let tk = format!("{:064x}", port);
        format!("[[node]]\nid = \"{id}\"\naddress = \"127.0.0.1:{port}\"\npublic_key = \"{KEY}\"\ntransport_key = \"{tk}\"\n{extra}\n")
    }

    fn err(text: &str) -> String {
        Membership::from_toml_str(text, "m.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_good_file() {
        let text = node("0", 7000, "") + &node("1", 7001, "weight = 3");
        let m = Membership::from_toml_str(&text, "m.toml").unwrap();
        assert_eq!(m.ids(), vec![NodeId::new("0"), NodeId::new("1")]);
        assert_eq!(m.weights()[1].1, 3);
        assert_eq!(m.get(&"1".into()).unwrap().address.port(), 7001);
        let json = r#"{"node": [{"id": "x", "address": "[::1]:9", "public_key": "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", "transport_key": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "weight": "100000000000000000000"}]}"#;
        let j = Membership::from_json_str(json, "m.json").unwrap();
        assert_eq!(j.nodes[0].weight, 100_000_000_000_000_000_000);
        // to_toml reads back as the same membership.
        for m in [m, j] {
            assert_eq!(Membership::from_toml_str(&m.to_toml(), "again").unwrap(), m);
        }
    }

    #[test]
    fn every_mistake_has_a_clear_error() {
        assert!(err("").contains("missing field `node`"), "{}", err(""));
        assert_eq!(err("node = []"), "membership file m.toml lists no node");
        assert!(err(&(node("0", 7000, "") + "colour = 1")).contains("unknown field `colour`"));
        assert!(err(&node("a b", 7000, "")).contains("node #0 (a b): invalid ID"));
        assert!(err(&node("0", 7000, "").replace("127.0.0.1:7000", "localhost"))
            .contains("address \"localhost\" is not an IP address and port"));
        assert!(
            err(&node("0", 7000, "").replace(KEY, "zz")).contains("public_key: \"zz\" is not hex")
        );
        let tk = format!("{:064x}", 7000);
        assert!(err(&node("0", 7000, "").replace(&tk, "00"))
            .contains("transport_key: expected 32 bytes"));
        assert!(err(&node("0", 7000, "").replace(&format!("transport_key = \"{tk}\"\n"), ""))
            .contains("missing field `transport_key`"));
        assert!(err(
            &(node("0", 7000, "") + &node("1", 7001, "").replace(&format!("{:064x}", 7001), &tk))
        )
        .contains("transport_key: used by another node"));
        assert!(err(&node("0", 7000, "").replace(KEY, "0200")).contains("public_key:"));
        assert!(err(&node("0", 7000, "weight = 0")).contains("weight must be at least 1"));
        assert!(err(&node("0", 7000, "weight = \"ten\"")).contains("weight \"ten\" is not"));
        assert_eq!(
            err(&(node("0", 7000, "") + &node("0", 7001, ""))),
            "membership file m.toml: node 0 is listed twice"
        );
        assert_eq!(
            err(&(node("0", 7000, "") + &node("1", 7000, ""))),
            "membership file m.toml: address 127.0.0.1:7000 is used by two nodes"
        );
        let max = format!("weight = \"{}\"", u128::MAX);
        assert!(err(&(node("0", 7000, &max) + &node("1", 7001, &max))).contains("overflows"));
        assert!(err("[[node]\n").contains("m.toml"));
    }

    #[test]
    fn files_by_extension() {
        let dir = std::env::temp_dir().join(format!("mir-membership-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("m.toml");
        std::fs::write(&t, node("0", 7000, "")).unwrap();
        assert_eq!(Membership::from_file(&t).unwrap().nodes.len(), 1);
        let y = dir.join("m.yaml");
        std::fs::write(&y, "x").unwrap();
        assert!(matches!(Membership::from_file(&y), Err(MembershipError::UnknownFormat(_))));
        assert!(Membership::from_file(dir.join("missing.toml"))
            .unwrap_err()
            .to_string()
            .starts_with("cannot read membership file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
