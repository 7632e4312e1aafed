//! Every decoder of outside bytes in the protocols, fed arbitrary input: the peer messages of BCB
//! and the availability layer, and what clients and operators hand a node (transactions,
//! certificates pasted back with `Cert::from_bytes`). Each returns a value or an error, never
//! panics, and what decodes re-encodes to the same bytes. The fuzz targets under `fuzz/` run
//! them far longer (see the README).

use mir_dsl::mir_runtime::codec;
use mir_dsl::mir_runtime::EventPayload;
use proptest::prelude::*;
use protocols::availability::mempool::NewTransactions;
use protocols::availability::msc::{
    ProvideBatchMessage, RequestBatchMessage, RequestSigMessage, SigMessage,
};
use protocols::availability::{BatchCert, Cert, Tx};
use protocols::bcb::{Echo, Final};

/// Decodes `b` as `T` under its stable name; if it decodes, it re-encodes to `b`.
fn strict<T: EventPayload + serde::Serialize + serde::de::DeserializeOwned>(
    b: &[u8],
) -> Result<(), TestCaseError> {
    if let Ok(v) = codec::decode::<T>(T::NAME, b) {
        prop_assert_eq!(codec::encode(&v), b.to_vec(), "{}", T::NAME);
    }
    Ok(())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

/// A valid certificate's bytes with one byte changed, cut or extended.
fn near_valid_cert() -> impl Strategy<Value = Vec<u8>> {
    let c = Cert {
        batches: vec![BatchCert {
            buckets: None,
            batch_id: vec![1; 32],
            signers: vec!["0".into(), "1".into()],
            signatures: vec![vec![2; 64], vec![3; 64]],
        }],
    }
    .to_bytes();
    let n = c.len();
    (0..n, any::<u8>(), 0..3u8).prop_map(move |(i, b, how)| {
        let mut e = c.clone();
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

    #[test]
    fn peer_messages(b in bytes()) {
        strict::<protocols::bcb::Send>(&b)?;
        strict::<Echo>(&b)?;
        strict::<Final>(&b)?;
        strict::<RequestSigMessage>(&b)?;
        strict::<SigMessage>(&b)?;
        strict::<RequestBatchMessage>(&b)?;
        strict::<ProvideBatchMessage>(&b)?;
    }

    #[test]
    fn client_input(b in bytes()) {
        strict::<Tx>(&b)?;
        strict::<NewTransactions>(&b)?;
    }

    #[test]
    fn certificates(b in prop_oneof![bytes(), near_valid_cert()]) {
        if let Ok(c) = Cert::from_bytes(&b) {
            prop_assert_eq!(c.to_bytes(), b);
        }
    }
}
