//! What clients and operators hand a node, and the protocols' peer messages: transactions,
//! certificates (`Cert::from_bytes`), BCB and availability messages. Decoded values re-encode to
//! the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mir_dsl::mir_runtime::codec;
use mir_dsl::mir_runtime::EventPayload;
use protocols::availability::mempool::NewTransactions;
use protocols::availability::msc::{ProvideBatchMessage, RequestSigMessage};
use protocols::availability::{Cert, Tx};
use protocols::bcb::{Echo, Final};

fn strict<T: EventPayload + serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = codec::decode::<T>(T::NAME, data) {
        assert_eq!(codec::encode(&v), data, "{}", T::NAME);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Cert::from_bytes(data) {
        assert_eq!(c.to_bytes(), data);
    }
    strict::<Tx>(data);
    strict::<NewTransactions>(data);
    strict::<Echo>(data);
    strict::<Final>(data);
    strict::<RequestSigMessage>(data);
    strict::<ProvideBatchMessage>(data);
});
