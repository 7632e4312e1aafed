//! Storage for the WAL: the [`Disk`] trait, a real directory ([`DirDisk`]) and a simulated disk
//! ([`SimDisk`]) with the semantics of a real one, so that the same WAL code runs on both.
//!
//! The simulated disk's rules:
//!
//! 1. `append` buffers the write; reads see it at once (the page cache), but it is not durable.
//! 2. `sync` makes every buffered write of the file durable.
//! 3. [`SimDisk::crash`] decides, for each file, what survives of the writes not synced, drawn
//!    from a seed: all lost, a prefix of them kept, or a prefix kept and the next write torn
//!    (a prefix of its bytes, possibly followed by garbage). Synced bytes always survive.
//! 4. With [`SimDisk::faulty`], an append or a sync fails with the given probability (drawn from
//!    the seed); a failed append writes nothing, a failed sync makes nothing durable.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use crate::sim::SimRng;

/// What the WAL needs of storage: named files that grow by appends.
pub trait Disk: Send {
    /// Appends `bytes` to file `name` (created if missing); not durable before [`Disk::sync`].
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes every append to `name` so far durable.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// The whole content of `name` (`NotFound` if it does not exist).
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>>;
    /// Cuts `name` to `len` bytes, durably (a torn tail after recovery).
    fn truncate(&mut self, name: &str, len: usize) -> io::Result<()>;
    /// Removes `name` (retention), durably; no error if it does not exist.
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// The files, sorted by name.
    fn list(&mut self) -> io::Result<Vec<String>>;
}

/// A disk shared with whoever else holds the `Arc`: how a simulated node's WAL and the test that
/// crashes it ([`SimDisk::crash`]) see the same disk.
impl<D: Disk> Disk for std::sync::Arc<std::sync::Mutex<D>> {
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.append(name, bytes)
    }
    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.sync(name)
    }
    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.read(name)
    }
    fn truncate(&mut self, name: &str, len: usize) -> io::Result<()> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.truncate(name, len)
    }
    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.remove(name)
    }
    fn list(&mut self) -> io::Result<Vec<String>> {
        self.lock().map_err(|_| io::Error::other("disk lock poisoned"))?.list()
    }
}

/// Files in a directory of the real file system (`sync` is `fsync`).
///
/// A file's `fsync` does not make its directory entry durable: after creating a file, `sync`
/// also syncs the directory (once per new file), and `remove` syncs it after removing, so that
/// a power loss can neither lose a synced file nor bring back a removed one (on Unix; elsewhere
/// directories cannot be opened for syncing and only the files are synced).
#[derive(Debug)]
pub struct DirDisk {
    dir: PathBuf,
    /// Files written since the directory was last synced (their entries may not be durable).
    created: std::collections::BTreeSet<String>,
}

impl DirDisk {
    /// The files of `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        let existed = dir.is_dir();
        std::fs::create_dir_all(&dir)?;
        let mut disk = DirDisk { dir, created: Default::default() };
        // The entries of files an earlier process created and never synced become durable here
        // (before recovery reads them); a new directory's own entry, in its parent.
        disk.sync_dir()?;
        #[cfg(unix)]
        if !existed {
            if let Some(parent) = disk.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)?.sync_all()?;
            }
        }
        let _ = existed;
        Ok(disk)
    }

    /// Makes the directory's entries durable.
    fn sync_dir(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.created.clear();
        Ok(())
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad file name {name:?}"),
            ));
        }
        Ok(self.dir.join(name))
    }
}

impl Disk for DirDisk {
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let path = self.path(name)?;
        if !self.created.contains(name) && !path.exists() {
            self.created.insert(name.to_owned());
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        std::fs::OpenOptions::new().append(true).open(self.path(name)?)?.sync_all()?;
        if self.created.contains(name) {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.path(name)?)
    }

