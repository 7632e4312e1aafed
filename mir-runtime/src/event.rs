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
//! the node needs no registry of types. Tools that show any payload (`mircat`, `Debug` of an
//! encoded payload) find the types of the crates they link in [`PayloadType`], where
//! [`payload!`](crate::payload) registers each type.

use std::any::TypeId;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError};
use crate::id::ModuleId;

/// A type that can travel as an event or message payload.
///
/// `NAME` is the type's stable name in logs, tools and encodings; by convention
/// `crate_or_protocol.TypeName`. Two different types must not share a name. Implemented through
/// [`payload!`](crate::payload), which gives each type its name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event type: list it in `payload!`",
    label = "not listed in `payload!`",
    note = "event and message types get their stable name from `mir_runtime::payload!(MyType = \"proto.MyType\", …)`, next to their definition"
)]
pub trait EventPayload: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + 'static {
    /// The stable name of this type.
    const NAME: &'static str;
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

// ---------------------------------------------------------------------------------------------
// Type erasure.
//
// A payload is a value of some type `T` plus a table of functions for `T` (a hand-made vtable).
// Values of at most `INLINE_BYTES` bytes (with alignment at most that of `usize`) are stored
// inside the `Payload` itself; larger ones in a `Box`. Most protocol events are small, so the
// event loop's hot path allocates nothing for them. This is the only `unsafe` code of the
// crate; the invariants are:
//
// 1. `vt` was made for the type `T` stored in `data` (`Payload::from_value` is the only
//    constructor), and `vt.inline` says where it is: inside `data`, or behind the pointer in
//    `data[0]` (from `Box::into_raw`).
// 2. The value is dropped exactly once: by `Drop`, or moved out by `into_typed` (which then
//    forgets the payload).
// ---------------------------------------------------------------------------------------------

const INLINE_WORDS: usize = 3;
const INLINE_BYTES: usize = INLINE_WORDS * std::mem::size_of::<usize>();

/// Functions for one payload type.
struct VTable {
    inline: bool,
    type_id: TypeId,
    static_name: Option<&'static str>,
    name: unsafe fn(*const u8) -> *const str,
    encode_into: unsafe fn(*const u8, &mut Vec<u8>),
    clone: unsafe fn(*const u8) -> Payload,
    debug: unsafe fn(*const u8, &mut fmt::Formatter<'_>) -> fmt::Result,
    drop: unsafe fn(*mut u8),
}

/// The types a payload can hold: every [`EventPayload`], and [`Encoded`].
trait Erasable: Clone + fmt::Debug + Send + 'static {
    const STATIC_NAME: Option<&'static str>;
    fn name(&self) -> &str;
    fn encode_into(&self, buf: &mut Vec<u8>);
}

impl<T: EventPayload> Erasable for T {
    const STATIC_NAME: Option<&'static str> = Some(T::NAME);
    fn name(&self) -> &str {
        T::NAME
    }
    fn encode_into(&self, buf: &mut Vec<u8>) {
        codec::encode_into(self, buf)
    }
}

/// `Encoded` is held as a payload of its own: its name is dynamic.
#[derive(Clone)]
struct EncodedPayload(Encoded);

impl fmt::Debug for EncodedPayload {
    /// Decoded, if the type is registered (see [`PayloadType`]); nested payloads too, up to
    /// [`MAX_DEBUG_NESTING`] levels (a peer's bytes may nest payloads deeply; formatting them
    /// must not exhaust the stack).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        thread_local!(static DEPTH: Cell<usize> = const { Cell::new(0) });
        let depth = DEPTH.with(|d| d.get());
        match PayloadType::find(&self.0.name) {
            Some(t) if depth < MAX_DEBUG_NESTING => {
                DEPTH.with(|d| d.set(depth + 1));
                let r = (t.debug)(&self.0.bytes, f);
                DEPTH.with(|d| d.set(depth));
                r
            }
            _ => self.0.fmt(f),
        }
    }
}

/// How many levels of encoded payloads inside encoded payloads `Debug` decodes; deeper ones show
/// as `Encoded(NAME, N bytes)`.
pub const MAX_DEBUG_NESTING: usize = 8;

