//! The write-ahead log: its on-disk format, storage, and the [`Wal`] module.
//!
//! * the record format and the recovery scan ([`encode_record`], [`scan`]), below;
//! * storage with a real disk's semantics, on the file system or simulated ([`disk`]);
//! * the [`Wal`] module: persist-before-send with group commit ([`WalAppend`]), retention
//!   ([`WalTruncate`]) and replay on restart ([`WalRecovered`]); protocols log through
//!   `mir_dsl::Ctx::persist`. How PBFT, checkpointing, ISS and the batch database use it, and
//!   what is guaranteed: `docs/recovery.md`.
//!
//! # Format
//!
//! A file starts with the 8-byte magic [`MAGIC`]. Then records, each
//!
//! ```text
//! length   u32 LE   bytes of the payload (at most MAX_RECORD)
//! hcrc     u32 LE   CRC-32 of the 4 length bytes
//! pcrc     u32 LE   CRC-32 of the payload
//! payload  length bytes
//! ```
//!
//! The length has its own checksum so that a damaged length is never trusted (it would make the
//! scan skip or swallow good records).
//!
//! # Recovery
//!
//! [`scan`] reads records from the start until one does not check out (a header or payload cut
//! short, a checksum that fails). Then it decides what that is:
//!
//! * **a torn tail** — no valid record starts anywhere after that point: the crash interrupted
//!   the last writes. The file is valid up to that offset ([`Scan::valid_len`]); the caller cuts
//!   it there. Nothing after it was synced, so nothing promised is lost.
//! * **corruption in the middle** — a valid record starts after it: bytes that were written and
//!   synced went bad. That is an error ([`WalError::Corrupt`]) naming the offset, never silently
//!   skipped: replaying around a hole could make a node break a promise it made.

pub mod disk;
mod module;

pub use module::{file_name, SyncPolicy, Wal, WalAppend, WalRecovered, WalStats, WalTruncate};

use thiserror::Error;

/// The first bytes of every WAL file.
pub const MAGIC: [u8; 8] = *b"mirwal\x00\x01";

/// The largest payload of one record (64 MiB).
pub const MAX_RECORD: usize = 64 << 20;

/// Bytes of a record's header.
pub const HEADER: usize = 12;

/// Why a WAL cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalError {
    /// The file does not start with [`MAGIC`].
    #[error("not a WAL file (bad magic)")]
    BadMagic,
    /// A record before the end does not check out, and valid records follow it.
    #[error("corrupt record at offset {offset} ({reason}); valid records follow it (at {next})")]
    Corrupt {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong with it.
        reason: String,
        /// Where the next valid record starts.
        next: usize,
    },
    /// A record to append is larger than [`MAX_RECORD`].
    #[error("a record of {0} bytes is larger than the limit ({MAX_RECORD})")]
    TooLarge(usize),
}

/// Appends one record with `payload` to `out`.
///
/// ```
/// use mir_runtime::wal::{encode_record, scan, MAGIC};
/// let mut file = MAGIC.to_vec();
/// encode_record(b"first", &mut file).unwrap();
/// encode_record(b"second", &mut file).unwrap();
/// let s = scan(&file).unwrap();
/// assert_eq!(s.records, vec![b"first".to_vec(), b"second".to_vec()]);
/// assert_eq!((s.valid_len, s.torn), (file.len(), None));
///
/// // A crash in the middle of the last write: the torn tail is cut, the rest kept.
/// let cut = &file[..file.len() - 3];
/// let s = scan(cut).unwrap();
/// assert_eq!(s.records, vec![b"first".to_vec()]);
/// assert!(s.torn.is_some());
/// ```
pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) -> Result<(), WalError> {
    if payload.len() > MAX_RECORD {
        return Err(WalError::TooLarge(payload.len()));
    }
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// What a scan of a WAL file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The payloads of the valid records, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes of the file that hold the magic and those records: cut the file here.
    pub valid_len: usize,
    /// A torn tail after them, if any: its offset and what was wrong.
    pub torn: Option<(usize, String)>,
}

