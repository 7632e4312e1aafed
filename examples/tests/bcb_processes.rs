//! Four node processes over loopback from a membership file: every one delivers the leader's
//! message (the way to run on several machines).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn four_processes_deliver_the_leaders_message() {
    let dir = std::env::temp_dir().join(format!("mir-bcb-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let membership = dir.join("membership.toml");
    std::fs::write(
        &membership,
        examples::bcb::membership_toml_with_ports(
            "127.0.0.1",
            &examples::bcb::free_ports(4).unwrap(),
            42,
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_bcb");
    let mut children: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = Command::new(bin);
            cmd.args([
                "node",
                "--id",
                &i.to_string(),
                "--membership",
                membership.to_str().unwrap(),
                "--exit-after",
                "1",
            ]);
            if i == 0 {
                cmd.args(["--message", "across processes"]);
            }
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        if Instant::now() > deadline {
            for c in &mut children {
                let _ = c.kill();
            }
            panic!("the node processes did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "node {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("node {i} delivered #0: across processes")),
            "node {i} printed: {stdout}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_membership_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("mir-bcb-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.toml");
    std::fs::write(
        &file,
        "[[node]]\nid = \"0\"\naddress = \"nowhere\"\npublic_key = \"00\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bcb"))
        .args(["node", "--id", "0", "--membership", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("address \"nowhere\" is not an IP address and port"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