/// A payload type known to this program: every type named in [`payload!`](crate::payload)
/// registers itself (through the `inventory` crate), so a tool linked with a protocol crate shows
/// that crate's payloads decoded (`Debug` of an encoded [`Payload`], `mircat`) without a central
/// list. Nested payloads (a message in a `MessageReceived`) are decoded too, 8 levels deep at
/// most. Malformed bytes show as `<malformed NAME, N bytes>`; an unknown name as
/// `Encoded(NAME, N bytes)`.
///
/// ```
/// use mir_runtime::{EventPayload, Payload, PayloadType, stdevents::TestUint64};
/// assert!(PayloadType::find(TestUint64::NAME).is_some());
/// let enc = Payload::from(TestUint64(7)).to_encoded(); // as a peer's message arrives
/// let encoded = Payload::encoded(enc.name, enc.bytes);
/// assert_eq!(format!("{encoded:?}"), "TestUint64(7)");
/// assert_eq!(format!("{:?}", Payload::encoded("x.Unknown", vec![1, 2])), "Encoded(x.Unknown, 2 bytes)");
/// ```
pub struct PayloadType {
    /// The stable name ([`EventPayload::NAME`]).
    pub name: &'static str,
    /// Decodes the canonical encoding and formats the value with `Debug`.
    pub debug: fn(&[u8], &mut fmt::Formatter<'_>) -> fmt::Result,
}

impl PayloadType {
    /// The entry of `T` (what [`payload!`](crate::payload) registers).
    pub const fn of<T: EventPayload>() -> Self {
        PayloadType { name: T::NAME, debug: debug_encoded::<T> }
    }

    /// The registered type named `name`.
    pub fn find(name: &str) -> Option<&'static PayloadType> {
        static BY_NAME: std::sync::OnceLock<
            std::collections::BTreeMap<&'static str, &'static PayloadType>,
        > = std::sync::OnceLock::new();
        BY_NAME
            .get_or_init(|| {
                inventory::iter::<PayloadType>.into_iter().map(|t| (t.name, t)).collect()
            })
            .get(name)
            .copied()
    }

    /// Every registered type, by name.
    pub fn all() -> Vec<&'static PayloadType> {
        let mut v: Vec<_> = inventory::iter::<PayloadType>.into_iter().collect();
        v.sort_by_key(|t| t.name);
        v
    }
}

fn debug_encoded<T: EventPayload>(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match codec::decode::<T>(T::NAME, bytes) {
        Ok(v) => fmt::Debug::fmt(&v, f),
        Err(_) => write!(f, "<malformed {}, {} bytes>", T::NAME, bytes.len()),
    }
}

inventory::collect!(PayloadType);

#[doc(hidden)]
pub use inventory as __inventory;

impl Erasable for EncodedPayload {
    const STATIC_NAME: Option<&'static str> = None;
    fn name(&self) -> &str {
        &self.0.name
    }
    fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.0.bytes)
    }
}

struct VTableFor<T>(std::marker::PhantomData<T>);

impl<T: Erasable> VTableFor<T> {
    const INLINE: bool = std::mem::size_of::<T>() <= INLINE_BYTES
        && std::mem::align_of::<T>() <= std::mem::align_of::<usize>();

    const VT: VTable = VTable {
        inline: Self::INLINE,
        type_id: TypeId::of::<T>(),
        static_name: T::STATIC_NAME,
        // SAFETY (all below): callers pass a pointer to a live `T` (invariant 1).
        name: |p| unsafe { (*(p as *const T)).name() as *const str },
        encode_into: |p, buf| unsafe { (*(p as *const T)).encode_into(buf) },
        clone: |p| Payload::from_value(unsafe { (*(p as *const T)).clone() }),
        debug: |p, f| unsafe { fmt::Debug::fmt(&*(p as *const T), f) },
        drop: |p| unsafe {
            if Self::INLINE {
                std::ptr::drop_in_place(p as *mut T)
            } else {
                drop(Box::from_raw(p as *mut T))
            }
        },
    };
}

/// A value of some [`EventPayload`] type, typed or encoded.
///
/// Typed payloads are the Rust value (stored inline when it has at most 24 bytes); encoded
/// payloads are a type name and canonical bytes, decoded lazily by [`Payload::into_typed`].
pub struct Payload {
    vt: &'static VTable,
    data: [MaybeUninit<usize>; INLINE_WORDS],
    /// Send (the value is `Send`) but not Sync (the value need not be `Sync`).
    _not_sync: PhantomData<Cell<()>>,
}

impl Payload {
    fn from_value<T: Erasable>(value: T) -> Self {
        let mut data = [MaybeUninit::<usize>::uninit(); INLINE_WORDS];
        if VTableFor::<T>::INLINE {
            // SAFETY: `T` fits in `data` in size and alignment (checked by `INLINE`).
            unsafe { std::ptr::write(data.as_mut_ptr() as *mut T, value) };
        } else {
            data[0] = MaybeUninit::new(Box::into_raw(Box::new(value)) as usize);
        }
        Payload { vt: &VTableFor::<T>::VT, data, _not_sync: PhantomData }
    }

