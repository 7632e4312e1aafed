//! The client service on the wire: the messages of `protocols/proto/smr_client.proto`, derived
//! with prost (no protoc needed; a test checks the file against them), and a protobuf codec for
//! tonic.
//!
//! Paths: `/mir.smr.Client/Submit` (unary) and `/mir.smr.Client/Deliveries` (server stream).

use std::marker::PhantomData;

use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The service's name.
pub const SERVICE: &str = "mir.smr.Client";
/// The path of `Submit`.
pub const SUBMIT: &str = "/mir.smr.Client/Submit";
/// The path of `Deliveries`.
pub const DELIVERIES: &str = "/mir.smr.Client/Deliveries";

/// `SubmitRequest`: one transaction.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SubmitRequest {
    /// The client.
    #[prost(string, tag = "1")]
    pub client_id: String,
    /// The client's number for it (0, 1, 2, …).
    #[prost(uint64, tag = "2")]
    pub tx_no: u64,
    /// The payload.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// A signing client's signature (`smr::signed`), or empty.
    #[prost(bytes = "vec", tag = "4")]
    pub signature: Vec<u8>,
}

/// `SubmitReply`: a receipt or a rejection.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SubmitReply {
    /// Which.
    #[prost(oneof = "Outcome", tags = "1, 2")]
    pub outcome: Option<Outcome>,
}

/// The outcome of a submission.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum Outcome {
    /// Ordered.
    #[prost(message, tag = "1")]
    Receipt(Receipt),
    /// Refused.
    #[prost(message, tag = "2")]
    Rejection(Rejection),
}

/// `Receipt`: where a transaction was ordered and what it returned.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Receipt {
    /// The batch's sequence number.
    #[prost(uint64, tag = "1")]
    pub sn: u64,
    /// The index in the batch.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// What the application returned.
    #[prost(bytes = "vec", tag = "3")]
    pub result: Vec<u8>,
    /// Learned through a state transfer: ordered, but position and result unknown here.
    #[prost(bool, tag = "4")]
    pub restored: bool,
}

/// `Rejection`: why a transaction was refused.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Rejection {
    /// The reason (a [`Reason`]).
    #[prost(enumeration = "Reason", tag = "1")]
    pub reason: i32,
    /// In words.
    #[prost(string, tag = "2")]
    pub detail: String,
}

/// `Rejection.Reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Reason {
    /// Not known (a newer server's reason).
    Unknown = 0,
    /// Outside the client's window.
    OutsideWindow = 1,
    /// Too large.
    TooLarge = 2,
    /// Delivered already, or waiting here already.
    Duplicate = 3,
    /// This node holds as many transactions as it may.
    MempoolFull = 4,
    /// A bad request.
    Invalid = 5,
}

/// `DeliveriesRequest`: follow the log from `from_sn`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeliveriesRequest {
    /// The first sequence number wanted.
    #[prost(uint64, tag = "1")]
    pub from_sn: u64,
}

/// `Delivery`: one batch of the log.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Delivery {
    /// Its sequence number.
    #[prost(uint64, tag = "1")]
    pub sn: u64,
    /// Its transactions, in order.
    #[prost(message, repeated, tag = "2")]
    pub txs: Vec<DeliveredTx>,
}

/// `DeliveredTx`: one transaction of a [`Delivery`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DeliveredTx {
    /// The client.
    #[prost(string, tag = "1")]
    pub client_id: String,
    /// The client's number for it.
    #[prost(uint64, tag = "2")]
    pub tx_no: u64,
    /// The payload.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// What the application returned.
    #[prost(bytes = "vec", tag = "4")]
    pub result: Vec<u8>,
}

impl SubmitReply {
    /// A receipt.
    pub fn receipt(sn: u64, index: u32, result: Vec<u8>) -> Self {
        SubmitReply {
            outcome: Some(Outcome::Receipt(Receipt { sn, index, result, restored: false })),
        }
    }

    /// A rejection.
    pub fn rejection(reason: Reason, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        SubmitReply {
            outcome: Some(Outcome::Rejection(Rejection { reason: reason as i32, detail })),
        }
    }
}

/// A protobuf codec for tonic: encodes `E`, decodes `D`.
pub struct ProstCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for ProstCodec<E, D> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<E, D> Codec for ProstCodec<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstEncoder<E>;
    type Decoder = ProstDecoder<D>;
    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// The encoder of [`ProstCodec`].
pub struct ProstEncoder<E>(PhantomData<fn(E)>);

impl<E: prost::Message> Encoder for ProstEncoder<E> {
    type Item = E;
    type Error = Status;
    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

/// The decoder of [`ProstCodec`].
pub struct ProstDecoder<D>(PhantomData<fn() -> D>);

impl<D: prost::Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode(src).map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The `.proto` file describes exactly the messages derived here.
    #[test]
    fn the_proto_file_matches_the_rust_types() {
        let proto = include_str!("../../proto/smr_client.proto");
        let code: Vec<&str> = proto.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
        let code = code.join("\n");
        let flat: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        for line in [
            "package mir.smr;",
            "service Client {",
            "rpc Submit(SubmitRequest) returns (SubmitReply);",
            "rpc Deliveries(DeliveriesRequest) returns (stream Delivery);",
            "message SubmitRequest { string client_id = 1; uint64 tx_no = 2; bytes payload = 3; bytes signature = 4; }",
            "message SubmitReply { oneof outcome { Receipt receipt = 1; Rejection rejection = 2; } }",
            "message Receipt { uint64 sn = 1; uint32 index = 2; bytes result = 3; bool restored = 4; }",
            "message Rejection { enum Reason { UNKNOWN = 0; OUTSIDE_WINDOW = 1; TOO_LARGE = 2; DUPLICATE = 3; MEMPOOL_FULL = 4; INVALID = 5; } Reason reason = 1; string detail = 2; }",
            "message DeliveriesRequest { uint64 from_sn = 1; }",
            "message Delivery { uint64 sn = 1; repeated DeliveredTx txs = 2; }",
            "message DeliveredTx { string client_id = 1; uint64 tx_no = 2; bytes payload = 3; bytes result = 4; }",
        ] {
            assert!(flat.contains(line), "the .proto lacks {line:?}");
        }
        assert_eq!(SUBMIT, format!("/{SERVICE}/Submit"));
        assert_eq!(DELIVERIES, format!("/{SERVICE}/Deliveries"));
        // Field numbers and wire types: a hand-written encoding decodes as expected.
        let bytes = [
            0x0a, 1, b'c', // 1: "c"
            0x10, 7, // 2: 7
            0x1a, 2, b'h', b'i', // 3: "hi"
        ];
        let m = SubmitRequest::decode(&bytes[..]).unwrap();
        assert_eq!((m.client_id.as_str(), m.tx_no, m.payload.as_slice()), ("c", 7, &b"hi"[..]));
        let reply = SubmitReply::rejection(Reason::MempoolFull, "full");
        let bytes = reply.encode_to_vec();
        assert_eq!(&bytes[..4], [0x12, 8, 0x08, 4], "rejection = 2, reason = 1: MEMPOOL_FULL");
    }
}
