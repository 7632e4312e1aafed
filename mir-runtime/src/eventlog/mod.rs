//! Event logs: recording every event handed to every module, and reading the logs back.
//!
//! * An [`Interceptor`] sees each batch just before a module handles it (node, module, time,
//!   position, events), in both executors. Install one with
//!   [`NodeBuilder::interceptor`](crate::NodeBuilder::interceptor).
//! * The [`Recorder`] interceptor writes an event log: the canonical encoding of each batch as an
//!   [`Entry`], length-prefixed, gzip-compressed (feature `gzip`, on by default) in files
//!   `eventlog-000000.gz`, `…-000001.gz` … (without it: uncompressed, `eventlog-000000.log` …)
//!   under `<dir>/<node>/`, a new file after `max_file_bytes` (uncompressed) or `max_file_events`.
//!   Encoding happens on the event loop (allocation-free, into a buffer); compression and writing
//!   on a thread of the recorder's own, one hand-off per `chunk_bytes`. An optional filter keeps
//!   only some events.
//! * [`read_log`] reads a file back; a truncated last record is reported as an error after the
//!   entries before it.
//! * [`viewer::render_html`] draws logs as a space-time diagram in a self-contained web page.
//! * [`check`] runs a [`Monitor`] (an invariant) over logs and reports the violating events.
//! * [`replay()`] feeds a log to fresh instances of chosen modules and checks they emit what the
//!   recorded run shows (this finds nondeterminism), in the recorded batches, with a callback
//!   after each batch.
//! * `cli::run` (feature `cli`) is the `mircat` command as a library function: a
//!   protocol crate's binary that calls it shows that crate's payloads decoded (they register
//!   themselves as [`PayloadType`](crate::PayloadType)s through `payload!`).
//!
//! ```
//! use mir_runtime::eventlog::{read_log, Recorder, RecorderConfig};
//! use mir_runtime::sim::{SimConfig, Simulation};
//! use mir_runtime::{Node, stdmodules::NullModule};
//! let dir = std::env::temp_dir().join(format!("mir-doc-log-{}", std::process::id()));
//! let rec = Recorder::new(RecorderConfig::new(&dir), &"0".into()).unwrap();
//! let files = rec.files();
//! let mut sim = Simulation::new(SimConfig::with_seed(1));
//! sim.add_node(Node::builder("0").passive("app", NullModule).interceptor(rec)).unwrap();
//! sim.run_until_idle(std::time::Duration::from_secs(1)).unwrap();
//! drop(sim); // the recorder flushes and closes its file
//! let log = read_log(&files.lock().unwrap()[0]).unwrap();
//! assert_eq!(log.iter().map(|e| e.events.len()).sum::<usize>(), 2); // Init to app and to net
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

#[cfg(feature = "cli")]
pub mod cli;
pub mod monitor;
pub mod replay;
#[cfg(feature = "viewer")]
pub mod viewer;

pub use crate::core::intercept::Interceptor;

pub use monitor::{check, observed, Monitor, Observed, Violation};
pub use replay::{replay, ReplayError, ReplayReport, ReplayStep};

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};

#[cfg(feature = "gzip")]
use flate2::{read::GzDecoder, write::GzEncoder};
use serde::{Deserialize, Serialize};

use crate::codec::{self, put_bytes, put_varint, DecodeError};
use crate::event::Event;
use crate::id::{ModuleId, NodeId};
use crate::time::Time;

/// One recorded batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The node.
    pub node: NodeId,
    /// The module that handled the batch.
    pub module: ModuleId,
    /// When, in nanoseconds since the executor started.
    pub time_ns: u64,
    /// Position of the first event among all events the node dispatched.
    pub index: u64,
    /// The events (payloads come back encoded).
    pub events: Vec<Event>,
}

/// Decides which events a [`Recorder`] keeps: `(module handling it, event) -> keep?`.
pub type EventFilter = Arc<dyn Fn(&ModuleId, &Event) -> bool + Send + Sync>;