    #[inline]
    fn ptr(&self) -> *const u8 {
        if self.vt.inline {
            self.data.as_ptr() as *const u8
        } else {
            // SAFETY: boxed payloads keep their pointer in `data[0]` (invariant 1).
            unsafe { self.data[0].assume_init() as *const u8 }
        }
    }

    /// Wraps a typed value.
    pub fn new<T: EventPayload>(value: T) -> Self {
        Payload::from_value(value)
    }

    /// Wraps an encoded value (type name and canonical bytes).
    pub fn encoded(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Payload::from_value(EncodedPayload(Encoded { name: name.into(), bytes }))
    }

    /// The stable type name.
    pub fn name(&self) -> &str {
        match self.vt.static_name {
            Some(n) => n,
            // SAFETY: the pointer is to the live value (invariant 1); the name borrows from it.
            None => unsafe { &*(self.vt.name)(self.ptr()) },
        }
    }

    /// The type name if the payload is typed (a `'static` name, no allocation).
    #[inline]
    pub fn static_name(&self) -> Option<&'static str> {
        self.vt.static_name
    }

    /// Whether the payload is in encoded form.
    #[inline]
    pub fn is_encoded(&self) -> bool {
        self.vt.static_name.is_none()
    }

    #[inline]
    fn holds<T: 'static>(&self) -> bool {
        self.vt.type_id == TypeId::of::<T>()
    }

    fn as_encoded(&self) -> Option<&Encoded> {
        // SAFETY: the type check makes the cast valid (invariant 1).
        self.holds::<EncodedPayload>()
            .then(|| unsafe { &(*(self.ptr() as *const EncodedPayload)).0 })
    }

    /// Whether the payload is a `T`, typed or encoded.
    #[inline]
    pub fn is<T: EventPayload>(&self) -> bool {
        self.holds::<T>() || self.as_encoded().is_some_and(|e| e.name == T::NAME)
    }

    /// A reference to the value if the payload is a typed `T` (encoded payloads give `None`:
    /// use [`Payload::into_typed`] or [`Payload::decode`] for those).
    #[inline]
    pub fn get<T: EventPayload>(&self) -> Option<&T> {
        // SAFETY: the type check makes the cast valid (invariant 1).
        self.holds::<T>().then(|| unsafe { &*(self.ptr() as *const T) })
    }

    /// The value as a `T`: a typed payload is unwrapped, an encoded payload of `T`'s name is
    /// decoded.
    #[inline(always)]
    pub fn into_typed<T: EventPayload>(self) -> Result<T, PayloadError> {
        if self.holds::<T>() {
            let p = self.ptr() as *mut T;
            // SAFETY: the payload holds a `T` at `p` (invariant 1). It is moved out and the
            // payload forgotten, so it is not dropped twice (invariant 2); a box is freed without
            // dropping its (moved-out) content.
            let value = unsafe { std::ptr::read(p) };
            if !self.vt.inline {
                drop(unsafe { Box::from_raw(p as *mut MaybeUninit<T>) });
            }
            std::mem::forget(self);
            return Ok(value);
        }
        self.decode_or_return()
    }

    /// The slow path of [`Payload::into_typed`]: decode an encoded payload, or hand it back.
    #[cold]
    #[inline(never)]
    fn decode_or_return<T: EventPayload>(self) -> Result<T, PayloadError> {
        match self.as_encoded() {
            Some(enc) if enc.name == T::NAME => {
                codec::decode::<T>(T::NAME, &enc.bytes).map_err(PayloadError::Malformed)
            }
            _ => Err(PayloadError::OtherType(self)),
        }
    }

    /// A decoded copy of the value if the payload is a `T` (typed: cloned; encoded: decoded).
    /// `Ok(None)` if it is another type.
    pub fn decode<T: EventPayload>(&self) -> Result<Option<T>, DecodeError> {
        if let Some(v) = self.get::<T>() {
            return Ok(Some(v.clone()));
        }
        match self.as_encoded() {
            Some(enc) if enc.name == T::NAME => codec::decode::<T>(T::NAME, &enc.bytes).map(Some),
            _ => Ok(None),
        }
    }

    /// Appends the canonical encoding of the value (without its name) to `buf`.
    pub fn encode_value_into(&self, buf: &mut Vec<u8>) {
        // SAFETY: invariant 1.
        unsafe { (self.vt.encode_into)(self.ptr(), buf) }
    }

    /// The canonical encoding of the value (without its name).
    pub fn encode_value(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_value_into(&mut buf);
        buf
    }

    /// The payload in encoded form (a typed payload is encoded; an encoded one is copied).
    pub fn to_encoded(&self) -> Encoded {
        Encoded { name: self.name().to_owned(), bytes: self.encode_value() }
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        let p = self.ptr() as *mut u8;
        // SAFETY: invariants 1 and 2: the value is live and dropped only here.
        unsafe { (self.vt.drop)(p) }
    }
}

