//! Four node processes over loopback from a membership file and freshly generated keys (what
//! `mir keygen` writes): every one delivers the leader's message (the way to run on several
//! machines). The public demo keys are refused unless asked for.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::NodeId;

#[test]
fn four_processes_deliver_the_leaders_message() {
    let dir = std::env::temp_dir().join(format!("mir-bcb-processes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let keys = dir.join("keys");
    let ports = examples::bcb::free_ports(4).unwrap();
    let nodes = (0..4)
        .map(|i| {
            let id = NodeId::from_index(i);
            let k = NodeKeys::generate().unwrap();
            k.write(&keys, &id).unwrap();
            k.member(id, ([127, 0, 0, 1], ports[i]).into(), 1)
        })
        .collect();
    let membership = dir.join("membership.toml");
    std::fs::write(&membership, Membership { nodes }.to_toml()).unwrap();
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
                "--keys",
                keys.to_str().unwrap(),
                "--exit-after",
                "1",
            ]);
            if i == 0 {
                cmd.args(["--message", "across processes"]);
            }
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
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
        assert!(out.status.success(), "node {i} failed: {}", String::from_utf8_lossy(&out.stderr));
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
        "[[node]]\nid = \"0\"\naddress = \"nowhere\"\npublic_key = \"00\"\ntransport_key = \"00\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bcb"))
        .args(["node", "--id", "0", "--membership", file.to_str().unwrap()])
        .arg("--insecure-test-keys")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("address \"nowhere\" is not an IP address and port"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `bcb node --id 0 --membership <demo membership> <args>`; its standard error.
fn node_error(args: &[&str]) -> String {
    let dir =
        std::env::temp_dir().join(format!("mir-bcb-keys-{}-{}", std::process::id(), args.len()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("m.toml");
    let ports = examples::bcb::free_ports(4).unwrap();
    std::fs::write(
        &file,
        examples::bcb::membership_toml_with_ports("127.0.0.1", &ports, 42).unwrap(),
    )
    .unwrap();
    // The demo keys copied into a key directory.
    let keys = dir.join("keys");
    NodeKeys::test(42, &NodeId::from_index(0)).write(&keys, &NodeId::from_index(0)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bcb"));
    cmd.args(["node", "--id", "0", "--membership", file.to_str().unwrap()]);
    for a in args {
        cmd.arg(a.replace("KEYS", keys.to_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_public_demo_keys_are_refused_unless_asked_for() {
    let no_keys = node_error(&[]);
    assert!(no_keys.contains("--keys"), "{no_keys}");
    let demo = node_error(&["--keys", "KEYS"]);
    assert!(demo.contains("are the public demo keys of node 0"), "{demo}");
    assert!(demo.contains("--insecure-test-keys"), "{demo}");
}