/// Where and how a [`Recorder`] writes.
#[derive(Clone)]
pub struct RecorderConfig {
    /// The log directory; each node writes under `<dir>/<node>/`.
    pub dir: PathBuf,
    /// Start a new file after this many uncompressed bytes. Default 64 MiB.
    pub max_file_bytes: u64,
    /// Start a new file after this many events. Default: no limit.
    pub max_file_events: u64,
    /// Hand encoded data to the writer thread in chunks of this size. Default 256 KiB.
    pub chunk_bytes: usize,
    /// Record only the events for which this returns `true` (batches with none are skipped).
    pub filter: Option<EventFilter>,
}

impl RecorderConfig {
    /// Defaults, writing under `dir`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        RecorderConfig {
            dir: dir.as_ref().to_owned(),
            max_file_bytes: 64 << 20,
            max_file_events: u64::MAX,
            chunk_bytes: 256 << 10,
            filter: None,
        }
    }
}

/// Counters of a recorder.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Events recorded.
    pub events: AtomicU64,
    /// Chunks lost because writing failed (the error is logged).
    pub lost_chunks: AtomicU64,
}

/// The recording interceptor. See the [module docs](self).
pub struct Recorder {
    cfg: RecorderConfig,
    buf: Vec<u8>,
    events_in_buf: u64,
    scratch: Vec<u8>,
    tx: Option<mpsc::SyncSender<(Vec<u8>, u64)>>,
    writer: Option<std::thread::JoinHandle<()>>,
    files: Arc<Mutex<Vec<PathBuf>>>,
    stats: Arc<RecorderStats>,
}

impl Recorder {
    /// A recorder for node `node` (creates `<dir>/<node>/`).
    pub fn new(cfg: RecorderConfig, node: &NodeId) -> std::io::Result<Self> {
        let dir = cfg.dir.join(node.as_str());
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, u64)>(8);
        let files: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
        let stats: Arc<RecorderStats> = Arc::default();
        let (f, s, c) = (files.clone(), stats.clone(), cfg.clone());
        let writer = std::thread::Builder::new()
            .name(format!("mir-recorder-{node}"))
            .spawn(move || write_loop(dir, c, rx, f, s))?;
        Ok(Recorder {
            cfg,
            buf: Vec::new(),
            events_in_buf: 0,
            scratch: Vec::new(),
            tx: Some(tx),
            writer: Some(writer),
            files,
            stats,
        })
    }

    /// The files written so far (shared; complete once the recorder is dropped).
    pub fn files(&self) -> Arc<Mutex<Vec<PathBuf>>> {
        self.files.clone()
    }

    /// The recorder's counters.
    pub fn stats(&self) -> Arc<RecorderStats> {
        self.stats.clone()
    }

    fn hand_off(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.buf);
        let n = std::mem::take(&mut self.events_in_buf);
        if let Some(tx) = &self.tx {
            if tx.send((chunk, n)).is_err() {
                self.stats.lost_chunks.fetch_add(1, Relaxed);
            }
        }
    }
}

