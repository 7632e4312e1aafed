//! Events and messages in the canonical encoding (event logs, payloads inside frames): decoded
//! values re-encode to the same bytes (strict decoding).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mir_runtime::codec;
use mir_runtime::stdevents::Message;
use mir_runtime::Event;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = Event::decode(data) {
        assert_eq!(ev.encode(), data, "one value, one encoding");
    }
    if let Ok(m) = codec::decode::<Message>("mir.Message", data) {
        assert_eq!(codec::encode(&m), data);
    }
});