/// Reads `file` (a whole WAL file). See the [module docs](self) for torn tails and corruption.
pub fn scan(file: &[u8]) -> Result<Scan, WalError> {
    if file.len() < MAGIC.len() {
        if !MAGIC.starts_with(file) {
            return Err(WalError::BadMagic);
        }
        // A crash while creating the file: nothing was ever synced in it.
        let torn = (!file.is_empty()).then(|| (0, "the magic is cut short".to_string()));
        return Ok(Scan { records: Vec::new(), valid_len: 0, torn });
    }
    if file[..MAGIC.len()] != MAGIC {
        return Err(WalError::BadMagic);
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < file.len() {
        match record_at(file, at) {
            Ok((payload, end)) => {
                records.push(payload.to_vec());
                at = end;
            }
            Err(reason) => {
                // Torn tail, or corruption with good records after it?
                if let Some(next) = (at + 1..file.len()).find(|p| record_at(file, *p).is_ok()) {
                    return Err(WalError::Corrupt { offset: at, reason, next });
                }
                return Ok(Scan { records, valid_len: at, torn: Some((at, reason)) });
            }
        }
    }
    Ok(Scan { records, valid_len: at, torn: None })
}

/// The record starting at `at`: its payload and where it ends, or what is wrong with it.
fn record_at(file: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let Some(header) = file.get(at..at + HEADER) else {
        return Err("the header is cut short".into());
    };
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let (len, hcrc, pcrc) = (word(0), word(4), word(8));
    if crc32fast::hash(&header[..4]) != hcrc {
        return Err("the length's checksum fails".into());
    }
    let len = len as usize;
    if len > MAX_RECORD {
        return Err(format!("a length of {len} bytes, over the limit"));
    }
    let start = at + HEADER;
    let Some(payload) = file.get(start..start + len) else {
        return Err("the payload is cut short".into());
    };
    if crc32fast::hash(payload) != pcrc {
        return Err("the payload's checksum fails".into());
    }
    Ok((payload, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[&[u8]]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        for r in records {
            encode_record(r, &mut f).unwrap();
        }
        f
    }

    #[test]
    fn every_prefix_of_a_file_scans_to_a_prefix_of_its_records() {
        let recs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; i as usize * 7]).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        let f = file(&refs);
        for cut in 0..=f.len() {
            let s = scan(&f[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(s.records[..], recs[..s.records.len()], "cut at {cut}");
            assert!(s.valid_len <= cut);
            assert_eq!(s.torn.is_none(), s.valid_len == cut, "cut at {cut}");
            // Cutting the file at `valid_len` leaves a clean file with the same records.
            let again = scan(&f[..s.valid_len]).unwrap();
            assert_eq!(again.records, s.records);
        }
    }

    #[test]
    fn a_damaged_last_record_is_a_torn_tail() {
        let mut f = file(&[b"kept", b"last one"]);
        let n = f.len();
        f[n - 1] ^= 0xff;
        let s = scan(&f).unwrap();
        assert_eq!(s.records, vec![b"kept".to_vec()]);
        assert_eq!(s.torn.unwrap().1, "the payload's checksum fails");
    }

    #[test]
    fn damage_before_valid_records_is_an_error_naming_the_offset() {
        let mut f = file(&[b"one", b"two", b"three"]);
        let second = MAGIC.len() + HEADER + 3;
        // A payload byte of the second record.
        let mut g = f.clone();
        g[second + HEADER] ^= 1;
        assert!(matches!(scan(&g), Err(WalError::Corrupt { offset, .. }) if offset == second));
        // Its length: never trusted, still an error at its offset.
        f[second] ^= 0x40;
        let e = scan(&f).unwrap_err();
        assert!(matches!(e, WalError::Corrupt { offset, .. } if offset == second), "{e}");
        assert!(e.to_string().contains(&format!("offset {second}")));
    }

    #[test]
    fn bad_magic_and_oversized_records_are_refused() {
        assert_eq!(scan(b"notawal!rest"), Err(WalError::BadMagic));
        assert_eq!(scan(b"x"), Err(WalError::BadMagic));
        assert!(scan(&MAGIC[..3]).unwrap().torn.is_some());
        assert!(scan(b"").unwrap().torn.is_none());
        let big = vec![0; MAX_RECORD + 1];
        assert_eq!(encode_record(&big, &mut Vec::new()), Err(WalError::TooLarge(MAX_RECORD + 1)));
    }
}
