//! The trace viewer page: rendered in headless Chromium, it loads without script errors, draws
//! one labelled arrow per message and a time axis with units, and applies a filter given in the
//! address (`examples/tests/debugging.rs` checks it on a recorded ISS run). The test never installs anything: without a Chromium on the `PATH` the
//! browser part is skipped with a message, unless `MIR_REQUIRE_BROWSER=1`, which makes a missing
//! browser a failure (`.ci/run` installs Chromium and sets it, so CI always runs the browser part).

mod common;

use std::path::Path;

use mir_runtime::eventlog::viewer::render_html;

/// Two nodes, each sending three numbers to the other: six messages.
fn recorded(dir: &Path) -> Vec<mir_runtime::eventlog::Entry> {
    common::record_exchange(dir);
    common::entries_under(dir)
}

use mir_runtime::testing::browser::{body_data, chromium, dump_dom, skip};

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
        skip("the browser part");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    let url = format!("file://{}", page.display());
    let dom = dump_dom(&browser, &url, &dir).unwrap();
    let data = |name: &str| body_data(&dom, name);
    assert_eq!(data("rendered").as_deref(), Some("yes"), "the page did not finish drawing");
    assert_eq!(data("error"), None, "script error: {dom}");
    assert_eq!(data("arrows").as_deref(), Some("6"), "expected 6 arrows");
    assert_eq!(data("events").as_deref(), Some("16"), "expected 16 events");
    // Six arrows are few enough to label each; the axis has ticks with units.
    assert_eq!(data("labels").as_deref(), Some("6"));
    let tick = data("first-tick").unwrap();
    assert!(["µs", "ms", " s"].iter().any(|u| tick.ends_with(u)), "tick label {tick:?}");
    // A filter in the address: only the messages' type (both ends), so 12 events, 6 arrows.
    let dom = dump_dom(&browser, &format!("{url}#filter=mir.TestUint64"), &dir).unwrap();
    assert_eq!(body_data(&dom, "events").as_deref(), Some("12"), "{dom}");
    assert_eq!(body_data(&dom, "arrows").as_deref(), Some("6"));
    // An exclusion hides them all.
    let dom = dump_dom(&browser, &format!("{url}#filter=-mir.TestUint64"), &dir).unwrap();
    assert_eq!(body_data(&dom, "arrows").as_deref(), Some("0"));
    std::fs::remove_dir_all(&dir).unwrap();
}