    fn truncate(&mut self, name: &str, len: usize) -> io::Result<()> {
        let f = std::fs::OpenOptions::new().write(true).open(self.path(name)?)?;
        f.set_len(len as u64)?;
        f.sync_all()
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(()) => {
                self.created.remove(name);
                self.sync_dir()
            }
        }
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

#[derive(Debug, Default, Clone)]
struct SimFile {
    durable: Vec<u8>,
    pending: Vec<Vec<u8>>,
}

/// An in-memory disk with a real disk's crash semantics (see the [module docs](self)).
#[derive(Debug)]
pub struct SimDisk {
    files: BTreeMap<String, SimFile>,
    rng: SimRng,
    fail: f64,
}

impl SimDisk {
    /// An empty disk whose crashes are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        SimDisk { files: BTreeMap::new(), rng: SimRng::new(seed), fail: 0.0 }
    }

    /// Appends and syncs fail with probability `p` (drawn from the seed).
    pub fn faulty(mut self, p: f64) -> Self {
        self.fail = p;
        self
    }

    fn failure(&mut self, what: &str) -> io::Result<()> {
        if self.fail > 0.0 && self.rng.chance(self.fail) {
            return Err(io::Error::other(format!("simulated {what} failure")));
        }
        Ok(())
    }

    /// The machine stops: for each file, what was not synced is lost, or a prefix of the writes
    /// is kept, or a prefix is kept and the next write torn (drawn from the seed).
    ///
    /// ```
    /// use mir_runtime::wal::disk::{Disk, SimDisk};
    /// let mut d = SimDisk::new(7);
    /// d.append("log", b"synced").unwrap();
    /// d.sync("log").unwrap();
    /// d.append("log", b" and not").unwrap();
    /// d.crash();
    /// let after = d.read("log").unwrap();
    /// assert!(after.starts_with(b"synced") && after.len() <= b"synced and not".len() + 16);
    /// ```
    pub fn crash(&mut self) {
        for f in self.files.values_mut() {
            let pending = std::mem::take(&mut f.pending);
            if pending.is_empty() {
                continue;
            }
            let kept = self.rng.below(pending.len() as u64 + 1) as usize;
            for w in &pending[..kept] {
                f.durable.extend_from_slice(w);
            }
            if let Some(next) = pending.get(kept).filter(|_| self.rng.chance(0.5)) {
                // The next write torn: a prefix of it, sometimes followed by garbage.
                let cut = self.rng.below(next.len() as u64 + 1) as usize;
                f.durable.extend_from_slice(&next[..cut]);
                if self.rng.chance(0.5) {
                    let garbage = self.rng.between(1, 16);
                    f.durable.extend((0..garbage).map(|_| self.rng.below(256) as u8));
                }
            }
        }
    }

    /// Bytes of `name` that are durable.
    pub fn durable_len(&self, name: &str) -> usize {
        self.files.get(name).map_or(0, |f| f.durable.len())
    }
}

impl Disk for SimDisk {
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.failure("write")?;
        self.files.entry(name.to_owned()).or_default().pending.push(bytes.to_vec());
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.failure("sync")?;
        let f = self.files.get_mut(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        for w in std::mem::take(&mut f.pending) {
            f.durable.extend_from_slice(&w);
        }
        Ok(())
    }

    fn read(&mut self, name: &str) -> io::Result<Vec<u8>> {
        let f = self.files.get(name).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(f.pending.iter().fold(f.durable.clone(), |mut all, w| {
            all.extend_from_slice(w);
            all
        }))
    }

    fn truncate(&mut self, name: &str, len: usize) -> io::Result<()> {
        let all = self.read(name)?;
        let f = self.files.get_mut(name).expect("read it");
        f.durable = all[..len.min(all.len())].to_vec();
        f.pending.clear();
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files.remove(name);
        Ok(())
    }

