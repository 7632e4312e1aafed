//! The `mircat` command: read, filter, merge and summarise Mir event logs. The `mircat` binary of
//! this crate runs it; a crate with its own payload types runs it from a binary of its own
//! (`bcb cat` in the examples), so that its payloads, which register themselves through
//! [`payload!`](crate::payload), show decoded: a program shows the payloads of the crates it
//! links, and the others as `Encoded(NAME, N bytes)`.
//!
//! ```text
//! mircat LOG... [--node N] [--module M] [--event TYPE] [--from-index I] [--to-index I]
//!               [--from-ms T] [--to-ms T] [--sn N] [--epoch E] [--instance I] [--field F=V]
//!               [--limit N] [--json] [--stats] [--max-log-bytes B] [--html FILE]
//! ```
//!
//! **Protocol filters** (the ordering layer's conventions, usable by any protocol that follows
//! them): `--sn N` keeps events whose payload, or the message it carries, has a field `sn` equal
//! to `N`; `--epoch E` those with a field `epoch` equal to `E`, or handled by, sent from or
//! addressed to an instance of epoch `E` (a module ID segment `E` or `E.<segment>`, as in
//! `checkpoint/3` and `ordering/3.1`); `--instance 3.1` those of that instance (a module ID
//! segment, in the event's source, destination or the message's module); `--field NAME=VALUE`
//! any field. Payloads are matched through their decoded form, so the program must link the
//! payload types (`bcb cat`, `iss cat`).
//!
//! `LOG` is an event-log file or a directory (searched for `eventlog-*.gz` and `eventlog-*.log`). Several nodes' logs
//! are merged by time. A missing file is an error; a truncated or corrupt file is reported on
//! standard error and everything before the damage is still shown (exit status 2); a file that
//! decompresses past `--max-log-bytes` (4 GiB by default) is refused (exit status 1). When the
//! reader of the output stops reading (`mircat LOG | head`), mircat stops writing, quietly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;
use std::ffi::OsString;

use crate::eventlog::{read_log_limited, Entry, LogError, DEFAULT_MAX_LOG_BYTES};
use crate::stdevents::{MessageReceived, SendMessage};
use crate::{Event, ModuleId, Payload};

#[derive(Parser)]
#[command(name = "mircat", about = "Read, filter, merge and summarise Mir event logs")]
struct Cli {
    /// Event-log files or directories holding them.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
    /// Only these nodes (repeatable).
    #[arg(long)]
    node: Vec<String>,
    /// Only events handed to these modules or their submodules (repeatable).
    #[arg(long)]
    module: Vec<String>,
    /// Only these event types, by name, e.g. `mir.TestString` or `bcb.Final` (repeatable); a
    /// message type matches the `mir.SendMessage` and `mir.MessageReceived` events carrying it.
    #[arg(long)]
    event: Vec<String>,
    /// Only events at this position of their node's sequence or later.
    #[arg(long)]
    from_index: Option<u64>,
    /// Only events before this position.
    #[arg(long)]
    to_index: Option<u64>,
    /// Only events at this time (ms since start) or later.
    #[arg(long)]
    from_ms: Option<f64>,
    /// Only events before this time (ms).
    #[arg(long)]
    to_ms: Option<f64>,
    /// Only events about this sequence number (a payload field `sn`, nested messages too).
    #[arg(long)]
    sn: Vec<u64>,
    /// Only events of this epoch (a payload field `epoch`, or an instance `…/E` or `…/E.S`).
    #[arg(long)]
    epoch: Vec<u64>,
    /// Only events of this instance: a module ID segment such as `3.1` (epoch 3, segment 1).
    #[arg(long)]
    instance: Vec<String>,
    /// Only events whose payload has this field with this value, e.g. `view=2` (repeatable: all
    /// must hold).
    #[arg(long, value_name = "NAME=VALUE")]
    field: Vec<String>,
    /// Show at most this many events.
    #[arg(long)]
    limit: Option<usize>,
    /// Refuse a log file that decompresses to more than this many bytes (a damaged or hostile
    /// file); the default is 4 GiB.
    #[arg(long, default_value_t = DEFAULT_MAX_LOG_BYTES)]
    max_log_bytes: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Counts per event type and per module instead of the events.
    #[arg(long)]
    stats: bool,
    /// Also write a trace viewer page (space-time diagram of the selected logs) to this file.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// An event with where and when it was handled.
struct Row {
    time_ns: u64,
    node: String,
    module: ModuleId,
    index: u64,
    event: Event,
}

fn files(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !p.is_dir() {
        return Ok(vec![p.to_owned()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(p)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files(&path)?);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(crate::eventlog::is_log_file_name)
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The type of the message an event carries (`SendMessage`, `MessageReceived`), if it does.
fn inner_name(ev: &Event) -> Option<String> {
    if let Ok(Some(m)) = ev.payload.decode::<SendMessage>() {
        return Some(m.message.payload.name().to_owned());
    }
    ev.payload
        .decode::<MessageReceived>()
        .ok()
        .flatten()
        .map(|m| m.message.payload.name().to_owned())
}

/// Whether `text` (a decoded payload) has field `name` with value `value`: `name: value` with
/// `name` not the tail of a longer identifier and `value` not the head of a longer token.
fn has_field(text: &str, name: &str, value: &str) -> bool {
    let needle = format!("{name}: {value}");
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(&needle).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(|c| ident(c) || c == '.')
    })
}

/// The module IDs an event involves: source, destination, and the module a message is for.
fn modules_of(ev: &Event) -> Vec<String> {
    let mut out = vec![ev.src.to_string(), ev.dest.to_string()];
    if let Ok(Some(m)) = ev.payload.decode::<SendMessage>() {
        out.push(m.message.dest_module.to_string());
    } else if let Ok(Some(m)) = ev.payload.decode::<MessageReceived>() {
        out.push(m.message.dest_module.to_string());
    }
    out
}

/// Whether `id` has a segment after the first equal to `seg` (or, with `epoch_prefix`,
/// starting with `seg.`).
fn has_segment(id: &str, seg: &str, epoch_prefix: bool) -> bool {
    id.split('/').skip(1).any(|s| {
        s == seg || (epoch_prefix && s.strip_prefix(seg).is_some_and(|rest| rest.starts_with('.')))
    })
}

/// The payload with every field: decoded when its type is registered (nested ones too).
fn pretty(p: &Payload) -> String {
    if let Ok(Some(m)) = p.decode::<SendMessage>() {
        let to: Vec<&str> = m.destinations.iter().map(|d| d.as_str()).collect();
        return format!(
            "SendMessage to {to:?} for {}: {:?}",
            m.message.dest_module, m.message.payload
        );
    }
    if let Ok(Some(m)) = p.decode::<MessageReceived>() {
        return format!(
            "MessageReceived from {} for {}: {:?}",
            m.from, m.message.dest_module, m.message.payload
        );
    }
    format!("{p:?}")
}

/// Runs `mircat` with command-line `args` (the program name first); returns the exit status: 0,
/// 1 (bad arguments, a missing or oversized file), 2 (a damaged file; what was intact is shown).
///
/// A crate's own mircat is a binary that links the crate (so its payload types are registered)
/// and calls this:
///
/// ```no_run
/// // The body of `main` in src/bin/mycat.rs of a protocol crate:
/// std::process::exit(mir_runtime::eventlog::cli::run(std::env::args_os()));
/// ```
///
/// ```
/// // A missing log: status 1, and a message on standard error.
/// assert_eq!(mir_runtime::eventlog::cli::run(["mycat", "/nonexistent/log"]), 1);
/// ```
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };
    match main_with(cli) {
        Ok(damaged) => i32::from(damaged) * 2,
        Err(msg) => {
            eprintln!("mircat: {msg}");
            1
        }
    }
}

