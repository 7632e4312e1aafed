//! Runs every command of the README's debugging section, as written there (with temporary paths
//! for `/tmp/bcb-log` and `/tmp/trace.html`), and checks what each prints. A command added to the
//! section without a check here fails the test. Also: their output can be cut short (`| head`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `cargo run -p examples --bin NAME -- ARGS` lines of the README's debugging section.
fn commands() -> Vec<(String, Vec<String>)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("## Debugging").expect("a debugging section")..];
    let block = &section[section.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(&words[..5], ["cargo", "run", "-p", "examples", "--bin"], "{l}");
            assert_eq!(words[6], "--", "{l}");
            (words[5].to_owned(), words[7..].iter().map(|w| w.to_string()).collect())
        })
        .collect()
}

fn exe(bin: &str) -> &'static str {
    match bin {
        "bcb" => env!("CARGO_BIN_EXE_bcb"),
        "pingpong" => env!("CARGO_BIN_EXE_pingpong"),
        "iss" => env!("CARGO_BIN_EXE_iss"),
        other => panic!("the README runs --bin {other}: add it here"),
    }
}

#[test]
fn every_command_of_the_readme_debugging_section_works() {
    let tmp = std::env::temp_dir().join(format!("mir-debugging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let (log, html): (PathBuf, PathBuf) = (tmp.join("bcb-log"), tmp.join("trace.html"));
    let (iss_log, iss_html) = (tmp.join("iss-log"), tmp.join("iss-trace.html"));
    let cmds = commands();
    assert!(cmds.len() >= 8, "{cmds:?}");
    for (bin, args) in cmds {
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.as_str() {
                "/tmp/bcb-log" => log.display().to_string(),
                "/tmp/trace.html" => html.display().to_string(),
                "/tmp/iss-log" => iss_log.display().to_string(),
                "/tmp/iss-trace.html" => iss_html.display().to_string(),
                _ => a.clone(),
            })
            .collect();
        let out = Command::new(exe(&bin)).args(&args).stdin(Stdio::null()).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let shown = format!("{bin} {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}", args.join(" "));
        assert!(out.status.success(), "{shown}");
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let lines: Vec<&str> = stdout.lines().collect();
        match (bin.as_str(), args.first().map(String::as_str)) {
            ("bcb", Some("--record")) => {
                assert_eq!(stdout.matches("delivered #0").count(), 4, "{shown}");
                assert!(log.join("2").is_dir(), "{shown}");
            }
            ("bcb", Some("cat")) if has("--event") => {
                // The inner message type is matched, and its fields are shown decoded.
                assert!(!lines.is_empty(), "{shown}");
                assert!(
                    lines.iter().all(|l| l.contains("node 1") && l.contains("Final { data: [")),
                    "{shown}"
                );
                assert!(
                    lines.iter().all(|l| l.contains("signers: [") && l.contains("signatures: [[")),
                    "{shown}"
                );
            }
            ("bcb", Some("cat")) if has("--stats") => {
                assert!(
                    stdout.contains("bcb.Deliver")
                        && stdout.contains("mir.MessageReceived bcb.Final"),
                    "{shown}"
                );
            }
            ("bcb", Some("cat")) if has("--html") => {
                let page = std::fs::read_to_string(&html).unwrap();
                assert!(
                    page.contains("<html") && page.contains("Final { data: ["),
                    "the page shows messages decoded"
                );
                assert!(
                    stdout.contains("Deliver { instance: ["),
                    "events are printed decoded too: {shown}"
                );
            }
            ("bcb", Some("replay")) => {
                let steps = lines.iter().filter(|l| l.starts_with("step ")).count();
                if args.last().is_some_and(|a| a == "--step") {
                    // Waiting for Enter: standard input is closed, so it runs to the end.
                    assert!(steps > 3, "{shown}");
                    assert!(stderr.contains("[Enter: next batch]"), "{shown}");
                } else {
                    assert_eq!(steps, 3, "--step 3 shows three batches: {shown}");
                }
                assert!(
                    stdout.contains("  in   mir.MessageReceived")
                        && stdout.contains("Send { data: ["),
                    "{shown}"
                );
                assert!(stdout.contains("  out  mir.crypto.SignRequest"), "{shown}");
                assert!(
                    lines.last().unwrap().contains("emitted events match the recording"),
                    "{shown}"
                );
            }
            ("bcb", Some("sim")) if has("--check") => {
                assert!(stdout.contains("two runs identical"), "{shown}")
            }
            ("bcb", Some("sim")) => {
                assert_eq!(
                    stdout.matches("delivered #").count(),
                    12,
                    "3 messages, 4 nodes: {shown}"
                );
                assert!(stdout.contains("digest "), "{shown}");
            }
            ("iss", Some("--txs")) => {
                assert!(stdout.contains("live nodes delivered the same log"), "{shown}");
                assert!(iss_log.join("3").is_dir(), "{shown}");
            }
            ("iss", Some("cat")) if has("--sn") => {
                assert!(!lines.is_empty(), "{shown}");
                assert!(
                    lines.iter().all(|l| l.contains("node 1") && l.contains("sn: 5")),
                    "{shown}"
                );
            }
            ("iss", Some("cat")) if has("--epoch") => {
                assert!(stdout.contains("events") && stdout.contains("by type:"), "{shown}");
                assert!(
                    !stdout.contains("ordering/0."),
                    "epoch 0's instances are left out: {shown}"
                );
            }
            ("iss", Some("cat")) if has("--instance") => {
                assert!(!lines.is_empty(), "{shown}");
                assert!(
                    lines.iter().all(|l| l.contains("ordering/0.1") && l.contains("Prepare {")),
                    "{shown}"
                );
            }
            ("iss", Some("cat")) if has("--html") => {
                let page = std::fs::read_to_string(&iss_html).unwrap();
                assert!(page.contains("Preprepare {"), "the page shows messages decoded");
                check_iss_page(&iss_html, &tmp);
            }
            ("iss", Some("replay")) => {
                let steps = lines.iter().filter(|l| l.starts_with("step ")).count();
                assert_eq!(steps, 3, "--step 3 shows three batches: {shown}");
                assert!(
                    lines.last().unwrap().contains("emitted events match the recording"),
                    "{shown}"
                );
            }
            ("iss", Some("sim")) if has("--check") => {
                assert!(stdout.contains("two runs identical"), "{shown}")
            }
            ("pingpong", Some("sim")) if has("--check") => {
                assert!(stdout.contains("two runs identical"), "{shown}")
            }
            _ => panic!("no check for this README command; add one: {shown}"),
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The viewer on a recorded ISS run, in headless Chromium: it draws without script errors, with
/// a time axis in units, a legend, labelled arrows; the module-prefix filter from the address
/// keeps epoch 1's PBFT instances only, both ends of their messages.
fn check_iss_page(page: &std::path::Path, scratch: &std::path::Path) {
    use mir_dsl::mir_runtime::testing::browser::{body_data, chromium, dump_dom, skip};
    let Some(browser) = chromium() else {
        skip("the ISS viewer check");
        return;
    };
    let url = format!("file://{}", page.display());
    let num = |dom: &str, name: &str| -> usize {
        body_data(dom, name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}"))
    };
    let all = dump_dom(&browser, &url, scratch).unwrap();
    assert_eq!(body_data(&all, "rendered").as_deref(), Some("yes"));
    assert_eq!(body_data(&all, "error"), None, "script error");
    assert!(num(&all, "events") > 1000, "a run of a few thousand events");
    assert!(num(&all, "kinds") > 10 && num(&all, "ticks") > 2);
    let tick = body_data(&all, "first-tick").unwrap();
    assert!(tick.ends_with(" ms") || tick.ends_with(" s"), "{tick}");
    let epoch1 = dump_dom(&browser, &format!("{url}#filter=ordering/1.&zoom=4"), scratch).unwrap();
    let (events, arrows) = (num(&epoch1, "events"), num(&epoch1, "arrows"));
    assert!(events > 0 && events < num(&all, "events") / 2, "{events}");
    // The instances' messages are drawn (both ends pass the filter).
    assert!(arrows > 0, "{arrows} arrows, {events} events");
    // One instance (one sn with segments of 1): few enough arrows to label each.
    let one = dump_dom(&browser, &format!("{url}#filter=ordering/1.0"), scratch).unwrap();
    let arrows = num(&one, "arrows");
    assert!(arrows > 0 && arrows <= 150, "{arrows}");
    assert_eq!(num(&one, "labels"), arrows);
}

/// `bcb sim … | head`: when the reader of the output goes, the program ends quietly (no panic),
/// as `bcb cat` (mircat) does.
#[test]
fn a_closed_output_ends_bcb_quietly() {
    let mut child = Command::new(exe("bcb"))
        .args(["sim", "--seed", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before bcb writes anything
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