    fn list(&mut self) -> io::Result<Vec<String>> {
        Ok(self.files.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{encode_record, scan, MAGIC};

    /// The directory disk: files grow, are read back, cut, listed and removed; names cannot leave
    /// the directory; a new file's first sync and a removal sync the directory.
    #[test]
    fn a_directory_disk_does_what_the_wal_needs() {
        let dir = std::env::temp_dir().join(format!("mir-dirdisk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut d = DirDisk::new(&dir).unwrap();
        d.append("wal-1", b"abc").unwrap();
        assert!(d.created.contains("wal-1"), "a new file's entry is not durable yet");
        d.sync("wal-1").unwrap();
        assert!(d.created.is_empty(), "the first sync of a new file syncs the directory");
        d.append("wal-1", b"def").unwrap();
        assert!(d.created.is_empty(), "an existing file is not new");
        d.append("wal-2", b"x").unwrap();
        assert_eq!(d.read("wal-1").unwrap(), b"abcdef");
        d.truncate("wal-1", 2).unwrap();
        assert_eq!(d.read("wal-1").unwrap(), b"ab");
        assert_eq!(d.list().unwrap(), ["wal-1", "wal-2"]);
        d.remove("wal-2").unwrap();
        d.remove("wal-2").unwrap(); // gone already: fine
        assert!(d.created.is_empty());
        assert_eq!(d.list().unwrap(), ["wal-1"]);
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(d.append(bad, b"x").is_err(), "{bad:?} accepted");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whatever a crash leaves, the WAL scan recovers every synced record, then a prefix of the
    /// rest, and cutting at `valid_len` gives a clean file.
    #[test]
    fn after_any_crash_the_synced_records_survive_and_the_tail_is_a_torn_prefix() {
        for seed in 0..500 {
            let mut d = SimDisk::new(seed);
            d.append("w", &MAGIC).unwrap();
            let rec = |i: u8| {
                let mut b = Vec::new();
                encode_record(&vec![i; i as usize + 1], &mut b).unwrap();
                b
            };
            for i in 0..5 {
                d.append("w", &rec(i)).unwrap();
            }
            d.sync("w").unwrap();
            for i in 5..10 {
                d.append("w", &rec(i)).unwrap();
            }
            d.crash();
            let s = scan(&d.read("w").unwrap()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(s.records.len() >= 5, "seed {seed}: a synced record was lost");
            for (i, r) in s.records.iter().enumerate() {
                assert_eq!(r, &vec![i as u8; i + 1], "seed {seed}");
            }
            d.truncate("w", s.valid_len).unwrap();
            assert_eq!(scan(&d.read("w").unwrap()).unwrap().torn, None);
        }
    }

    #[test]
    fn a_faulty_disk_fails_some_writes_and_syncs_and_loses_nothing_synced() {
        let mut d = SimDisk::new(3).faulty(0.3);
        let (mut ok_writes, mut failures) = (Vec::new(), 0);
        for i in 0..100u8 {
            match d.append("f", &[i]) {
                Ok(()) => ok_writes.push(i),
                Err(_) => failures += 1,
            }
        }
        while d.sync("f").is_err() {
            failures += 1;
        }
        assert!(failures > 0);
        d.crash();
        assert_eq!(d.read("f").unwrap(), ok_writes);
    }

    #[test]
    fn a_directory_disk_appends_syncs_truncates_lists_and_removes() {
        let dir = std::env::temp_dir().join(format!("mir-wal-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut d = DirDisk::new(&dir).unwrap();
        d.append("a", b"hello ").unwrap();
        d.append("a", b"world").unwrap();
        d.sync("a").unwrap();
        assert_eq!(d.read("a").unwrap(), b"hello world");
        d.truncate("a", 5).unwrap();
        assert_eq!(d.read("a").unwrap(), b"hello");
        d.append("b", b"x").unwrap();
        assert_eq!(d.list().unwrap(), vec!["a".to_string(), "b".to_string()]);
        d.remove("a").unwrap();
        d.remove("a").unwrap(); // no error for a missing file
        assert_eq!(d.list().unwrap(), vec!["b".to_string()]);
        assert!(d.append("../escape", b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
