//! Typed, open events.
//!
//! There is no central list of event types. Any crate makes a plain Rust type an event payload by
//! deriving serde and implementing [`EventPayload`], which only asks for a stable
//! [`NAME`](EventPayload::NAME):
//!
//! ```
//! use mir_runtime::{Event, EventPayload, ModuleId};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! struct Ping { seq: u64 }
//! impl EventPayload for Ping { const NAME: &'static str = "pingpong.Ping"; }
//!
//! let ev = Event::new(ModuleId::new("a"), ModuleId::new("b"), Ping { seq: 7 });
//! assert_eq!(ev.name(), "pingpong.Ping");
//! assert_eq!(ev.get::<Ping>(), Some(&Ping { seq: 7 }));
//!
//! // One canonical encoding: it round-trips through the wire / log form.
//! let bytes = ev.encode();
//! let back = Event::decode(&bytes).unwrap();
//! assert_eq!(back.encode(), bytes);
//! assert_eq!(back.into_payload::<Ping>().unwrap(), Ping { seq: 7 });
//! ```
//!
//! A [`Payload`] is either **typed** (a boxed Rust value, the normal case inside a node: no
//! encoding happens on the hot path) or **encoded** (a type name and its canonical bytes, as read
//! from the network or an event log). An encoded payload is decoded lazily, when the receiving code
//! asks for a concrete type ([`Payload::into_typed`]); the receiver knows which types it expects, so
//! no global registry of types is needed.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::id::ModuleId;

/// A type that can travel as an event or message payload.
///
/// `NAME` is the type's stable name in logs, tools and encodings; by convention
/// `crate_or_protocol.TypeName`. Two different types must not share a name.
pub trait EventPayload: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static {
    /// The stable name of this type.
    const NAME: &'static str;
}

/// Object-safe view of an [`EventPayload`] (implemented automatically; not meant to be
/// implemented by hand).
pub trait DynPayload: Send + 'static {
    /// The stable type name.
    fn name(&self) -> &str;
    /// Appends the canonical encoding to `buf`.
    fn encode_into(&self, buf: &mut Vec<u8>);
    /// `self` as `Any`, for downcasting.
    fn as_any(&self) -> &dyn Any;
    /// `self` as a boxed `Any`, for downcasting by value.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// A boxed copy.
    fn clone_box(&self) -> Box<dyn DynPayload>;
    /// Debug formatting.
    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// The static name, when the payload is typed (not encoded).
    fn static_name(&self) -> Option<&'static str>;
}

impl<T: EventPayload> DynPayload for T {
    fn name(&self) -> &str {
        T::NAME
    }
    fn encode_into(&self, buf: &mut Vec<u8>) {
        codec::encode_into(self, buf)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn clone_box(&self) -> Box<dyn DynPayload> {
        Box::new(self.clone())
    }
    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
    fn static_name(&self) -> Option<&'static str> {
        Some(T::NAME)
    }
}

/// A payload in its encoded form: a type name and the canonical bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encoded {
    /// The stable type name.
    pub name: String,
    /// The canonical encoding of the value.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encoded({}, {} bytes)", self.name, self.bytes.len())
    }
}

// `Encoded` is a DynPayload of its own (not an EventPayload: it has no static name).
struct EncodedBox(Encoded);

impl DynPayload for EncodedBox {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.0.bytes)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn clone_box(&self) -> Box<dyn DynPayload> {
        Box::new(EncodedBox(self.0.clone()))
    }
    fn fmt_debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
    fn static_name(&self) -> Option<&'static str> {
        None
    }
}

/// Why [`Payload::into_typed`] did not produce a value.
#[derive(Debug)]
pub enum PayloadError {
    /// The payload holds another type; it is handed back unchanged.
    OtherType(Payload),
    /// The payload is an encoding of the requested type, but the bytes are malformed
    /// (typically bad input from a peer: drop it and count it).
    Malformed(DecodeError),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::OtherType(p) => write!(f, "unexpected payload type {}", p.name()),
            PayloadError::Malformed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PayloadError {}

/// A value of some [`EventPayload`] type, typed or encoded. See the [module docs](self).
pub struct Payload(Box<dyn DynPayload>);

impl Payload {
    /// Wraps a typed value.
    pub fn new<T: EventPayload>(value: T) -> Self {
        Payload(Box::new(value))
    }

    /// Wraps an encoded value (type name and canonical bytes).
    pub fn encoded(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Payload(Box::new(EncodedBox(Encoded {
            name: name.into(),
            bytes,
        })))
    }

    /// The stable type name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The type name as a cheap `Cow` (borrowed for typed payloads).
    pub fn name_cow(&self) -> Cow<'static, str> {
        match self.0.static_name() {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(self.0.name().to_owned()),
        }
    }