impl Clone for Payload {
    fn clone(&self) -> Self {
        // SAFETY: invariant 1.
        unsafe { (self.vt.clone)(self.ptr()) }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: invariant 1.
        unsafe { (self.vt.debug)(self.ptr(), f) }
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
/// The node routes on `dest.top()`.
///
/// ```
/// use mir_runtime::{Event, stdevents::TestUint64};
/// let ev = Event::new("a", "b/1", TestUint64(7));
/// assert_eq!(ev.dest.top(), "b");
/// assert_eq!(Event::decode(&ev.encode()).unwrap(), ev);
/// ```
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
        Event { src: src.into(), dest: dest.into(), payload: payload.into() }
    }

    /// The payload's stable type name.
    pub fn name(&self) -> &str {
        self.payload.name()
    }

    /// Whether the payload is a `T` (typed or encoded).
    #[inline]
    pub fn is<T: EventPayload>(&self) -> bool {
        self.payload.is::<T>()
    }

    /// A reference to the payload if it is a typed `T`.
    #[inline]
    pub fn get<T: EventPayload>(&self) -> Option<&T> {
        self.payload.get::<T>()
    }

    /// The payload as a `T` (decoding it if encoded), or the event back if it holds another type
    /// or cannot be decoded.
    #[inline(always)]
    pub fn into_payload<T: EventPayload>(self) -> Result<T, PayloadError> {
        self.payload.into_typed::<T>()
    }

