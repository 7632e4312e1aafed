//! Transport frames: what a peer sends on a gRPC stream (`PeerMessage`), then the message inside
//! as the node would decode it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mir_runtime::stdevents::MessageReceived;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = mir_runtime::transport::grpc::PeerMessage::decode_message(data) {
        let _ = m.payload.decode::<MessageReceived>();
        let _ = m.payload.decode::<protocols::bcb::Final>();
    }
});
