//! The key-value store example (`kv`): the demo in one process, and four `kv node` processes
//! with the command-line client (one command, commands from stdin, following the log).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kv");

#[test]
fn the_demo_puts_gets_and_follows() {
    let out = Command::new(BIN).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["alice: get color", ": +blue", "alice: get shape", ": -", "the log, as node 3"] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn client(addrs: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["client", "--nodes", addrs, "--id", &format!("cli-{}", std::process::id())]);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kv client {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn node_processes_serve_the_command_line_client() {
    let dir = std::env::temp_dir().join(format!("mir-kv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = examples::cluster::free_ports(8).unwrap();
    let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports[..4], 42).unwrap();
    std::fs::write(dir.join("kv.toml"), toml).unwrap();
    let clients: Vec<String> = ports[4..].iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let nodes = Nodes(
        (0..4)
            .map(|i| {
                Command::new(BIN)
                    .args(["node", "--id", &i.to_string(), "--membership"])
                    .arg(dir.join("kv.toml"))
                    .args(["--insecure-test-keys", "--clients", &clients[i]])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    // The client tries the nodes in turn until one answers (they may still be starting).
    let addrs = clients.join(",");
    let deadline = Instant::now() + Duration::from_secs(60);
    let put = loop {
        let out = Command::new(BIN)
            .args([
                "client", "--nodes", &addrs, "--id", "probe", "--tx-no", "0", "put", "color",
                "blue",
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(put.starts_with("sn ") && put.trim_end().ends_with(": -"), "{put}");
    let got = client(&addrs, &["--tx-no", "0", "get", "color"], None);
    assert!(got.trim_end().ends_with(": +blue"), "{got}");
    // Commands from stdin, numbered on from 1.
    let lines = client(&addrs, &["--tx-no", "1"], Some("put shape circle\nget shape\ndel shape\n"));
    let results: Vec<&str> = lines.lines().map(|l| l.rsplit(": ").next().unwrap()).collect();
    assert_eq!(results, ["-", "+circle", "+circle"], "{lines}");
    // The log, from a node of the client's choosing.
    let log = client(&addrs, &["follow", "--from", "0", "--count", "5"], None);
    assert!(log.contains("probe #0: put color blue -> -"), "{log}");
    assert!(log.contains("get shape -> +circle"), "{log}");
    drop(nodes);
    std::fs::remove_dir_all(&dir).unwrap();
}
