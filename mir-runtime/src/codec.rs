//! The one canonical binary encoding of events and messages.
//!
//! Every event and message type is a serde type; its canonical encoding is its
//! [postcard](https://docs.rs/postcard) serialization (postcard's wire format is stable since 1.0:
//! varint integers, length-prefixed strings and sequences, no padding, no field names). For a type
//! without hash maps or floating-point NaNs the encoding is a pure function of the value, so the
//! same bytes serve the wire, the event log and hashing/signing.
//!
//! Decoding input from peers or from files never panics: it returns a [`DecodeError`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value could not be decoded from its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {type_name}: {reason}")]
pub struct DecodeError {
    /// The stable name of the type being decoded.
    pub type_name: String,
    /// What was wrong with the bytes.
    pub reason: String,
}

/// Encodes `value` canonically, appending to `buf`.
///
/// # Panics
///
/// Only if `value`'s `Serialize` implementation fails, which for derived implementations of plain
/// data never happens; a custom implementation that fails is a bug in that type.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) {
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).expect(
        "serialising an event payload failed: the type's Serialize implementation is broken",
    );
}

/// Encodes `value` canonically into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf);
    buf
}

/// Decodes a value of type `T` from exactly `bytes` (trailing bytes are an error, so one value has
/// one encoding). `type_name` is used in the error.
pub fn decode<T: DeserializeOwned>(type_name: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(DecodeError {
            type_name: type_name.to_owned(),
            reason: format!("{} trailing bytes", rest.len()),
        }),
        Err(e) => Err(DecodeError {
            type_name: type_name.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Appends a length as postcard does (unsigned LEB128 varint).
#[inline]
pub(crate) fn put_varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends a string or byte string as postcard does (varint length, then the bytes).
#[inline]
pub(crate) fn put_bytes(b: &[u8], out: &mut Vec<u8>) {
    put_varint(b.len(), out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_framing_matches_postcard() {
        for len in [0usize, 1, 127, 128, 300, 16_384, 70_000] {
            let s = "x".repeat(len);
            let mut out = Vec::new();
            put_bytes(s.as_bytes(), &mut out);
            assert_eq!(out, encode(&s), "length {len}");
        }
    }
}
