//! The WAL module: persist-before-send with group commit, retention, and replay on restart.
//!
//! Rules (`docs/recovery.md` has the why):
//!
//! 1. **Append.** [`WalAppend`] `{retention_index, records, then}` appends each of `records` (whole
//!    events, canonically encoded) to the file of its retention index, `wal-<index>`.
//! 2. **Group commit, then release.** After the last event of a batch, the module syncs every file
//!    it wrote in the batch, **once**, and only then emits the `then` events of every `WalAppend`
//!    of the batch, in order (typically [`SendMessage`](crate::stdevents::SendMessage)s: what a
//!    protocol may only say once its records are durable). With [`SyncPolicy::Never`] it does not
//!    sync (records survive a killed process, through the page cache, but not a machine crash).
//! 3. **Retention.** [`WalTruncate`] `{retention_index}` removes every file of a lower index
//!    (after the batch's sync); an append below the highest truncation index is not written (its
//!    `then` events are still released: nothing will ever be recovered from there).
//! 4. **Replay.** On [`Init`], before handling anything else, the module reads every `wal-*` file
//!    in index order ([`scan`](super::scan)): a torn tail is cut off; corruption before the tail,
//!    or a record that does not decode, stops the node with an error naming the file and offset;
//!    each file is synced (what a killed process left in the page cache becomes durable before
//!    it is acted on again).
//!    It then sends one [`WalRecovered`] with every recorded event, in order, to the module named
//!    at construction (the protocol's coordinator, which hands each record to its module).
//! 5. **Failures.** A failed append or sync stops the node (an error naming the file): after a
//!    failed `fsync` the file's state cannot be trusted, and no `then` event of the batch is
//!    released, so nothing was promised on it. The node comes back through rule 4.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::disk::Disk;
use super::{encode_record, scan, MAGIC};
use crate::event::Event;
use crate::id::ModuleId;
use crate::module::{Batch, ModuleError, ModuleResult, Outbox, PassiveModule};
use crate::stdevents::Init;

/// Persist `records` in the file of `retention_index`; once they are durable, emit `then`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalAppend {
    /// The retention index of the records: a [`WalTruncate`] above it removes them.
    pub retention_index: u64,
    /// The events to persist; on restart they come back, as they are, in [`WalRecovered`].
    pub records: Vec<Event>,
    /// The events to emit once `records` are durable (as given: source and destination kept).
    pub then: Vec<Event>,
}

/// Remove the records of every retention index below `retention_index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalTruncate {
    /// The lowest retention index kept.
    pub retention_index: u64,
}

/// Every event the WAL held when the node started, in retention-index order and, within an
/// index, in the order they were appended. Sent once, right after `Init`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRecovered {
    /// The recorded events.
    pub records: Vec<Event>,
}

crate::payload!(
    WalAppend = "mir.WalAppend",
    WalTruncate = "mir.WalTruncate",
    WalRecovered = "mir.WalRecovered",
);

/// When the WAL syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Once per batch of events, before releasing the batch's `then` events (group commit).
    #[default]
    PerBatch,
    /// Never: records reach the OS, which keeps them if the process is killed but not if the
    /// machine stops. For measuring what the sync costs, and for tests.
    Never,
}

/// Counters of a WAL, readable while it runs ([`Wal::stats`]).
#[derive(Debug, Default)]
pub struct WalStats {
    /// Records appended.
    pub records: AtomicU64,
    /// Bytes appended (framing included).
    pub bytes: AtomicU64,
    /// Syncs (one per file written per batch).
    pub syncs: AtomicU64,
    /// Nanoseconds spent in syncs.
    pub sync_nanos: AtomicU64,
    /// Records recovered at the start.
    pub recovered: AtomicU64,
    /// Bytes of torn tails cut at the start.
    pub torn_bytes: AtomicU64,
    /// Files removed by truncation.
    pub removed_files: AtomicU64,
}

