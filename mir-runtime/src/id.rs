//! Module and node identifiers.
//!
//! A [`ModuleId`] is hierarchical: `ordering/3/1` names sub-instance `1` of sub-instance `3` of the
//! top-level module `ordering`. The node routes every event on the **first segment** only
//! ([`ModuleId::top`]); a module that owns sub-instances (the [factory](crate::stdmodules::factory))
//! routes further on the rest ([`ModuleId::sub`]).
//!
//! Segments are non-empty and made of ASCII letters, digits and `_ - . : #`. The restriction keeps
//! IDs printable in logs and tools, and reserves characters such as `@` for the runtime itself
//! ([`ModuleId::node`], the source of events the node makes, such as [`Init`](crate::stdevents::Init)).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The character that separates the segments of a [`ModuleId`].
pub const SEPARATOR: char = '/';

const NODE_SOURCE: &str = "@node";

/// Why a string is not a valid [`ModuleId`] or [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The ID, or one of its segments, is empty.
    #[error("invalid ID {0:?}: IDs and their `/`-separated segments must not be empty")]
    Empty(String),
    /// The ID contains a character outside the allowed set.
    #[error("invalid ID {id:?}: character {ch:?} is not allowed (use ASCII letters, digits and `_ - . : #`)")]
    BadChar {
        /// The offending ID.
        id: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '#')
}

fn check_module_id(s: &str) -> Result<(), IdError> {
    if s == NODE_SOURCE {
        return Ok(());
    }
    for seg in s.split(SEPARATOR) {
        if seg.is_empty() {
            return Err(IdError::Empty(s.to_owned()));
        }
        if let Some(ch) = seg.chars().find(|c| !valid_segment_char(*c)) {
            return Err(IdError::BadChar {
                id: s.to_owned(),
                ch,
            });
        }
    }
    Ok(())
}

/// The identifier of a module, hierarchical: `top/sub/sub…`.
///
/// Cheap to clone (a reference-counted string). Ordered and compared as its string.
///
/// ```
/// use mir_runtime::ModuleId;
/// let id = ModuleId::new("ordering").then("3").then("1");
/// assert_eq!(id.as_str(), "ordering/3/1");
/// assert_eq!(id.top(), "ordering");
/// assert_eq!(id.sub(), Some("3/1"));
/// assert_eq!(id.segments().collect::<Vec<_>>(), ["ordering", "3", "1"]);
/// assert!(ModuleId::try_new("bad id").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(Arc<str>);

impl ModuleId {
    /// Builds an ID from a string written in the program.
    ///
    /// # Panics
    ///
    /// If `s` is not a valid ID. Use [`ModuleId::try_new`] for IDs that come from input.
    #[track_caller]
    pub fn new(s: &str) -> Self {
        match Self::try_new(s) {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds an ID from a string that may be invalid (input from a file or a peer).
    pub fn try_new(s: &str) -> Result<Self, IdError> {
        check_module_id(s)?;
        Ok(ModuleId(Arc::from(s)))
    }

    /// The pseudo-module the node itself uses as the source of the events it creates
    /// (such as `Init`). It cannot collide with a real module: `@` is not allowed in module IDs.
    pub fn node() -> Self {
        ModuleId(Arc::from(NODE_SOURCE))
    }

    /// The whole ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment: the top-level module the node routes to.
    pub fn top(&self) -> &str {
        match self.0.find(SEPARATOR) {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }

    /// Everything after the first segment, if there is more than one.
    pub fn sub(&self) -> Option<&str> {
        self.0.find(SEPARATOR).map(|i| &self.0[i + 1..])
    }

    /// The ID with only its first segment (a new ID if this one has more).
    pub fn top_id(&self) -> ModuleId {
        match self.0.find(SEPARATOR) {
            Some(i) => ModuleId(Arc::from(&self.0[..i])),
            None => self.clone(),
        }
    }

    /// This ID with `sub` appended as further segments: `a`.then(`b/c`) is `a/b/c`.
    ///
    /// # Panics
    ///
    /// If `sub` is not itself a valid ID.
    #[track_caller]
    pub fn then(&self, sub: impl fmt::Display) -> ModuleId {
        let s = format!("{}{SEPARATOR}{sub}", self.0);
        ModuleId::new(&s)
    }

    /// The segments of the ID, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split(SEPARATOR)
    }

    /// Whether `self` is `prefix` or lies below it (`a/b` is under `a`, `ab` is not).
    pub fn is_under(&self, prefix: &ModuleId) -> bool {
        let (s, p) = (self.as_str(), prefix.as_str());
        s == p || (s.len() > p.len() && s.starts_with(p) && s.as_bytes()[p.len()] == b'/')
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ModuleId {
    #[track_caller]
    fn from(s: &str) -> Self {
        ModuleId::new(s)
    }
}

impl From<&ModuleId> for ModuleId {
    fn from(id: &ModuleId) -> Self {
        id.clone()
    }
}

/// Lets maps keyed by `ModuleId` be searched with a `&str` (hashing and ordering agree with `str`).
impl std::borrow::Borrow<str> for ModuleId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ModuleId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ModuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ModuleId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ModuleId::try_new(&s).map_err(serde::de::Error::custom)
    }
}

/// The identifier of a node (a replica). Cheap to clone.
///
/// ```
/// use mir_runtime::NodeId;
/// assert_eq!(NodeId::from_index(3).as_str(), "3");
/// assert!(NodeId::try_new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Builds a node ID written in the program. Panics if it is invalid (see [`NodeId::try_new`]).
    #[track_caller]
    pub fn new(s: &str) -> Self {
        match Self::try_new(s) {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds a node ID from input. Node IDs are one non-empty segment of the characters allowed in
    /// [`ModuleId`]s.
    pub fn try_new(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty(s.to_owned()));
        }
        if let Some(ch) = s.chars().find(|c| !valid_segment_char(*c)) {
            return Err(IdError::BadChar {
                id: s.to_owned(),
                ch,
            });
        }
        Ok(NodeId(Arc::from(s)))
    }

    /// The conventional ID of the `i`-th node: its decimal index.
    pub fn from_index(i: usize) -> Self {
        NodeId(Arc::from(i.to_string()))
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    #[track_caller]
    fn from(s: &str) -> Self {
        NodeId::new(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        NodeId::try_new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_build() {
        let id = ModuleId::new("a");
        assert_eq!(id.top(), "a");
        assert_eq!(id.sub(), None);
        let deep = id.then("b/c");
        assert_eq!(deep.top(), "a");
        assert_eq!(deep.sub(), Some("b/c"));
        assert_eq!(deep.top_id(), id);
        assert!(deep.is_under(&id));
        assert!(!ModuleId::new("ab").is_under(&id));
        assert!(id.is_under(&id));
    }

    #[test]
    fn invalid_ids_are_rejected() {
        for bad in ["", "a//b", "/a", "a/", "a b", "@x", "ü"] {
            assert!(ModuleId::try_new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NodeId::try_new("a/b").is_err());
        let e = ModuleId::try_new("a b").unwrap_err().to_string();
        assert!(e.contains("' '"), "{e}");
    }

    #[test]
    fn serde_validates() {
        let bytes = postcard::to_allocvec(&"bad id").unwrap();
        assert!(postcard::from_bytes::<ModuleId>(&bytes).is_err());
        let good = postcard::to_allocvec(&ModuleId::new("x/y")).unwrap();
        assert_eq!(
            postcard::from_bytes::<ModuleId>(&good).unwrap(),
            ModuleId::new("x/y")
        );
    }
}
