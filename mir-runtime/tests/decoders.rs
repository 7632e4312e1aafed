//! Every decoder of outside bytes in the runtime, fed arbitrary input: transport frames, event
//! and message payloads, membership files, WAL files. Each returns a value or an error, never panics; what
//! decodes is canonical (it re-encodes to the same bytes). The fuzz targets under `fuzz/` run the
//! same decoders far longer (see the README).

use mir_runtime::codec;
use mir_runtime::membership::Membership;
use mir_runtime::stdevents::{Message, MessageReceived, TestString};
use mir_runtime::transport::grpc::PeerMessage;
use mir_runtime::{Event, NodeId};
use proptest::prelude::*;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// A valid encoded event with one byte changed, cut or extended: close to valid, where decoders
/// are most likely to go wrong.
fn near_valid_event() -> impl Strategy<Value = Vec<u8>> {
    let ev = Event::new(
        "net",
        "bcb/1",
        MessageReceived {
            from: NodeId::new("3"),
            message: Message::new("bcb/1", TestString("hello".into())),
        },
    )
    .encode();
    let n = ev.len();
    (0..n, any::<u8>(), 0..3u8).prop_map(move |(i, b, how)| {
        let mut e = ev.clone();
        match how {
            0 => e[i] = b,
            1 => e.truncate(i),
            _ => e.insert(i, b),
        }
        e
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// WAL files (read from disk after a crash): a scan returns records, a torn tail or an
    /// error, never panics; the records of a file made of the magic and arbitrary bytes are
    /// what re-encoding them gives back up to `valid_len`.
    #[test]
    fn wal_files(b in bytes(), magic in any::<bool>()) {
        use mir_runtime::wal::{encode_record, scan, MAGIC};
        let file = if magic { [MAGIC.as_slice(), &b].concat() } else { b };
        if let Ok(s) = scan(&file) {
            let mut again = if s.valid_len == 0 { Vec::new() } else { MAGIC.to_vec() };
            for r in &s.records {
                encode_record(r, &mut again).unwrap();
            }
            prop_assert_eq!(&again[..], &file[..s.valid_len]);
        }
    }

    #[test]
    fn transport_frames(b in bytes()) {
        if let Ok(m) = PeerMessage::decode_message(&b) {
            // What decodes is a valid module ID and a bounded type name.
            prop_assert!(m.payload.name().len() <= mir_runtime::transport::grpc::MAX_TYPE_NAME);
            prop_assert!(!m.dest_module.as_str().is_empty());
        }
    }

    #[test]
    fn events(b in prop_oneof![bytes(), near_valid_event()]) {
        if let Ok(ev) = Event::decode(&b) {
            prop_assert_eq!(ev.encode(), b, "one value, one encoding");
            // The payload inside decodes as its type or is an error.
            let _ = ev.payload.decode::<MessageReceived>();
        }
    }

    #[test]
    fn messages(b in bytes()) {
        if let Ok(m) = codec::decode::<Message>("mir.Message", &b) {
            prop_assert_eq!(codec::encode(&m), b);
        }
    }

    #[test]
    fn membership_files(text in "\\PC{0,400}") {
        let _ = Membership::from_toml_str(&text, "fuzz.toml");
        let _ = Membership::from_json_str(&text, "fuzz.json");
    }

    #[test]
    fn membership_files_near_valid(i in 0usize..300, c in any::<char>()) {
        let mut text = String::from("[[node]]\nid = \"0\"\naddress = \"127.0.0.1:7000\"\npublic_key = \"0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\"\ntransport_key = \"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"\nweight = 1\n");
        let mut at = i.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert(at, c);
        let _ = Membership::from_toml_str(&text, "fuzz.toml");
    }
}