fn main_with(cli: Cli) -> Result<bool, String> {
    let mut damaged = false;
    let mut entries: Vec<Entry> = Vec::new();
    for log in &cli.logs {
        if !log.exists() {
            return Err(format!("{}: no such file or directory", log.display()));
        }
        let found = files(log).map_err(|e| format!("{}: {e}", log.display()))?;
        if found.is_empty() {
            return Err(format!(
                "{}: no event logs (eventlog-*.gz, eventlog-*.log) found",
                log.display()
            ));
        }
        for f in found {
            match read_log_limited(&f, cli.max_log_bytes) {
                Ok(e) => entries.extend(e),
                Err(LogError::Truncated { entries: e, .. }) => {
                    eprintln!(
                        "mircat: {}: truncated after {} complete entries (shown)",
                        f.display(),
                        e.len()
                    );
                    damaged = true;
                    entries.extend(e);
                }
                Err(LogError::Corrupt { entries: e, error, .. }) => {
                    eprintln!("mircat: {}: corrupt after {} entries ({error}); the entries before are shown", f.display(), e.len());
                    damaged = true;
                    entries.extend(e);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if let Some(path) = &cli.html {
        let title: Vec<String> = cli.logs.iter().map(|l| l.display().to_string()).collect();
        let page = crate::eventlog::viewer::render_html(&entries, &title.join(", "));
        std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let modules: Vec<ModuleId> =
        cli.module.iter().filter_map(|m| ModuleId::try_new(m).ok()).collect();
    if modules.len() != cli.module.len() {
        return Err("--module takes module IDs such as `bcb` or `bcb/3`".into());
    }
    let fields: Vec<(String, String)> = cli
        .field
        .iter()
        .map(|f| f.split_once('=').map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned())))
        .collect::<Option<_>>()
        .ok_or("--field takes NAME=VALUE, e.g. --field view=2")?;
    let mut rows: Vec<Row> = entries
        .into_iter()
        .flat_map(|e| {
            let (node, module, time_ns, index) =
                (e.node.to_string(), e.module.clone(), e.time_ns, e.index);
            e.events.into_iter().enumerate().map(move |(i, event)| Row {
                time_ns,
                node: node.clone(),
                module: module.clone(),
                index: index + i as u64,
                event,
            })
        })
        .filter(|r| cli.node.is_empty() || cli.node.contains(&r.node))
        .filter(|r| modules.is_empty() || modules.iter().any(|m| r.event.dest.is_under(m)))
        .filter(|r| {
            cli.event.is_empty()
                || cli.event.iter().any(|t| t == r.event.name())
                || inner_name(&r.event).is_some_and(|n| cli.event.contains(&n))
        })
        .filter(|r| {
            cli.from_index.is_none_or(|i| r.index >= i) && cli.to_index.is_none_or(|i| r.index < i)
        })
        .filter(|r| {
            cli.from_ms.is_none_or(|t| r.time_ns as f64 >= t * 1e6)
                && cli.to_ms.is_none_or(|t| (r.time_ns as f64) < t * 1e6)
        })
        .filter(|r| protocol_filters_keep(&cli, &fields, r))
        .collect();
    // Several nodes merged by time; within a node, in dispatch order.
    rows.sort_by(|a, b| (a.time_ns, &a.node, a.index).cmp(&(b.time_ns, &b.node, b.index)));
    if let Some(n) = cli.limit {
        rows.truncate(n);
    }
    // Buffered, and a reader that stops reading (`mircat LOG | head`) ends the output quietly.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match print_rows(&cli, &rows, &mut out).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(format!("writing to standard output: {e}")),
    }
    Ok(damaged)
}

/// `--sn`, `--epoch`, `--instance`, `--field`: whether row `r` passes them all.
fn protocol_filters_keep(cli: &Cli, fields: &[(String, String)], r: &Row) -> bool {
    if cli.sn.is_empty() && cli.epoch.is_empty() && cli.instance.is_empty() && fields.is_empty() {
        return true;
    }
    let text = pretty(&r.event.payload);
    let modules = modules_of(&r.event);
    let sn = cli.sn.is_empty() || cli.sn.iter().any(|n| has_field(&text, "sn", &n.to_string()));
    let epoch = cli.epoch.is_empty()
        || cli.epoch.iter().any(|e| {
            let e = e.to_string();
            has_field(&text, "epoch", &e) || modules.iter().any(|m| has_segment(m, &e, true))
        });
    let instance = cli.instance.is_empty()
        || cli.instance.iter().any(|i| modules.iter().any(|m| has_segment(m, i, false)));
    let field = fields.iter().all(|(n, v)| has_field(&text, n, v));
    sn && epoch && instance && field
}

/// Prints the selected rows: the events, or with `--stats` their counts.
fn print_rows(cli: &Cli, rows: &[Row], out: &mut impl Write) -> std::io::Result<()> {
    if cli.stats {
        let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_module: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_message: BTreeMap<String, u64> = BTreeMap::new();
        for r in rows {
            *by_type.entry(r.event.name()).or_default() += 1;
            *by_module.entry(format!("{}/{}", r.node, r.module)).or_default() += 1;
            if let Some(m) = inner_name(&r.event) {
                *by_message.entry(format!("{} {m}", r.event.name())).or_default() += 1;
            }
        }
        writeln!(out, "{} events", rows.len())?;
        writeln!(out, "by type:")?;
        for (t, n) in by_type {
            writeln!(out, "  {n:>10}  {t}")?;
        }
        writeln!(out, "by message type (sent, received):")?;
        for (m, n) in by_message {
            writeln!(out, "  {n:>10}  {m}")?;
        }
        writeln!(out, "by node/module:")?;
        for (m, n) in by_module {
            writeln!(out, "  {n:>10}  {m}")?;
        }
    } else {
        for r in rows {
            if cli.json {
                let line = serde_json::json!({
                    "time_ns": r.time_ns, "node": r.node, "module": r.module.as_str(), "index": r.index,
                    "type": r.event.name(), "src": r.event.src.as_str(), "dest": r.event.dest.as_str(),
                    "payload": pretty(&r.event.payload),
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "[{:>12.3} ms] node {} #{:<6} {} -> {}  {}  {}",
                    r.time_ns as f64 / 1e6,
                    r.node,
                    r.index,
                    r.event.src,
                    r.event.dest,
                    r.event.name(),
                    pretty(&r.event.payload)
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn fields_match_whole_names_and_values() {
        let t = "Prepare { sn: 12, view: 0, first_sn: 7 }";
        assert!(has_field(t, "sn", "12"));
        assert!(!has_field(t, "sn", "1"));
        assert!(!has_field(t, "sn", "7")); // first_sn is another field
        assert!(has_field(t, "first_sn", "7"));
        assert!(has_field(t, "view", "0"));
    }

    #[test]
    fn instances_and_epochs_are_module_id_segments() {
        assert!(has_segment("ordering/3.1", "3.1", false));
        assert!(has_segment("ordering/3.1", "3", true));
        assert!(!has_segment("ordering/3.1", "3", false));
        assert!(!has_segment("ordering/13.1", "3", true));
        assert!(has_segment("checkpoint/3", "3", true));
        assert!(!has_segment("3", "3", true)); // the top-level module name is not an instance
    }
}
