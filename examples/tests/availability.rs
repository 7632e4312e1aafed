//! The availability demo end to end: 4 nodes over gRPC on loopback with k256 signatures; a
//! certificate is made on one node and the batch is read back from it on another.

use std::process::Command;

#[test]
fn the_demo_makes_a_certificate_and_reads_the_batch_back_on_another_node() {
    let out = Command::new(env!("CARGO_BIN_EXE_availability"))
        .args(["--txs", "7", "--create-on", "1", "--read-on", "2"])
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("node 1 made a certificate for batch"), "{stdout}");
    assert!(stdout.contains("node 2 read 7 transactions:"), "{stdout}");
    // A correct run ignores no input (late signatures for a complete certificate are expected).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("input ignored"), "{stderr}");
    for i in 0..7 {
        assert!(stdout.contains(&format!("demo-client #{i}: transaction {i}")), "{stdout}");
    }
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_availability"))
        .args(["--read-on", "9"])
        .output()
        .expect("the demo runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--read-on 9: there are only 4 nodes"), "{stderr}");
}