/// The WAL module (see the [module docs](self)).
///
/// ```
/// use mir_runtime::wal::{disk::SimDisk, Wal, WalAppend, WalRecovered};
/// use mir_runtime::{stdevents::{Init, TestString}, testing::apply, Event, ModuleId};
/// let disk = std::sync::Arc::new(std::sync::Mutex::new(SimDisk::new(1)));
/// let (proto, wal) = (ModuleId::new("proto"), ModuleId::new("wal"));
/// let record = Event::new(proto.clone(), proto.clone(), TestString("I voted".into()));
/// let send = Event::new(proto.clone(), ModuleId::new("net"), TestString("vote".into()));
///
/// // First run: the vote leaves only once the record is durable.
/// let mut w = Wal::new(disk.clone(), proto.clone());
/// apply(&mut w, wal.clone(), vec![Event::new("x", wal.clone(), Init)]).unwrap();
/// let append = WalAppend { retention_index: 0, records: vec![record.clone()], then: vec![send.clone()] };
/// let out = apply(&mut w, wal.clone(), vec![Event::new(proto.clone(), wal.clone(), append)]).unwrap();
/// assert_eq!(out, vec![send]);
///
/// // After a crash, the record comes back first.
/// disk.lock().unwrap().crash();
/// let mut w = Wal::new(disk, proto.clone());
/// let out = apply(&mut w, wal.clone(), vec![Event::new("x", wal.clone(), Init)]).unwrap();
/// let r: WalRecovered = out[0].payload.decode().unwrap().unwrap();
/// assert_eq!(r.records, vec![record]);
/// ```
pub struct Wal {
    disk: Box<dyn Disk>,
    replay_to: ModuleId,
    policy: SyncPolicy,
    /// Files that exist (their retention indices).
    files: BTreeSet<u64>,
    /// Appends below this index are not written.
    low: u64,
    stats: Arc<WalStats>,
}

