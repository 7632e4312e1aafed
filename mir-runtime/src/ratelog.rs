//! Rate-limited warnings for what peers cause.
//!
//! A peer that sends garbage a million times must not make a node write a million log lines. A
//! [`LogLimiter`] counts every occurrence exactly, per (peer, reason), and says to log only the
//! 1st, 2nd, 4th, 8th, … occurrence (powers of two), each line carrying the running count. The
//! rule depends on counts only, never on the clock, so it behaves the same in the simulator.
//! Memory is bounded: beyond [`LogLimiter::MAX_KEYS`] distinct (peer, reason) pairs, new pairs
//! share one key per reason (`peer = "*"`).
//!
//! Peer-controlled strings are printed escaped ([`escaped`]), and at most [`MAX_PRINTED`] bytes of
//! each, so a peer cannot forge log lines or flood the log through one field.
//!
//! ```
//! use mir_runtime::ratelog::LogLimiter;
//! let l = LogLimiter::default();
//! let logged: Vec<u64> = (0..10).filter_map(|_| l.occurred("peer 3", "bad frame")).collect();
//! assert_eq!(logged, [1, 2, 4, 8]);
//! assert_eq!(l.count("peer 3", "bad frame"), 10);
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

/// The most bytes of one peer-controlled string a log line shows.
pub const MAX_PRINTED: usize = 200;

/// Counts occurrences per (peer, reason) and says which to log (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct LogLimiter {
    counts: Mutex<HashMap<(String, String), u64>>,
}

impl LogLimiter {
    /// Distinct (peer, reason) pairs remembered before new peers share one key per reason.
    pub const MAX_KEYS: usize = 4096;

    /// Counts one occurrence; `Some(count)` if this one is to be logged.
    pub fn occurred(&self, peer: &str, reason: &str) -> Option<u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (peer.to_owned(), reason.to_owned());
        if counts.len() >= Self::MAX_KEYS && !counts.contains_key(&key) {
            key.0 = "*".to_owned();
        }
        let c = counts.entry(key).or_insert(0);
        *c += 1;
        c.is_power_of_two().then_some(*c)
    }

    /// How many times `reason` occurred for `peer` so far.
    pub fn count(&self, peer: &str, reason: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&(peer.to_owned(), reason.to_owned())).copied().unwrap_or(0)
    }
}

/// The head of a reason: up to its first `:` (by convention `"<WHAT> from <peer>: <detail>"`), at
/// most 80 bytes: a key for [`LogLimiter`] that names the kind of input and the peer, not the
/// details.
///
/// ```
/// assert_eq!(mir_runtime::ratelog::head("FINAL from 3: bad signature"), "FINAL from 3");
/// ```
pub fn head(reason: &str) -> &str {
    let mut end = reason.find(':').unwrap_or(reason.len()).min(80);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// `s` quoted, with quotes, backslashes, control and unprintable characters escaped, and cut to [`MAX_PRINTED`]
/// bytes, for printing a peer-controlled string.
///
/// ```
/// use mir_runtime::ratelog::escaped;
/// assert_eq!(escaped("a\nb"), r#""a\nb""#);
/// assert!(escaped(&"x".repeat(1000)).ends_with("…(1000 bytes)"));
/// ```
pub fn escaped(s: &str) -> String {
    if s.len() <= MAX_PRINTED {
        return format!("{s:?}");
    }
    let mut cut = MAX_PRINTED;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}…({} bytes)", &s[..cut], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_exact_and_keys_are_bounded() {
        let l = LogLimiter::default();
        for p in 0..LogLimiter::MAX_KEYS + 10 {
            l.occurred(&p.to_string(), "r");
        }
        assert_eq!(l.count("0", "r"), 1);
        assert_eq!(l.count("*", "r"), 10, "the overflow peers share one key");
        assert_eq!(l.occurred("0", "r"), Some(2), "a known peer keeps its own key");
    }
}
