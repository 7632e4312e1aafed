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
            return Err(IdError::BadChar { id: s.to_owned(), ch });
        }
    }
    Ok(())
}

/// The identifier of a module, hierarchical: `top/sub/sub…`.
///
/// Cheap to clone: IDs of up to 13 bytes (almost all of them) are stored inline, longer ones in a
/// shared string, so the hot path of the event loop does no reference counting. Ordered and
/// compared as its string.
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
pub struct ModuleId(Repr);

const INLINE: usize = 13;

enum Repr {
    /// `len` bytes of `buf`; the top-level segment is the first `top` bytes.
    Inline { len: u8, top: u8, buf: [u8; INLINE] },
    /// A thin pointer keeps the ID at 16 bytes (an event is then one cache line).
    Heap { top: u32, s: Arc<Box<str>> },
}

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
        Ok(Self::from_valid(s))
    }

    fn from_valid(s: &str) -> Self {
        let top = s.find(SEPARATOR).unwrap_or(s.len());
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            ModuleId(Repr::Inline { len: s.len() as u8, top: top as u8, buf })
        } else {
            ModuleId(Repr::Heap { top: top as u32, s: Arc::new(Box::from(s)) })
        }
    }

    /// The pseudo-module the node itself uses as the source of the events it creates
    /// (such as `Init`). It cannot collide with a real module: `@` is not allowed in module IDs.
    pub fn node() -> Self {
        Self::from_valid(NODE_SOURCE)
    }

    /// Whether this is [`ModuleId::node`] (`@node`).
    pub fn is_node(&self) -> bool {
        self.as_str() == NODE_SOURCE
    }

    /// The whole ID as a string.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `buf[..len]` was copied from a whole `str` (`from_valid`) and never changes.
            Repr::Inline { len, buf, .. } => unsafe {
                std::str::from_utf8_unchecked(&buf[..*len as usize])
            },
            Repr::Heap { s, .. } => s,
        }
    }

    /// The first segment: the top-level module the node routes to.
    #[inline]
    pub fn top(&self) -> &str {
        let top = match &self.0 {
            Repr::Inline { top, .. } => *top as usize,
            Repr::Heap { top, .. } => *top as usize,
        };
        &self.as_str()[..top]
    }

    /// A key for fast comparison of top-level segments: the length and the first 8 bytes. Equal
    /// keys of segments of at most 8 bytes mean equal segments.
    #[inline(always)]
    pub(crate) fn top_key(&self) -> (usize, u64) {
        match &self.0 {
            Repr::Inline { top, buf, .. } => {
                // The inline buffer is at least 8 bytes long: read them at once, keep the top's.
                const MASKS: [u64; 9] = [
                    0,
                    0xff,
                    0xffff,
                    0xff_ffff,
                    0xffff_ffff,
                    0xff_ffff_ffff,
                    0xffff_ffff_ffff,
                    0xff_ffff_ffff_ffff,
                    u64::MAX,
                ];
                let first = u64::from_le_bytes([
                    buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
                ]);
                let top = *top as usize;
                (top, first & MASKS[top.min(8)])
            }
            Repr::Heap { .. } => {
                let top = self.top().as_bytes();
                let mut first = [0u8; 8];
                let n = top.len().min(8);
                first[..n].copy_from_slice(&top[..n]);
                (top.len(), u64::from_le_bytes(first))
            }
        }
    }

    /// Everything after the first segment, if there is more than one.
    pub fn sub(&self) -> Option<&str> {
        let s = self.as_str();
        let top = self.top().len();
        (top < s.len()).then(|| &s[top + 1..])
    }

    /// The ID with only its first segment (a new ID if this one has more).
    pub fn top_id(&self) -> ModuleId {
        if self.sub().is_none() {
            return self.clone();
        }
        Self::from_valid(self.top())
    }

    /// This ID with `sub` appended as further segments: `a`.then(`b/c`) is `a/b/c`.
    ///
    /// # Panics
    ///
    /// If `sub` is not itself a valid ID.
    #[track_caller]
    pub fn then(&self, sub: impl fmt::Display) -> ModuleId {
        let s = format!("{}{SEPARATOR}{sub}", self.as_str());
        ModuleId::new(&s)
    }

    /// The segments of the ID, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.as_str().split(SEPARATOR)
    }

    /// Whether `self` is `prefix` or lies below it (`a/b` is under `a`, `ab` is not).
    pub fn is_under(&self, prefix: &ModuleId) -> bool {
        let (s, p) = (self.as_str(), prefix.as_str());
        s == p || (s.len() > p.len() && s.starts_with(p) && s.as_bytes()[p.len()] == b'/')
    }
}

impl Clone for ModuleId {
    #[inline]
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Inline { .. } => {
                // SAFETY: an inline ID is plain bytes (no pointer, no destructor), so a bitwise
                // copy of the whole value is a valid, independent value. Copying it whole (rather
                // than field by field, as a derived `Clone` does) avoids store-forwarding stalls on
                // the event loop's hot path.
                ModuleId(unsafe { std::ptr::read(&self.0) })
            }
            Repr::Heap { top, s } => ModuleId(Repr::Heap { top: *top, s: s.clone() }),
        }
    }
}

impl PartialEq for ModuleId {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Inline { len: a, buf: x, .. }, Repr::Inline { len: b, buf: y, .. }) => {
                a == b && x == y
            }
            _ => self.as_str() == other.as_str(),
        }
    }
}

impl Eq for ModuleId {}

impl PartialOrd for ModuleId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ModuleId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for ModuleId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        self.as_str()
    }
}

impl AsRef<str> for ModuleId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for ModuleId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
            return Err(IdError::BadChar { id: s.to_owned(), ch });
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
    fn inline_and_heap_ids_behave_alike() {
        let short = ModuleId::new("ab/c");
        let long = ModuleId::new("a-rather-long-module-name/with/segments");
        assert_eq!(std::mem::size_of::<ModuleId>(), 16);
        assert_eq!(long.top(), "a-rather-long-module-name");
        assert_eq!(long.sub(), Some("with/segments"));
        assert_eq!(short.top_key(), ModuleId::new("ab").top_key());
        assert_ne!(short.top_key(), ModuleId::new("abc").top_key());
        let exactly = ModuleId::new("1234567890123");
        assert_eq!(exactly.as_str().len(), INLINE);
        assert_eq!(exactly.clone(), exactly);
        assert_eq!(ModuleId::new("12345678901234").as_str(), "12345678901234");
        assert!(long < short && ModuleId::new("a") < long);
        assert_eq!(ModuleId::node().as_str(), "@node");
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
        assert_eq!(postcard::from_bytes::<ModuleId>(&good).unwrap(), ModuleId::new("x/y"));
    }
}
