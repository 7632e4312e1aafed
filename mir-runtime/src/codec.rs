//! The one canonical binary encoding of events and messages.
//!
//! Every event and message type is a serde type; its canonical encoding is its
//! [postcard](https://docs.rs/postcard) serialization (postcard's wire format is stable since 1.0:
//! varint integers, length-prefixed strings and sequences, no padding, no field names). For a type
//! without hash maps or floating-point NaNs the encoding is a pure function of the value, so the
//! same bytes serve the wire, the event log and hashing/signing.
//!
//! Decoding input from peers or from files never panics: it returns a [`DecodeError`].
//!
//! Decoding is **strict**: a value has exactly one accepted encoding. Trailing bytes,
//! non-minimal integers (a varint padded with `0x80` bytes) and any other encoding that is not
//! what [`encode`] produces for the decoded value are rejected, so two different byte strings
//! never decode to one message (what a peer signs, hashes or deduplicates is what it sent).

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
    // One counting pass first, so that a large value (a batch of transactions) is written into
    // one allocation instead of a buffer doubled (and copied) again and again.
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .expect(
            "serialising an event payload failed: the type's Serialize implementation is broken",
        );
    buf.reserve(size);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(value, taken).expect(
        "serialising an event payload failed: the type's Serialize implementation is broken",
    );
}

/// A postcard output that compares what is written with `expected` instead of keeping it.
struct SameAs<'a> {
    expected: &'a [u8],
    at: usize,
}

impl postcard::ser_flavors::Flavor for SameAs<'_> {
    type Output = bool;

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.try_extend(&[b])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let end = self.at + data.len();
        if self.expected.get(self.at..end) != Some(data) {
            return Err(postcard::Error::SerializeBufferFull); // differs: stop early
        }
        self.at = end;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.at == self.expected.len())
    }
}

/// Encodes `value` canonically into a new buffer.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf);
    buf
}

/// Decodes a value of type `T` from exactly its canonical encoding: trailing bytes and
/// non-canonical encodings (e.g. non-minimal integers) are errors, so one value has one
/// encoding. `type_name` is used in the error.
///
/// ```
/// use mir_runtime::codec::{decode, encode};
/// assert_eq!(decode::<u32>("n", &encode(&5u32)), Ok(5));
/// assert!(decode::<u32>("n", &[0x85, 0x00]).is_err(), "5 padded to two bytes");
/// assert!(decode::<u32>("n", &[5, 0]).is_err(), "a trailing byte");
/// ```
pub fn decode<T: DeserializeOwned + Serialize>(
    type_name: &str,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => {
            // The canonical check: what we would send for this value is what we got, compared
            // as it is written, without a copy.
            let same = postcard::serialize_with_flavor(&v, SameAs { expected: bytes, at: 0 })
                .unwrap_or(false);
            if !same {
                return Err(DecodeError {
                    type_name: type_name.to_owned(),
                    reason: "not the canonical encoding (e.g. a non-minimal integer)".to_owned(),
                });
            }
            Ok(v)
        }
        Ok((_, rest)) => Err(DecodeError {
            type_name: type_name.to_owned(),
            reason: format!("{} trailing bytes", rest.len()),
        }),
        Err(e) => Err(DecodeError { type_name: type_name.to_owned(), reason: e.to_string() }),
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

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Msg {
        n: u64,
        data: Vec<u8>,
        tag: Option<u16>,
    }

    #[test]
    fn decoding_is_strict() {
        let m = Msg { n: 300, data: vec![1, 2], tag: Some(7) };
        let good = encode(&m);
        assert_eq!(good, [0xac, 0x02, 2, 1, 2, 1, 7]);
        assert_eq!(decode::<Msg>("Msg", &good), Ok(m));
        let bad: [&[u8]; 5] = [
            &[0xac, 0x82, 0x00, 2, 1, 2, 1, 7],    // 300 padded to three bytes
            &[0xac, 0x02, 0x82, 0x00, 1, 2, 1, 7], // the length padded
            &[0xac, 0x02, 2, 1, 2, 1, 0x87, 0x00], // the u16 padded
            &[0xac, 0x02, 2, 1, 2, 1, 7, 0],       // a trailing byte
            &[0xac, 0x02, 2, 1, 2, 2, 7],          // an Option tag of 2
        ];
        for b in bad {
            assert!(decode::<Msg>("Msg", b).is_err(), "{b:?} was accepted");
        }
    }

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