impl Interceptor for Recorder {
    fn intercept(
        &mut self,
        node: &NodeId,
        module: &ModuleId,
        time: Time,
        index: u64,
        events: &[Event],
    ) {
        // Without a filter every event is kept: no per-event test. With one, it is asked once
        // per event and the kept events are remembered.
        let kept: Vec<&Event> = match &self.cfg.filter {
            None => Vec::new(),
            Some(f) => events.iter().filter(|e| f(module, e)).collect(),
        };
        let count = if self.cfg.filter.is_none() { events.len() } else { kept.len() };
        if count == 0 {
            return;
        }
        // A record: u32 length, then the canonical encoding of an `Entry`.
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        put_bytes(node.as_str().as_bytes(), &mut self.buf);
        put_bytes(module.as_str().as_bytes(), &mut self.buf);
        put_varint(time.since_start().as_nanos() as usize, &mut self.buf);
        put_varint(index as usize, &mut self.buf);
        put_varint(count, &mut self.buf);
        if self.cfg.filter.is_none() {
            for e in events {
                e.encode_with(&mut self.buf, &mut self.scratch);
            }
        } else {
            for e in kept {
                e.encode_with(&mut self.buf, &mut self.scratch);
            }
        }
        let len = (self.buf.len() - start - 4) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.events_in_buf += count as u64;
        self.stats.events.fetch_add(count as u64, Relaxed);
        if self.buf.len() >= self.cfg.chunk_bytes {
            self.hand_off();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.hand_off();
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The extension of the log files this build writes: `gz` (feature `gzip`) or `log`.
pub const LOG_EXTENSION: &str = if cfg!(feature = "gzip") { "gz" } else { "log" };

/// Whether `name` is the name of an event-log file (`eventlog-*.gz` or `eventlog-*.log`).
pub fn is_log_file_name(name: &str) -> bool {
    name.starts_with("eventlog-") && (name.ends_with(".gz") || name.ends_with(".log"))
}

/// A log file being written: gzip-compressed with feature `gzip`, plain otherwise.
struct LogWriter {
    #[cfg(feature = "gzip")]
    inner: GzEncoder<BufWriter<std::fs::File>>,
    #[cfg(not(feature = "gzip"))]
    inner: BufWriter<std::fs::File>,
}

impl LogWriter {
    fn new(f: std::fs::File) -> Self {
        #[cfg(feature = "gzip")]
        let inner = GzEncoder::new(BufWriter::new(f), flate2::Compression::fast());
        #[cfg(not(feature = "gzip"))]
        let inner = BufWriter::new(f);
        LogWriter { inner }
    }

    fn write_all(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(chunk)
    }

    fn finish(self) -> std::io::Result<BufWriter<std::fs::File>> {
        #[cfg(feature = "gzip")]
        return self.inner.finish();
        #[cfg(not(feature = "gzip"))]
        return Ok(self.inner);
    }
}

fn write_loop(
    dir: PathBuf,
    cfg: RecorderConfig,
    rx: mpsc::Receiver<(Vec<u8>, u64)>,
    files: Arc<Mutex<Vec<PathBuf>>>,
    stats: Arc<RecorderStats>,
) {
    let mut file: Option<LogWriter> = None;
    let (mut bytes, mut events, mut seq) = (0u64, 0u64, 0u32);
    while let Ok((chunk, n)) = rx.recv() {
        if file.is_some() && (bytes >= cfg.max_file_bytes || events >= cfg.max_file_events) {
            if let Some(f) = file.take() {
                if let Err(e) = f.finish().and_then(|mut w| w.flush()) {
                    tracing::error!(error = %e, "event log: closing a file failed");
                }
            }
            (bytes, events) = (0, 0);
        }
        if file.is_none() {
            let path = dir.join(format!("eventlog-{seq:06}.{LOG_EXTENSION}"));
            seq += 1;
            match std::fs::File::create(&path) {
                Ok(f) => {
                    file = Some(LogWriter::new(f));
                    files.lock().expect("lock").push(path);
                }
                Err(e) => {
                    stats.lost_chunks.fetch_add(1, Relaxed);
                    tracing::error!(path = %path.display(), error = %e, "event log: cannot create file; chunk lost");
                    continue;
                }
            }
        }
        if let Err(e) = file.as_mut().expect("opened").write_all(&chunk) {
            stats.lost_chunks.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "event log: write failed; chunk lost");
        }
        bytes += chunk.len() as u64;
        events += n;
    }
    if let Some(f) = file.take() {
        if let Err(e) = f.finish().and_then(|mut w| w.flush()) {
            tracing::error!(error = %e, "event log: closing the last file failed");
        }
    }
}

/// Why a log could not be read (entirely).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file cannot be opened or read.
    #[error("event log {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file ends in the middle of a record; `entries` holds everything before it.
    #[error("event log {path}: truncated after {} complete entries", entries.len())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The complete entries before the cut.
        entries: Vec<Entry>,
    },
    /// The file decompresses to more than the limit (a damaged or hostile file: a small gzip
    /// file can expand a thousandfold). Nothing is returned.
    #[error("event log {path}: decompresses to more than {limit} bytes (raise the limit if the log is genuine)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// A record is not a valid entry; `entries` holds everything before it.
    #[error("event log {path}: record #{} is corrupt: {error}", entries.len())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The complete entries before it.
        entries: Vec<Entry>,
        /// What is wrong.
        error: DecodeError,
    },
}