    /// The canonical encoding of the whole event (source, destination, type name, value).
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Appends the canonical encoding of the event to `out` (the same bytes as
    /// [`Event::encode`]), using `scratch` for the value so nothing is allocated once the buffers
    /// have grown.
    pub(crate) fn encode_with(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        // The same bytes serde + postcard produce for the struct: its fields in order, strings and
        // byte strings as varint length + bytes.
        codec::put_bytes(self.src.as_str().as_bytes(), out);
        codec::put_bytes(self.dest.as_str().as_bytes(), out);
        codec::put_bytes(self.payload.name().as_bytes(), out);
        scratch.clear();
        self.payload.encode_value_into(scratch);
        codec::put_bytes(scratch, out);
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
        write!(f, "[{} -> {}] {}: {:?}", self.src, self.dest, self.payload.name(), self.payload)
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
///
/// Each type also registers itself as a [`PayloadType`](crate::PayloadType), so tools show it
/// decoded.
#[macro_export]
macro_rules! payload {
    ($($ty:ty = $name:literal),+ $(,)?) => {
        $(
            impl $crate::EventPayload for $ty { const NAME: &'static str = $name; }
            $crate::__inventory::submit! { $crate::PayloadType::of::<$ty>() }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering::SeqCst};

    static LIVE_SMALL: AtomicI64 = AtomicI64::new(0);
    static LIVE_BIG: AtomicI64 = AtomicI64::new(0);

    macro_rules! tracked {
        ($name:ident, $live:ident, $($field:ident : $ty:ty),*) => {
            #[derive(Debug, PartialEq, Serialize, Deserialize)]
            struct $name { id: u64, $($field: $ty),* }
            impl $name {
                fn new(id: u64) -> Self { $live.fetch_add(1, SeqCst); $name { id, $($field: Default::default()),* } }
            }
            impl Clone for $name {
                fn clone(&self) -> Self { $live.fetch_add(1, SeqCst); $name { id: self.id, $($field: self.$field.clone()),* } }
            }
            impl Drop for $name {
                fn drop(&mut self) { $live.fetch_sub(1, SeqCst); }
            }
            impl EventPayload for $name { const NAME: &'static str = concat!("test.", stringify!($name)); }
        };
    }
    tracked!(Small, LIVE_SMALL, tag: u8);
    tracked!(Big, LIVE_BIG, pad: [u64; 6]);

    #[repr(align(32))]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct OverAligned(u8);
    impl EventPayload for OverAligned {
        const NAME: &'static str = "test.OverAligned";
    }

    #[test]
    fn small_values_are_inline_big_or_overaligned_ones_boxed() {
        const {
            assert!(VTableFor::<Small>::INLINE);
            assert!(!VTableFor::<Big>::INLINE);
            assert!(!VTableFor::<OverAligned>::INLINE);
            assert!(!VTableFor::<EncodedPayload>::INLINE);
        }
        assert_eq!(std::mem::size_of::<Payload>(), 32);
        assert_eq!(std::mem::size_of::<Event>(), 64);
    }

    #[test]
    fn every_value_is_dropped_exactly_once() {
        {
            let a = Payload::new(Small::new(1));
            let b = Payload::new(Big::new(2));
            let (a2, b2) = (a.clone(), b.clone());
            assert_eq!(LIVE_SMALL.load(SeqCst), 2);
            assert_eq!(LIVE_BIG.load(SeqCst), 2);
            assert_eq!(a2.get::<Small>().unwrap().id, 1);
            assert_eq!(b2.get::<Big>().unwrap().id, 2);
            assert!(a.get::<Big>().is_none());
            // Moving out: the value lives on, the payload is gone.
            let small = a.into_typed::<Small>().unwrap();
            let big = b.into_typed::<Big>().unwrap();
            assert_eq!((small.id, big.id), (1, 2));
            assert_eq!(LIVE_SMALL.load(SeqCst), 2);
            assert_eq!(LIVE_BIG.load(SeqCst), 2);
            // A failed downcast hands the payload back intact.
            let Err(PayloadError::OtherType(back)) = a2.into_typed::<Big>() else { panic!() };
            assert_eq!(back.get::<Small>().unwrap().id, 1);
            drop((small, big, back, b2));
        }
        assert_eq!(LIVE_SMALL.load(SeqCst), 0);
        assert_eq!(LIVE_BIG.load(SeqCst), 0);
    }

    #[test]
    fn the_allocation_free_encoding_is_the_canonical_one() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let long = vec![7u8; 300];
        for ev in [
            Event::new("a", "b/c", Small::new(3)),
            Event::new("a", "b", Payload::encoded("x.Y", long.clone())),
            Event::new("a-much-longer-module-name/1", "b", Big::new(9)),
        ] {
            out.clear();
            ev.encode_with(&mut out, &mut scratch);
            assert_eq!(out, ev.encode());
        }
    }

    #[test]
    fn overaligned_values_keep_their_alignment() {
        let p = Payload::new(OverAligned(7));
        let r = p.get::<OverAligned>().unwrap();
        assert_eq!(r as *const OverAligned as usize % 32, 0);
        assert_eq!(p.clone().into_typed::<OverAligned>().unwrap(), OverAligned(7));
    }

    #[test]
    fn encoded_payloads_keep_their_name_and_bytes() {
        let p = Payload::new(OverAligned(7));
        let e = Payload::encoded(p.name(), p.encode_value());
        assert!(e.is_encoded() && e.static_name().is_none());
        assert_eq!(e.name(), "test.OverAligned");
        assert_eq!(e, p);
        assert!(e.is::<OverAligned>() && e.get::<OverAligned>().is_none());
        assert_eq!(format!("{e:?}"), "Encoded(test.OverAligned, 1 bytes)");
        assert_eq!(e.into_typed::<OverAligned>().unwrap(), OverAligned(7));
    }

    /// A peer can nest payloads in payloads as deep as its message size allows; `Debug` decodes
    /// only the first `MAX_DEBUG_NESTING` levels, so formatting never exhausts the stack.
    #[test]
    fn debug_of_deeply_nested_payloads_is_bounded() {
        use crate::stdevents::{Message, SendMessage, TestUint64};
        let mut p = Payload::from(TestUint64(1));
        for _ in 0..100 {
            let inner = SendMessage { destinations: vec![], message: Message::new("m", p) };
            let enc = Payload::from(inner).to_encoded();
            p = Payload::encoded(enc.name, enc.bytes);
        }
        let text = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || format!("{p:?}"))
            .unwrap()
            .join()
            .expect("formatting does not overflow a small stack");
        assert_eq!(text.matches("SendMessage {").count(), MAX_DEBUG_NESTING);
        assert!(text.contains("Encoded(mir.SendMessage, "), "{}", &text[..200]);
    }
}