/// The file of retention index `index`.
pub fn file_name(index: u64) -> String {
    format!("wal-{index:020}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("wal-")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl Wal {
    /// A WAL on `disk` that sends what it recovers to `replay_to`; syncs once per batch.
    pub fn new(disk: impl Disk + 'static, replay_to: ModuleId) -> Self {
        Wal {
            disk: Box::new(disk),
            replay_to,
            policy: SyncPolicy::PerBatch,
            files: BTreeSet::new(),
            low: 0,
            stats: Arc::default(),
        }
    }

    /// Sets the sync policy.
    pub fn policy(mut self, policy: SyncPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The module that gets [`WalRecovered`].
    pub fn replay_to(&self) -> &ModuleId {
        &self.replay_to
    }

    /// The counters.
    pub fn stats(&self) -> Arc<WalStats> {
        self.stats.clone()
    }

    fn recover(&mut self) -> Result<Vec<Event>, ModuleError> {
        let io = |name: &str, e: std::io::Error| ModuleError::new(format!("WAL {name}: {e}"));
        let mut files: Vec<(u64, String)> = Vec::new();
        for name in self.disk.list().map_err(|e| io("directory", e))? {
            match parse_name(&name) {
                Some(i) => files.push((i, name)),
                None => tracing::warn!(file = %name, "WAL: not a WAL file name; ignored"),
            }
        }
        files.sort();
        let mut records = Vec::new();
        for (index, name) in files {
            let bytes = self.disk.read(&name).map_err(|e| io(&name, e))?;
            let s = scan(&bytes).map_err(|e| ModuleError::new(format!("WAL {name}: {e}")))?;
            if let Some((at, why)) = &s.torn {
                tracing::warn!(file = %name, offset = at, reason = %why, "WAL: torn tail cut");
                self.stats.torn_bytes.fetch_add((bytes.len() - s.valid_len) as u64, Relaxed);
                if s.valid_len < MAGIC.len() {
                    self.disk.remove(&name).map_err(|e| io(&name, e))?;
                    continue;
                }
                self.disk.truncate(&name, s.valid_len).map_err(|e| io(&name, e))?;
            }
            // What is replayed may be only in the page cache (the process was killed between
            // an append and its sync): make it durable before anyone acts on it again.
            self.disk.sync(&name).map_err(|e| io(&name, e))?;
            for (i, r) in s.records.iter().enumerate() {
                let ev = Event::decode(r).map_err(|e| {
                    ModuleError::new(format!("WAL {name}: record {i} does not decode: {e}"))
                })?;
                records.push(ev);
            }
            self.files.insert(index);
        }
        self.stats.recovered.fetch_add(records.len() as u64, Relaxed);
        Ok(records)
    }

    fn append(&mut self, a: &WalAppend, dirty: &mut BTreeSet<u64>) -> Result<(), ModuleError> {
        if a.retention_index < self.low || a.records.is_empty() {
            return Ok(());
        }
        let name = file_name(a.retention_index);
        let mut buf = Vec::new();
        if self.files.insert(a.retention_index) {
            buf.extend_from_slice(&MAGIC);
        }
        for r in &a.records {
            encode_record(&r.encode(), &mut buf)
                .map_err(|e| ModuleError::new(format!("WAL {name}: {e}")))?;
        }
        self.disk
            .append(&name, &buf)
            .map_err(|e| ModuleError::new(format!("WAL {name}: append failed: {e}")))?;
        self.stats.records.fetch_add(a.records.len() as u64, Relaxed);
        self.stats.bytes.fetch_add(buf.len() as u64, Relaxed);
        dirty.insert(a.retention_index);
        Ok(())
    }
}

impl PassiveModule for Wal {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let mut release: Vec<Event> = Vec::new();
        let mut dirty = BTreeSet::new();
        let mut truncate = None;
        for ev in events {
            if ev.is::<Init>() {
                let records = self.recover()?;
                out.send(&self.replay_to.clone(), WalRecovered { records });
                continue;
            }
            if let Some(t) = ev.payload.decode::<WalTruncate>().map_err(ModuleError::new)? {
                truncate = truncate.max(Some(t.retention_index));
                continue;
            }
            match ev.into_payload::<WalAppend>() {
                Ok(a) => {
                    self.append(&a, &mut dirty)?;
                    release.extend(a.then);
                }
                Err(crate::PayloadError::OtherType(p)) => {
                    return Err(ModuleError::new(format!("the WAL does not handle {}", p.name())))
                }
                Err(e) => return Err(ModuleError::new(e)),
            }
        }
        if self.policy == SyncPolicy::PerBatch {
            for index in dirty {
                let name = file_name(index);
                let t = std::time::Instant::now();
                self.disk.sync(&name).map_err(|e| {
                    ModuleError::new(format!("WAL {name}: sync failed: {e}; stopping"))
                })?;
                self.stats.sync_nanos.fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
                self.stats.syncs.fetch_add(1, Relaxed);
            }
        }
        if let Some(low) = truncate.filter(|l| *l > self.low) {
            self.low = low;
            let old: Vec<u64> = self.files.range(..low).copied().collect();
            for index in old {
                let name = file_name(index);
                self.disk
                    .remove(&name)
                    .map_err(|e| ModuleError::new(format!("WAL {name}: remove failed: {e}")))?;
                self.files.remove(&index);
                self.stats.removed_files.fetch_add(1, Relaxed);
            }
        }
        for ev in release {
            out.emit(ev);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::stdevents::TestUint64;
    use crate::testing::apply;
    use crate::wal::disk::SimDisk;

    fn ev(i: u64) -> Event {
        Event::new("p", "p", TestUint64(i))
    }

    fn append(r: u64, recs: &[u64], then: &[u64]) -> Event {
        let a = WalAppend {
            retention_index: r,
            records: recs.iter().map(|i| ev(*i)).collect(),
            then: then.iter().map(|i| Event::new("p", "net", TestUint64(*i))).collect(),
        };
        Event::new("p", "wal", a)
    }

    fn init() -> Event {
        Event::new("x", "wal", Init)
    }

    fn recovered(out: &[Event]) -> Vec<u64> {
        let r: WalRecovered = out[0].payload.decode().unwrap().unwrap();
        r.records.iter().map(|e| e.payload.decode::<TestUint64>().unwrap().unwrap().0).collect()
    }

    #[test]
    fn releases_after_one_sync_per_file_and_recovers_in_index_order() {
        let disk = Arc::new(Mutex::new(SimDisk::new(1)));
        let mut w = Wal::new(disk.clone(), ModuleId::new("p"));
        let stats = w.stats();
        let wal = ModuleId::new("wal");
        apply(&mut w, wal.clone(), vec![init()]).unwrap();
        let out =
            apply(&mut w, wal.clone(), vec![append(1, &[10], &[1]), append(0, &[1, 2], &[2, 3])])
                .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(stats.syncs.load(Relaxed), 2); // two files, one sync each
        apply(&mut w, wal.clone(), vec![append(1, &[11], &[])]).unwrap();
        disk.lock().unwrap().crash();
        let mut w = Wal::new(disk.clone(), ModuleId::new("p"));
        assert_eq!(
            recovered(&apply(&mut w, wal.clone(), vec![init()]).unwrap()),
            vec![1, 2, 10, 11]
        );
        // Truncation removes lower indices; appends below it are released but not written.
        let out = apply(
            &mut w,
            wal.clone(),
            vec![Event::new("p", "wal", WalTruncate { retention_index: 1 }), append(0, &[3], &[4])],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        let mut w = Wal::new(disk, ModuleId::new("p"));
        assert_eq!(recovered(&apply(&mut w, wal.clone(), vec![init()]).unwrap()), vec![10, 11]);
    }

    #[test]
    fn after_any_crash_every_released_record_is_recovered() {
        for seed in 0..300 {
            let disk = Arc::new(Mutex::new(SimDisk::new(seed)));
            let wal = ModuleId::new("wal");
            let mut w = Wal::new(disk.clone(), ModuleId::new("p"));
            apply(&mut w, wal.clone(), vec![init()]).unwrap();
            let mut released = Vec::new();
            for i in 0..10 {
                let out = apply(&mut w, wal.clone(), vec![append(i / 4, &[i], &[i])]).unwrap();
                released.extend(
                    out.iter().map(|e| e.payload.decode::<TestUint64>().unwrap().unwrap().0),
                );
            }
            // Appended (and so, in the page cache) but the batch is not finished: not synced.
            disk.lock().unwrap().append(&file_name(2), b"half a record").unwrap();
            disk.lock().unwrap().crash();
            let mut w = Wal::new(disk.clone(), ModuleId::new("p"));
            let got = recovered(&apply(&mut w, wal.clone(), vec![init()]).unwrap());
            assert_eq!(got, released, "seed {seed}");
            // And the cut file takes appends that recover.
            apply(&mut w, wal.clone(), vec![append(2, &[99], &[])]).unwrap();
            let mut w = Wal::new(disk, ModuleId::new("p"));
            let again = recovered(&apply(&mut w, wal.clone(), vec![init()]).unwrap());
            assert_eq!(again.last(), Some(&99), "seed {seed}");
        }
    }

    #[test]
    fn corruption_before_the_tail_stops_recovery_naming_file_and_offset() {
        let disk = Arc::new(Mutex::new(SimDisk::new(1)));
        let wal = ModuleId::new("wal");
        let mut w = Wal::new(disk.clone(), ModuleId::new("p"));
        apply(&mut w, wal.clone(), vec![init()]).unwrap();
        apply(&mut w, wal.clone(), vec![append(0, &[1, 2, 3], &[])]).unwrap();
        let name = file_name(0);
        let mut bytes = disk.lock().unwrap().read(&name).unwrap();
        bytes[MAGIC.len() + 14] ^= 0xff; // the first record's payload
        let mut d = disk.lock().unwrap();
        d.truncate(&name, 0).unwrap();
        d.append(&name, &bytes).unwrap();
        d.sync(&name).unwrap();
        drop(d);
        let mut w = Wal::new(disk, ModuleId::new("p"));
        let err = apply(&mut w, wal.clone(), vec![init()]).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("offset 8"), "{err}");
    }

    #[test]
    fn a_failed_sync_stops_the_node_and_releases_nothing() {
        let disk = SimDisk::new(5).faulty(1.0);
        let wal = ModuleId::new("wal");
        let mut w = Wal::new(disk, ModuleId::new("p"));
        apply(&mut w, wal.clone(), vec![init()]).unwrap();
        let err = apply(&mut w, wal.clone(), vec![append(0, &[1], &[1])]).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
    }
}
