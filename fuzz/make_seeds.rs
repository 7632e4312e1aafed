//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`: valid inputs of
//! each kind, so the fuzzers start from the shapes that reach deep code.

use std::io::Write;
use std::path::Path;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::stdevents::{Message, MessageReceived, TestString, TestUint64};
use mir_runtime::transport::grpc::PeerMessage;
use mir_runtime::{codec, Event, NodeId};
use prost::Message as _;
use protocols::availability::mempool::NewTransactions;
use protocols::availability::{BatchCert, Cert, Tx};
use protocols::bcb::{Echo, Final};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let final_msg = Final {
        data: b"m".to_vec(),
        signers: vec!["0".into(), "1".into(), "2".into()],
        signatures: vec![vec![1; 64], vec![2; 64], vec![3; 64]],
    };
    let messages = [
        Message::new("app", TestUint64(7)),
        Message::new("bcb/1", final_msg.clone()),
        Message::new(
            "bcb/1",
            Echo {
                signature: vec![9; 64],
            },
        ),
    ];
    for (i, m) in messages.iter().enumerate() {
        write(
            "frame",
            &format!("msg{i}"),
            &PeerMessage::from_message(m).encode_to_vec(),
        );
        write("event", &format!("msg{i}"), &codec::encode(m));
        let ev = Event::new(
            "net",
            m.dest_module.clone(),
            MessageReceived {
                from: NodeId::new("3"),
                message: m.clone(),
            },
        );
        write("event", &format!("event{i}"), &ev.encode());
    }
    write(
        "event",
        "string",
        &Event::new("a", "b", TestString("x".into())).encode(),
    );

    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let nodes = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            NodeKeys::test(1, id).member(id.clone(), ([127, 0, 0, 1], 7000 + i as u16).into(), 1)
        })
        .collect();
    let m = Membership { nodes };
    write("membership", "four.toml", m.to_toml().as_bytes());
    let json = format!(
        "{{\"node\": [{{\"id\": \"x\", \"address\": \"[::1]:9\", \"public_key\": \"{}\", \"transport_key\": \"{}\", \"weight\": \"100000000000000000000\"}}]}}",
        m.to_toml().lines().find(|l| l.starts_with("public_key")).unwrap().split('"').nth(1).unwrap(),
        m.to_toml().lines().find(|l| l.starts_with("transport_key")).unwrap().split('"').nth(1).unwrap(),
    );
    write("membership", "one.json", json.as_bytes());

    // An event log: length-prefixed entries, gzip-compressed, as the recorder writes them.
    let mut raw = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let entry = mir_runtime::eventlog::Entry {
            node: NodeId::new("0"),
            module: m.dest_module.clone(),
            time_ns: 1000 * i as u64,
            index: i as u64,
            events: vec![Event::new(
                "net",
                m.dest_module.clone(),
                TestUint64(i as u64),
            )],
        };
        let e = codec::encode(&entry);
        raw.extend_from_slice(&(e.len() as u32).to_le_bytes());
        raw.extend_from_slice(&e);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    write("eventlog", "three.gz", &gz.finish().unwrap());

    let cert = Cert {
        batches: vec![BatchCert {
 buckets: None,
            batch_id: vec![1; 32],
            signers: vec!["0".into(), "1".into()],
            signatures: vec![vec![2; 64], vec![3; 64]],
        }],
    };
    write("client", "cert", &cert.to_bytes());
    write("client", "empty-cert", &Cert::default().to_bytes());
    let txs = vec![
        Tx::new("alice", 0, "pay bob 5"),
        Tx::new("bob", 3, vec![0u8; 40]),
    ];
    write("client", "tx", &codec::encode(&txs[0]));
    write("client", "txs", &codec::encode(&NewTransactions { txs }));
    write("client", "final", &codec::encode(&final_msg));
    println!("seeds written to {}/seeds", env!("CARGO_MANIFEST_DIR"));
}
