//! The trace viewer page: rendered in headless Chromium, it loads without script errors and draws
//! one arrow per message. The test never installs anything: without a Chromium on the `PATH` the
//! browser part is skipped with a message, unless `MIR_REQUIRE_BROWSER=1`, which makes a missing
//! browser a failure (`.ci/run` installs Chromium and sets it, so CI always runs the browser part).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mir_runtime::eventlog::viewer::render_html;

/// Two nodes, each sending three numbers to the other: six messages.
fn recorded(dir: &Path) -> Vec<mir_runtime::eventlog::Entry> {
    common::record_exchange(dir);
    common::entries_under(dir)
}

/// The names looked for on the `PATH` (`.ci/run` checks the same ones).
const BROWSERS: [&str; 4] =
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/// The first of [`BROWSERS`] found on the `PATH`, looked up directly (no `which`, which a minimal
/// image may lack).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    BROWSERS.iter().find_map(|name| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
    })
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
        let required = std::env::var("MIR_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "MIR_REQUIRE_BROWSER=1 but none of {BROWSERS:?} is on the PATH");
        eprintln!("SKIPPED the browser part: none of {BROWSERS:?} is on the PATH (MIR_REQUIRE_BROWSER=1 makes this a failure)");
        std::fs::remove_dir_all(&dir).unwrap();
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
