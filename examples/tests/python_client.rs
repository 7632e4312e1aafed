//! A client in another language, from the `.proto` alone (issue 17): Python stubs generated from
//! `protocols/proto/smr_client.proto` with grpcio-tools submit key-value commands to a four-node
//! cluster built with `System::builder`, get receipts, follow the log and get a rejection.
//!
//! Skipped when `python3` is absent. When Python is there but `grpcio-tools` is not, it is
//! skipped too (the test never installs anything), loudly, unless `MIR_REQUIRE_PYTHON_GRPC=1`:
//! `.ci/run` installs grpcio-tools and sets it, so in CI a missing package fails the test.

use std::process::Command;
use std::time::Duration;

use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::membership::Membership;
use protocols::smr::kv::KvStore;
use protocols::smr::system::System;

fn python() -> Option<&'static str> {
    ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
}

#[test]
fn a_python_client_generated_from_the_proto_file_works() {
    let Some(py) = python() else {
        println!("SKIPPED: no python3 on the PATH");
        return;
    };
    let has_grpc = Command::new(py)
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_grpc {
        let why = "python3 lacks grpcio-tools (pip install grpcio-tools)";
        assert!(std::env::var("MIR_REQUIRE_PYTHON_GRPC").is_err(), "{why}");
        println!("SKIPPED: {why}");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stubs = std::env::temp_dir().join(format!("mir-py-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&stubs).unwrap();
    let out = Command::new(py)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("protocols/proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg("smr_client.proto")
        .output()
        .unwrap();
    assert!(out.status.success(), "protoc: {}", String::from_utf8_lossy(&out.stderr));

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ports = examples::cluster::free_ports(4).unwrap();
        let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports, 42).unwrap();
        let membership = Membership::from_toml_str(&toml, "generated").unwrap();
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for id in membership.ids() {
            let built = System::builder(id.clone(), membership.clone(), NodeKeys::test(42, &id))
                .clients("127.0.0.1:0".parse().unwrap())
                .build(KvStore::default())
                .unwrap();
            addrs.push(built.clients().unwrap().local_addr().to_string());
            nodes.push(built.start());
        }
        for n in &nodes {
            assert!(n.wait_connected(Duration::from_secs(30)).await);
        }
        let script = root.join("examples/tests/python/smr_client.py");
        let out = tokio::process::Command::new(py)
            .arg(&script)
            .arg(&stubs)
            .args(&addrs)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for want in [
            "receipt 0: sn",
            "result -",
            "receipt 1: sn",
            "result +python",
            "receipt 2: sn",
            "delivered sn",
            "py #1 get lang -> +python",
            "far number: OUTSIDE_WINDOW",
        ] {
            assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
        }
        for n in nodes {
            n.stop().await.unwrap();
        }
    });
    std::fs::remove_dir_all(&stubs).unwrap();
}
