//! Helpers for testing modules directly, without a node.

use crate::event::Event;
use crate::id::ModuleId;
use crate::module::{Batch, Cursor, ModuleError, Outbox, PassiveModule};

/// Calls `module` once with `events` as one batch, as module `me`, and returns what it emitted.
///
/// ```
/// use mir_runtime::{testing::apply, stdmodules::NullModule, Event, ModuleId, stdevents::TestString};
/// let out = apply(&mut NullModule, ModuleId::new("null"), vec![Event::new("a", "null", TestString("x".into()))]);
/// assert!(out.unwrap().is_empty());
/// ```
pub fn apply(
    module: &mut dyn PassiveModule,
    me: ModuleId,
    mut events: Vec<Event>,
) -> Result<Vec<Event>, ModuleError> {
    let mut cursor = Cursor::default();
    let mut out = Outbox::new(me);
    module.apply_events(Batch::new(&mut events, &mut cursor), &mut out)?;
    Ok(out.take())
}

/// Headless Chromium for tests of web pages (the trace viewer). Tests never install anything:
/// without a browser on the `PATH` a test skips its browser part, unless `MIR_REQUIRE_BROWSER=1`
/// (set by `.ci/run`, which installs one), which makes a missing browser a failure.
pub mod browser {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// The names looked for on the `PATH` (`.ci/run` checks the same ones).
    pub const BROWSERS: [&str; 4] =
        ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

    /// The first of [`BROWSERS`] on the `PATH`, looked up directly (no `which`, which a minimal
    /// image may lack). `None`: skip the browser part, after [`skip`].
    pub fn chromium() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        BROWSERS.iter().find_map(|name| {
            std::env::split_paths(&path).map(|dir| dir.join(name)).find(|c| c.is_file())
        })
    }

    /// Says the browser part is skipped; panics instead if `MIR_REQUIRE_BROWSER=1`.
    pub fn skip(what: &str) {
        let required = std::env::var("MIR_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "MIR_REQUIRE_BROWSER=1 but none of {BROWSERS:?} is on the PATH");
        eprintln!("SKIPPED {what}: none of {BROWSERS:?} is on the PATH (MIR_REQUIRE_BROWSER=1 makes this a failure)");
    }

    /// Loads `url` in headless `browser` (profile under `scratch`), lets its scripts run for up to
    /// 3 s of virtual time, and returns the resulting DOM as HTML.
    pub fn dump_dom(browser: &Path, url: &str, scratch: &Path) -> std::io::Result<String> {
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
                "--window-size=1400,800",
                &format!("--user-data-dir={}", scratch.join("profile").display()),
                "--dump-dom",
                url,
            ])
            .output()?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.is_empty() {
            return Err(std::io::Error::other(format!(
                "the browser printed no page: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(dom)
    }

    /// The value of attribute `data-NAME` of the page's `<body>` in `dom` (what the viewer
    /// reports: `events`, `arrows`, `labels`, `kinds`, `ticks`, `first-tick`, `rendered`,
    /// `error`).
    pub fn body_data(dom: &str, name: &str) -> Option<String> {
        let body = &dom[dom.find("<body")?..];
        let body = &body[..body.find('>')?];
        let key = format!("data-{name}=\"");
        let start = body.find(&key)? + key.len();
        Some(body[start..][..body[start..].find('"')?].to_owned())
    }
}