/// How many decompressed bytes [`read_log`] reads at most: 4 GiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 4 << 30;

/// Reads every entry of a log file (at most [`DEFAULT_MAX_LOG_BYTES`] decompressed).
///
/// A log is outside input: a truncated or corrupt file is an error carrying the entries before
/// the damage, a file that decompresses past the limit is [`LogError::TooLarge`], and nothing in
/// a file can make the reader panic or recurse (entries are flat: an event's payload stays
/// encoded bytes until something decodes it as a known type).
pub fn read_log(path: impl AsRef<Path>) -> Result<Vec<Entry>, LogError> {
    read_log_limited(path, DEFAULT_MAX_LOG_BYTES)
}

/// [`read_log`] with another limit on the decompressed size.
pub fn read_log_limited(path: impl AsRef<Path>, max_bytes: u64) -> Result<Vec<Entry>, LogError> {
    let path = path.as_ref().to_owned();
    let file = std::fs::File::open(&path)
        .map_err(|e| LogError::Io { path: path.clone(), reason: e.to_string() })?;
    read_log_from(&path, file, max_bytes)
}

/// Decompresses at most `limit` bytes into `data`; whether the stream was complete (a cut gzip
/// stream still yields what was decompressed before the cut).
#[cfg(feature = "gzip")]
fn gunzip(reader: impl Read, limit: u64, data: &mut Vec<u8>) -> Result<bool, String> {
    Ok(GzDecoder::new(reader).take(limit).read_to_end(data).is_ok())
}

#[cfg(not(feature = "gzip"))]
fn gunzip(_: impl Read, _: u64, _: &mut Vec<u8>) -> Result<bool, String> {
    Err("gzip-compressed log, and this build of mir-runtime has no `gzip` feature".into())
}

/// Reads a log from `reader` (gzip-compressed or plain, told apart by the gzip magic bytes);
/// `name` names it in errors. What [`read_log_limited`] does once the file is open. A compressed
/// log read by a build without feature `gzip` is an [`LogError::Io`] that says so.
pub fn read_log_from(
    name: &Path,
    reader: impl Read,
    max_bytes: u64,
) -> Result<Vec<Entry>, LogError> {
    let path = name.to_owned();
    let mut data = Vec::new();
    let mut reader = std::io::BufReader::new(reader);
    let head = std::io::BufRead::fill_buf(&mut reader)
        .map_err(|e| LogError::Io { path: path.clone(), reason: e.to_string() })?;
    let limit = max_bytes.saturating_add(1);
    let complete = if head.starts_with(&[0x1f, 0x8b]) {
        gunzip(reader, limit, &mut data)
            .map_err(|reason| LogError::Io { path: path.clone(), reason })?
    } else {
        reader.take(limit).read_to_end(&mut data).is_ok()
    };
    if data.len() as u64 > max_bytes {
        return Err(LogError::TooLarge { path, limit: max_bytes });
    }
    let mut entries = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(LogError::Truncated { path, entries });
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + len {
            return Err(LogError::Truncated { path, entries });
        }
        match codec::decode::<Entry>("mir.eventlog.Entry", &rest[4..4 + len]) {
            Ok(e) => entries.push(e),
            Err(error) => return Err(LogError::Corrupt { path, entries, error }),
        }
        rest = &rest[4 + len..];
    }
    if !complete {
        return Err(LogError::Truncated { path, entries });
    }
    Ok(entries)
}
