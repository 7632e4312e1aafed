//! Four ISS node processes over loopback from a membership file with demo keys (the way to run on
//! several machines): each one's client submits transactions to it, and every process delivers
//! all of them (10,000 transactions in all) and prints the same log digest.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn four_processes_deliver_the_same_log() {
    let dir = std::env::temp_dir().join(format!("mir-iss-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ports = examples::bcb::free_ports(4).unwrap();
    let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports, 42).unwrap();
    let membership = dir.join("membership.toml");
    std::fs::write(&membership, toml).unwrap();
    let bin = env!("CARGO_BIN_EXE_iss");
    let mut children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(bin)
                .args(["--quiet", "node", "--id", &i.to_string(), "--membership"])
                .arg(&membership)
                .args(["--insecure-test-keys", "--txs", "2500", "--exit-after", "10000"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if Instant::now() > deadline {
            for c in &mut children {
                let _ = c.kill();
            }
            panic!("the node processes did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut digests = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "node {i} failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("node {i} delivered 10000 transactions, log digest")))
            .unwrap_or_else(|| panic!("node {i} printed: {stdout}"));
        digests.push(line.rsplit(' ').next().unwrap().to_owned());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
