//! The mircat tool on logs of a recorded two-node simulation: merging, filters, JSON, statistics,
//! missing and truncated files, a closed output, payload types of crates it does not link.

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

/// A payload type of this test crate: the `mircat` binary does not link it, this test does.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Secret {
    code: u64,
}
mir_runtime::payload!(Secret = "test.Secret");

/// A program shows decoded the payload types of the crates it links, and the others by name and
/// length, without failing; `--event` finds a message by its type either way.
#[test]
fn types_of_crates_it_does_not_link_show_as_name_and_length() {
    use common::{id, FnModule};
    use mir_runtime::eventlog::{Recorder, RecorderConfig};
    use mir_runtime::sim::{SimConfig, Simulation};
    use mir_runtime::stdevents::{Init, Message, SendMessage};
    use mir_runtime::{Event, Node, NodeId, Outbox};
    let dir = std::env::temp_dir().join(format!("mir-mircat-unlinked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut sim = Simulation::new(SimConfig::with_seed(5));
    for me in 0..2usize {
        let app = FnModule(move |ev: Event, out: &mut Outbox| {
            if me == 0 && ev.is::<Init>() {
                let message = Message::new("app", Secret { code: 42 });
                out.send(&id("net"), SendMessage { destinations: vec![NodeId::new("1")], message });
            }
            Ok(())
        });
        let rec = Recorder::new(RecorderConfig::new(&dir), &NodeId::from_index(me)).unwrap();
        sim.add_node(Node::builder(NodeId::from_index(me)).passive("app", app).interceptor(rec))
            .unwrap();
    }
    sim.run_until_idle(std::time::Duration::from_secs(1)).unwrap();
    drop(sim); // the recorders flush

    let (code, text, err) = mircat(&["--event", "test.Secret"], &dir);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "sent by node 0, received by node 1: {text}");
    assert!(lines[0].contains("node 0") && lines[0].contains("mir.SendMessage"), "{text}");
    assert!(lines[1].contains("node 1") && lines[1].contains("mir.MessageReceived"), "{text}");
    // 42 is one byte in the canonical encoding.
    assert!(lines.iter().all(|l| l.contains("Encoded(test.Secret, 1 bytes)")), "{text}");
    assert!(!text.contains("code: 42"), "{text}");

    // This test links `Secret`: the same log shows it decoded here.
    let shown = format!("{:?}", common::entries_under(&dir));
    assert!(shown.contains("Secret { code: 42 }"), "{shown}");
    std::fs::remove_dir_all(&dir).unwrap();
}
