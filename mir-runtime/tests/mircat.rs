//! The mircat tool on logs of a recorded two-node simulation: merging, filters, JSON, statistics,
//! missing and truncated files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The logs of a two-node exchange (see `common::record_exchange`). Returns the log directory.
fn record(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mir-mircat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::record_exchange(&dir);
    dir
}

fn mircat(args: &[&str], log: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mircat")).arg(log).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn merges_filters_and_summarises() {
    let dir = record("main");
    let (code, text, _) = mircat(&[], &dir);
    assert_eq!(code, 0);
    let lines: Vec<&str> = text.lines().collect();
    // Per node: Init to app and net, 3 SendMessage to net, 3 MessageReceived to app = 8.
    assert_eq!(lines.len(), 16, "{text}");
    assert!(
        lines.iter().any(|l| l.contains("node 0")) && lines.iter().any(|l| l.contains("node 1"))
    );
    let times: Vec<f64> =
        lines.iter().map(|l| l[1..l.find(" ms]").unwrap()].trim().parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "merged by time");
    assert!(text.contains("TestUint64(2)"), "standard payloads are decoded for display: {text}");

    let (_, only1, _) = mircat(&["--node", "1", "--event", "mir.MessageReceived"], &dir);
    assert_eq!(only1.lines().count(), 3);
    assert!(only1.lines().all(|l| l.contains("node 1") && l.contains("mir.MessageReceived")));
    let (_, net, _) = mircat(&["--module", "net"], &dir);
    assert_eq!(net.lines().count(), 8);
    let (_, first, _) = mircat(&["--node", "0", "--to-index", "2"], &dir);
    assert_eq!(first.lines().count(), 2);
    let (_, json, _) = mircat(&["--json", "--limit", "3"], &dir);
    let parsed: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parsed.len(), 3);
    assert!(parsed[0]["type"].is_string() && parsed[0]["time_ns"].is_u64());
    let (_, stats, _) = mircat(&["--stats"], &dir);
    assert!(stats.contains("16 events"), "{stats}");
    assert!(
        stats.contains("6  mir.SendMessage") || stats.contains("         6  mir.SendMessage"),
        "{stats}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_and_truncated_files_are_reported_clearly() {
    let (code, _, err) = mircat(&[], Path::new("/nonexistent/mir-log"));
    assert_eq!(code, 1);
    assert!(err.contains("no such file or directory"), "{err}");

    let dir = record("cut");
    let file = dir.join("0").join("eventlog-000000.gz");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let (code, text, err) = mircat(&[], &file);
    assert_eq!(code, 2, "damaged input gives exit status 2");
    assert!(err.contains("truncated after"), "{err}");
    assert!(text.lines().count() < 8, "only what was intact");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `mircat LOG | head`: when the reader stops reading, mircat stops writing, quietly (no panic,
/// no message), with the exit status it would have had.
#[test]
fn a_closed_output_ends_mircat_quietly() {
    let dir = record("pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mircat"))
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before mircat writes anything
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
