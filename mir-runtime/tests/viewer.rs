//! The trace viewer page: rendered in headless Chromium, it loads without script errors and draws
//! one arrow per message. Chromium (Debian's `chromium`) is installed by this test when missing
//! and possible (root, apt-get); otherwise the browser part is skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mir_runtime::eventlog::viewer::render_html;

/// Two nodes, each sending three numbers to the other: six messages.
fn recorded(dir: &Path) -> Vec<mir_runtime::eventlog::Entry> {
    common::record_exchange(dir);
    common::entries_under(dir)
}

fn chromium() -> Option<PathBuf> {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|c| {
            let out = Command::new("which").arg(c).output().ok()?;
            out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
    };
    if let Some(p) = find() {
        return Some(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("installing Debian's chromium for the viewer test…");
        // Bounded: a slow or locked package manager must not hang the test suite.
        let _ = Command::new("timeout")
            .args(["600", "apt-get", "install", "-y", "-q", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find()
}

#[test]
fn the_viewer_page_draws_one_arrow_per_message_without_script_errors() {
    let dir = std::env::temp_dir().join(format!("mir-viewer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let html = render_html(&recorded(&dir), "two nodes");
    assert!(html.contains("\"arrows\":[[") && html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("<script src") && !html.contains("<link"),
        "self-contained: no external scripts or styles"
    );
    let page = dir.join("trace.html");
    std::fs::write(&page, &html).unwrap();
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED the browser part: no chromium and it cannot be installed here");
        return;
    };
    let profile = dir.join("profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the page did not finish drawing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dom.contains("data-error"), "script error: {dom}");
    assert!(dom.contains("data-arrows=\"6\""), "expected 6 arrows");
    assert!(dom.contains("data-events=\"16\""), "expected 16 events");
    std::fs::remove_dir_all(&dir).unwrap();
}
