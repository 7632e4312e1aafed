//! The reference application: a replicated key-value store.
//!
//! A transaction's payload is a command in text, so that a client in any language (or a shell)
//! can make one; keys are one word, values the rest of the line (any bytes):
//!
//! | command | result |
//! |---|---|
//! | `put KEY VALUE` | the previous value: `+VALUE`, or `-` if there was none |
//! | `get KEY` | `+VALUE`, or `-` |
//! | `del KEY` | the previous value: `+VALUE`, or `-` |
//! | anything else | `!` and what is wrong |
//!
//! A store made [`with_membership`](KvStore::with_membership) also decides the membership of the
//! nodes that replicate it ([reconfiguration](super::Application::membership)), with the
//! `add-node` and `remove-node` commands of [`Members`] (from the admin client only).
//!
//! The snapshot is the canonical encoding of the sorted map and the membership.

use std::collections::BTreeMap;

#[cfg(feature = "system")]
use mir_runtime::membership::{Member, Membership};

#[cfg(feature = "system")]
use super::members::Members;
use super::Application;
use crate::availability::Tx;

/// A key-value store (keys and values are bytes; a key has no spaces).
///
/// ```
/// use protocols::availability::Tx;
/// use protocols::smr::{kv::KvStore, Application};
/// let mut kv = KvStore::default();
/// assert_eq!(kv.apply(&Tx::new("c", 0, "put color blue")), b"-");
/// assert_eq!(kv.apply(&Tx::new("c", 1, "get color")), b"+blue");
/// assert_eq!(kv.apply(&Tx::new("c", 2, "put color green")), b"+blue");
/// assert_eq!(kv.apply(&Tx::new("c", 3, "del color")), b"+green");
/// assert_eq!(kv.apply(&Tx::new("c", 4, "get color")), b"-");
/// assert!(kv.apply(&Tx::new("c", 5, "frobnicate")).starts_with(b"!"));
/// ```
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KvStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The membership it decides, if it reconfigures.
    #[cfg(feature = "system")]
    members: Option<Members>,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `put KEY VALUE`.
    Put(&'a [u8], &'a [u8]),
    /// `get KEY`.
    Get(&'a [u8]),
    /// `del KEY`.
    Del(&'a [u8]),
}

impl<'a> Command<'a> {
    /// Parses a command; an error says what is wrong.
    ///
    /// ```
    /// use protocols::smr::kv::Command;
    /// assert_eq!(Command::parse(b"put k a b"), Ok(Command::Put(b"k", b"a b")));
    /// assert!(Command::parse(b"get").is_err());
    /// ```
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        let (op, rest) = split_word(data);
        let (key, value) = split_word(rest);
        if key.is_empty() {
            return Err("no key".into());
        }
        match op {
            b"put" => Ok(Command::Put(key, value)),
            b"get" | b"del" if !value.is_empty() => {
                Err(format!("{} takes only a key", String::from_utf8_lossy(op)))
            }
            b"get" => Ok(Command::Get(key)),
            b"del" => Ok(Command::Del(key)),
            other => {
                Err(format!("unknown command {:?} (put, get, del)", String::from_utf8_lossy(other)))
            }
        }
    }
}

/// The first space-separated word and the rest (after one space).
fn split_word(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b' ') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn found(v: Option<Vec<u8>>) -> Vec<u8> {
    match v {
        Some(v) => [&b"+"[..], &v].concat(),
        None => b"-".to_vec(),
    }
}

impl KvStore {
    /// A store that also decides the membership, starting with `initial` (every node of a
    /// deployment must start with the same one), changed by the `admins` only (make them
    /// signing clients: [`Members`]).
    ///
    /// ```
    /// use mir_runtime::{keys::NodeKeys, membership::{Member, Membership}, NodeId};
    /// use protocols::availability::Tx;
    /// use protocols::smr::{kv::KvStore, Application};
    /// let member = |i: usize| -> Member {
    ///     let id = NodeId::from_index(i);
    ///     NodeKeys::test(1, &id).member(id, ([127, 0, 0, 1], 7000 + i as u16).into(), 1)
    /// };
    /// let initial = Membership { nodes: (0..4).map(member).collect() };
    /// let mut kv = KvStore::with_membership(initial, ["admin".into()]);
    /// let entry = member(4).to_toml();
    /// assert_eq!(kv.apply(&Tx::new("admin", 0, format!("add-node\n{entry}"))), b"+ok");
    /// assert_eq!(kv.membership().unwrap().len(), 5);
    /// assert!(kv.apply(&Tx::new("admin", 1, format!("add-node\n{entry}"))).starts_with(b"!"));
    /// assert_eq!(kv.apply(&Tx::new("admin", 2, "remove-node 0")), b"+ok");
    /// assert_eq!(kv.membership().unwrap()[0].id.as_str(), "1");
    /// ```
    #[cfg(feature = "system")]
    pub fn with_membership(
        initial: Membership,
        admins: impl IntoIterator<Item = crate::availability::ClientId>,
    ) -> Self {
        KvStore { map: BTreeMap::new(), members: Some(Members::new(initial, admins)) }
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Application for KvStore {
    fn apply(&mut self, tx: &Tx) -> Vec<u8> {
        #[cfg(feature = "system")]
        if Members::is_command(&tx.data) {
            return match &mut self.members {
                Some(m) => m.command(&tx.client, &tx.data).expect("a membership command"),
                None => b"!this store does not change the membership".to_vec(),
            };
        }
        match Command::parse(&tx.data) {
            Ok(Command::Put(k, v)) => found(self.map.insert(k.to_vec(), v.to_vec())),
            Ok(Command::Get(k)) => found(self.map.get(k).cloned()),
            Ok(Command::Del(k)) => found(self.map.remove(k)),
            Err(e) => [&b"!"[..], e.as_bytes()].concat(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        #[cfg(feature = "system")]
        return mir_runtime::codec::encode(&(&self.map, &self.members));
        #[cfg(not(feature = "system"))]
        mir_runtime::codec::encode(&(&self.map, Option::<()>::None))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        #[cfg(feature = "system")]
        {
            (self.map, self.members) = mir_runtime::codec::decode("smr.KvSnapshot", snapshot)
                .map_err(|e| format!("not a key-value snapshot: {e}"))?;
        }
        #[cfg(not(feature = "system"))]
        {
            let (map, _members): (_, Option<()>) =
                mir_runtime::codec::decode("smr.KvSnapshot", snapshot)
                    .map_err(|e| format!("not a key-value snapshot: {e}"))?;
            self.map = map;
        }
        Ok(())
    }

    #[cfg(feature = "system")]
    fn membership(&self) -> Option<Vec<Member>> {
        self.members.as_ref().map(|m| m.nodes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_the_same_store() {
        let mut a = KvStore::default();
        for (i, c) in ["put a 1", "put b 2", "del a", "put c three words"].iter().enumerate() {
            a.apply(&Tx::new("c", i as u64, *c));
        }
        let mut b = KvStore::default();
        b.restore(&a.snapshot()).unwrap();
        assert_eq!(a, b);
        assert_eq!(b.get(b"c"), Some(&b"three words"[..]));
        assert!(b.restore(b"garbage").is_err());
    }
}