    /// The type name if the payload is typed (a `'static` name, no allocation).
    #[inline]
    pub fn static_name(&self) -> Option<&'static str> {
        self.0.static_name()
    }

    /// Whether the payload is in encoded form.
    pub fn is_encoded(&self) -> bool {
        self.0.static_name().is_none()
    }

    /// Whether the payload is a `T`, typed or encoded.
    pub fn is<T: EventPayload>(&self) -> bool {
        self.0.as_any().type_id() == TypeId::of::<T>()
            || (self.is_encoded() && self.name() == T::NAME)
    }

    /// A reference to the value if the payload is a typed `T` (encoded payloads give `None`:
    /// use [`Payload::into_typed`] or [`Payload::decode`] for those).
    pub fn get<T: EventPayload>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }

    /// The value as a `T`: a typed payload is unboxed, an encoded payload of `T`'s name is decoded.
    pub fn into_typed<T: EventPayload>(self) -> Result<T, PayloadError> {
        if self.0.as_any().type_id() == TypeId::of::<T>() {
            let any = self.0.into_any();
            return Ok(*any.downcast::<T>().expect("type id checked"));
        }
        if let Some(enc) = self.0.as_any().downcast_ref::<EncodedBox>() {
            if enc.0.name == T::NAME {
                return codec::decode::<T>(T::NAME, &enc.0.bytes).map_err(PayloadError::Malformed);
            }
        }
        Err(PayloadError::OtherType(self))
    }

    /// A decoded copy of the value if the payload is a `T` (typed: cloned; encoded: decoded).
    /// `Ok(None)` if it is another type.
    pub fn decode<T: EventPayload>(&self) -> Result<Option<T>, DecodeError> {
        if let Some(v) = self.get::<T>() {
            return Ok(Some(v.clone()));
        }
        match self.0.as_any().downcast_ref::<EncodedBox>() {
            Some(enc) if enc.0.name == T::NAME => {
                codec::decode::<T>(T::NAME, &enc.0.bytes).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Appends the canonical encoding of the value (without its name) to `buf`.
    pub fn encode_value_into(&self, buf: &mut Vec<u8>) {
        self.0.encode_into(buf)
    }

    /// The canonical encoding of the value (without its name).
    pub fn encode_value(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.0.encode_into(&mut buf);
        buf
    }

    /// The payload in encoded form (a typed payload is encoded; an encoded one is copied).
    pub fn to_encoded(&self) -> Encoded {
        Encoded {
            name: self.name().to_owned(),
            bytes: self.encode_value(),
        }
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        Payload(self.0.clone_box())
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_debug(f)
    }
}

impl<T: EventPayload> From<T> for Payload {
    fn from(v: T) -> Self {
        Payload::new(v)
    }
}

/// Payloads compare by name and canonical encoding, so a typed payload equals its encoded form.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.encode_value() == other.encode_value()
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.name(), &self.encode_value()[..]).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (name, bytes) = <(String, Vec<u8>)>::deserialize(d)?;
        Ok(Payload::encoded(name, bytes))
    }
}

/// An event: a payload travelling from a source module to a destination module of one node.
///
/// The node routes on `dest.top()`. See the [module docs](self) for payloads.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The module that emitted the event.
    pub src: ModuleId,
    /// The module the event is for.
    pub dest: ModuleId,
    /// The content.
    pub payload: Payload,
}

impl Event {
    /// A new event with a typed payload.
    pub fn new(
        src: impl Into<ModuleId>,
        dest: impl Into<ModuleId>,
        payload: impl Into<Payload>,
    ) -> Self {
        Event {
            src: src.into(),
            dest: dest.into(),
            payload: payload.into(),
        }
    }

    /// The payload's stable type name.
    pub fn name(&self) -> &str {
        self.payload.name()
    }

    /// Whether the payload is a `T` (typed or encoded).
    pub fn is<T: EventPayload>(&self) -> bool {
        self.payload.is::<T>()
    }

    /// A reference to the payload if it is a typed `T`.
    pub fn get<T: EventPayload>(&self) -> Option<&T> {
        self.payload.get::<T>()
    }

    /// The payload as a `T` (decoding it if encoded), or the event back if it holds another type
    /// or cannot be decoded.
    pub fn into_payload<T: EventPayload>(self) -> Result<T, PayloadError> {
        self.payload.into_typed::<T>()
    }

    /// The canonical encoding of the whole event (source, destination, type name, value).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes an event from its canonical encoding; the payload comes back encoded.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        codec::decode("mir.Event", bytes)
    }

    /// The same event with a different destination (a new value; `self` is not changed).
    pub fn with_dest(mut self, dest: impl Into<ModuleId>) -> Self {
        self.dest = dest.into();
        self
    }

    /// The same event with a different source.
    pub fn with_src(mut self, src: impl Into<ModuleId>) -> Self {
        self.src = src.into();
        self
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{} -> {}] {}: {:?}",
            self.src,
            self.dest,
            self.payload.name(),
            self.payload
        )
    }
}

/// Declares that a serde type is an event payload with a stable name.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// struct Tick;
/// mir_runtime::payload!(Tick = "example.Tick");
/// assert_eq!(<Tick as mir_runtime::EventPayload>::NAME, "example.Tick");
/// ```
#[macro_export]
macro_rules! payload {
    ($($ty:ty = $name:literal),+ $(,)?) => {
        $(impl $crate::EventPayload for $ty { const NAME: &'static str = $name; })+
    };
}
