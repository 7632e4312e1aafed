//! A membership kept in an application's state, changed by ordered commands: the building block
//! of reconfiguration ([`Application::membership`](super::Application::membership)).
//!
//! | command (the transaction's payload) | result |
//! |---|---|
//! | `add-node`, a newline, and a `[[node]]` entry of a membership file | `+ok`, or `!` and why not |
//! | `remove-node ID` | `+ok`, or `!` and why not (the last member stays) |
//!
//! Only the **admin clients** given at the start may change the membership. Make them signing
//! clients (`k256:` IDs, [`signed`](super::signed)): their commands cannot be forged, by a
//! client or by a Byzantine node proposing a batch. Any other ID is unauthenticated: anyone who
//! can reach a client port (or a Byzantine member) can act as it; the chat demo does that, as a
//! demo.
//! Every new entry is checked as a membership file is (address, keys, weight, duplicates), and
//! a membership has at most [`MAX_MEMBERS`] nodes.

use mir_runtime::membership::{Member, Membership};
use serde::{Deserialize, Serialize};

use crate::availability::ClientId;

/// Members a membership holds at most (each one's address, keys and weight are in the state).
pub const MAX_MEMBERS: usize = 64;

/// A membership changed by `add-node` and `remove-node` commands.
///
/// ```
/// use mir_runtime::{keys::NodeKeys, membership::{Member, Membership}, NodeId};
/// use protocols::smr::members::Members;
/// let member = |i: usize| -> Member {
///     let id = NodeId::from_index(i);
///     NodeKeys::test(1, &id).member(id, ([127, 0, 0, 1], 7000 + i as u16).into(), 1)
/// };
/// let mut m = Members::new(Membership { nodes: (0..4).map(member).collect() }, ["admin".into()]);
/// let add = format!("add-node\n{}", member(4).to_toml());
/// assert_eq!(m.command(&"admin".into(), add.as_bytes()), Some(b"+ok".to_vec()));
/// assert_eq!(m.nodes().len(), 5);
/// assert!(m.command(&"mallory".into(), b"remove-node 0").unwrap().starts_with(b"!"));
/// assert_eq!(m.command(&"admin".into(), b"remove-node 0"), Some(b"+ok".to_vec()));
/// assert_eq!(m.command(&"admin".into(), b"put k v"), None); // not a membership command
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    nodes: Vec<Member>,
    admins: Vec<ClientId>,
}

impl Members {
    /// Starting with `initial`; `admins` (and no other clients) may change it.
    pub fn new(initial: Membership, admins: impl IntoIterator<Item = ClientId>) -> Self {
        Members { nodes: initial.nodes, admins: admins.into_iter().collect() }
    }

    /// The members now.
    pub fn nodes(&self) -> &[Member] {
        &self.nodes
    }

    /// Whether `data` is a membership command.
    pub fn is_command(data: &[u8]) -> bool {
        data.starts_with(b"add-node\n") || data.starts_with(b"remove-node ")
    }

    /// Applies `data` from `client` if it is a membership command (`None` otherwise): the
    /// result is `+ok` or `!` and why not.
    pub fn command(&mut self, client: &ClientId, data: &[u8]) -> Option<Vec<u8>> {
        let outcome = if let Some(entry) = data.strip_prefix(b"add-node\n") {
            self.allowed(client).and_then(|()| self.add(entry))
        } else if let Some(id) = data.strip_prefix(b"remove-node ") {
            self.allowed(client).and_then(|()| self.remove(id))
        } else {
            return None;
        };
        Some(match outcome {
            Ok(()) => b"+ok".to_vec(),
            Err(e) => [&b"!"[..], e.as_bytes()].concat(),
        })
    }

    fn allowed(&self, client: &ClientId) -> Result<(), String> {
        if self.admins.contains(client) {
            Ok(())
        } else {
            Err(format!("client {} may not change the membership", client.0))
        }
    }

    fn add(&mut self, entry: &[u8]) -> Result<(), String> {
        if self.nodes.len() >= MAX_MEMBERS {
            return Err(format!("at most {MAX_MEMBERS} members"));
        }
        let entry = std::str::from_utf8(entry).map_err(|_| "the entry is not UTF-8".to_string())?;
        let current = Membership { nodes: self.nodes.clone() };
        let text = format!("{}\n{entry}", current.to_toml());
        let next = Membership::from_toml_str(&text, "add-node").map_err(|e| e.to_string())?;
        if next.nodes.len() != self.nodes.len() + 1 {
            return Err("add one [[node]] entry".into());
        }
        self.nodes = next.nodes;
        Ok(())
    }

    fn remove(&mut self, id: &[u8]) -> Result<(), String> {
        let id = std::str::from_utf8(id).map_err(|_| "the ID is not UTF-8".to_string())?.trim();
        let i = self
            .nodes
            .iter()
            .position(|m| m.id.as_str() == id)
            .ok_or_else(|| format!("{id} is not a member"))?;
        if self.nodes.len() == 1 {
            return Err("the last member cannot leave".into());
        }
        self.nodes.remove(i);
        Ok(())
    }
}
