//! The chat demo (`chat`), as processes: four nodes print the same ordered chat from lines typed
//! at each; `/add-node 4` and a fifth process started with `--join` take it in; a node killed
//! and started again resumes from its write-ahead log; `/remove-node 1` makes node 1 say it
//! left and exit. Every node prints each line at the same log position.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chat");

/// One chat process: its input, and every line it printed so far (all incarnations).
struct Proc {
    child: Option<Child>,
    input: Option<ChildStdin>,
    out: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Chat {
    dir: std::path::PathBuf,
    ports: String,
    procs: BTreeMap<usize, Proc>,
}

impl Chat {
    fn start(&mut self, id: usize, extra: &[&str]) {
        let out = self.procs.remove(&id).map(|mut p| {
            if let Some(c) = &mut p.child {
                let _ = c.kill();
                let _ = c.wait();
            }
            p.child = None;
            p.out.clone()
        });
        let out = out.unwrap_or_default();
        let mut child = Command::new(BIN)
            .args(["--id", &id.to_string(), "--ports", &self.ports, "--data"])
            .arg(self.dir.join(format!("node-{id}")))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().unwrap().push(line);
            }
        });
        self.procs.insert(id, Proc { child: Some(child), input, out });
    }

    fn say(&mut self, id: usize, line: &str) {
        let p = self.procs.get_mut(&id).unwrap();
        writeln!(p.input.as_mut().unwrap(), "{line}").unwrap();
    }

    fn kill(&mut self, id: usize) {
        let p = self.procs.get_mut(&id).unwrap();
        let mut c = p.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        p.input = None;
    }

    /// Waits until every node in `at` printed a line ending with `text`.
    fn wait_for(&self, at: &[usize], text: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let missing: Vec<usize> = at
                .iter()
                .copied()
                .filter(|i| !self.procs[i].out.lock().unwrap().iter().any(|l| l.ends_with(text)))
                .collect();
            if missing.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let outs: Vec<String> = missing
                    .iter()
                    .map(|i| format!("node {i}:\n{}", self.procs[i].out.lock().unwrap().join("\n")))
                    .collect();
                panic!("{text:?} not printed by {missing:?}\n{}", outs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every line (the test's lines are all different) was printed at one log position by
    /// every node that printed it, incarnations included. Returns how many lines there were.
    fn check_one_chat(&self) -> usize {
        let mut position: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for (i, p) in &self.procs {
            for line in p.out.lock().unwrap().iter() {
                let Some((sn, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] "))
                else {
                    continue;
                };
                let sn: u64 = sn.parse().unwrap();
                if let Some((old, j)) = position.insert(rest.to_owned(), (sn, *i)) {
                    assert_eq!(old, sn, "{rest:?}: node {j} printed it at {old}, node {i} at {sn}");
                }
            }
        }
        position.len()
    }
}

#[test]
fn nodes_print_one_chat_through_joins_restarts_and_leaves() {
    let dir = std::env::temp_dir().join(format!("mir-chat-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = examples::cluster::free_ports(5).unwrap();
    let ports = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let mut chat = Chat { dir: dir.clone(), ports, procs: BTreeMap::new() };
    for i in 0..4 {
        chat.start(i, &[]);
    }
    for i in 0..4 {
        chat.say(i, &format!("hello from {i}"));
    }
    for i in 0..4 {
        chat.wait_for(&[0, 1, 2, 3], &format!("{i}: hello from {i}"));
    }

    // A fifth node joins.
    chat.start(4, &["--join"]);
    chat.say(2, "/add-node 4");
    chat.wait_for(&[0, 1, 2, 3], "2: /add-node 4 (done)");
    chat.say(4, "hi, I am new");
    chat.wait_for(&[0, 1, 2, 3, 4], "4: hi, I am new");
    chat.say(0, "welcome");
    chat.wait_for(&[0, 1, 2, 3, 4], "0: welcome");

    // Node 3 is killed and started again on its log.
    chat.kill(3);
    chat.say(1, "while 3 is down");
    chat.wait_for(&[0, 1, 2, 4], "1: while 3 is down");
    chat.start(3, &[]);
    chat.say(3, "3 is back");
    chat.wait_for(&[0, 1, 2, 3, 4], "3: 3 is back");

    // Node 1 is removed: it says so and exits; the others go on.
    chat.say(0, "/remove-node 1");
    chat.wait_for(&[1], "removed from the chat: stopping");
    let deadline = Instant::now() + Duration::from_secs(30);
    let p = chat.procs.get_mut(&1).unwrap();
    loop {
        if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
            assert!(status.success(), "node 1 exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "node 1 did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    chat.say(4, "bye 1");
    chat.wait_for(&[0, 2, 3, 4], "4: bye 1");
    assert!(chat.check_one_chat() >= 10);
    drop(chat);
    let _ = std::fs::remove_dir_all(&dir);
}
