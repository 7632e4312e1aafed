//! The Rust client of the SMR system: submits transactions to the nodes' client service
//! ([`gateway`](super::gateway)), waits for their receipts, tries another node when one does not
//! answer, and follows the log.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use protocols::smr::client::SmrClient;
//! let nodes = vec!["127.0.0.1:7100".parse()?, "127.0.0.1:7101".parse()?];
//! let mut client = SmrClient::new("alice", nodes);
//! let receipt = client.submit(b"put color blue".to_vec()).await?;
//! println!("ordered at sn {} (index {}): {:?}", receipt.sn, receipt.index, receipt.result);
//! # Ok(()) }
//! ```
//!
//! **Numbers.** A client numbers its transactions 0, 1, 2, … ([`SmrClient::submit`] takes the
//! next one); the nodes take only numbers inside the client's window, so a client that restarts
//! goes on from its last number ([`SmrClient::starting_at`]), and resubmitting a number is safe: it
//! is ordered at most once, and a node that holds its receipt answers with it.
//!
//! **Retries.** A node that does not answer in time (40 s), is unreachable or full is left for
//! the next one, round robin, for at most [`SmrClient::attempts`] tries. A refusal that another
//! node would repeat (too large, outside the window, invalid) is returned at once, and the number
//! is not used up. After [`ClientError::Unavailable`] the transaction may still be ordered:
//! submit it again under its number.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::availability::Tx;

use super::service::{
    DeliveriesRequest, Delivery, Outcome, ProstCodec, Reason, Receipt, SubmitReply, SubmitRequest,
    DELIVERIES, SUBMIT,
};

/// The largest batch a follower takes (payloads and results).
pub const MAX_DELIVERY: usize = 256 << 20;

/// Why a submission failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A node refused it for a reason every node would give.
    #[error("rejected ({reason:?}): {detail}")]
    Rejected {
        /// The reason.
        reason: Reason,
        /// In words.
        detail: String,
    },
    /// No node answered with an outcome (the last problem given). Transaction `tx_no` may
    /// still be ordered: submit it again ([`SmrClient::submit_numbered`]), the same payload
    /// under the same number, or the client's window stops at it.
    #[error("no node answered after {attempts} attempts (transaction {tx_no}): {last}")]
    Unavailable {
        /// The transaction's number.
        tx_no: u64,
        /// Attempts made.
        attempts: usize,
        /// The last problem.
        last: String,
    },
    /// Every node answered that transaction `tx_no` is ordered, and none holds its receipt any
    /// more (it was ordered long ago, or while the nodes caught up by state transfer).
    #[error("transaction {tx_no} is ordered; no node holds its receipt any more")]
    OrderedWithoutReceipt {
        /// The transaction's number.
        tx_no: u64,
    },
}

/// A client of the SMR system.
pub struct SmrClient {
    id: String,
    nodes: Vec<SocketAddr>,
    channels: Vec<Option<Channel>>,
    current: usize,
    next_tx: u64,
    attempts: usize,
    connect_timeout: Duration,
    call_timeout: Duration,
    key: Option<k256::ecdsa::SigningKey>,
}

impl SmrClient {
    /// Client `id` of the nodes whose client services listen at `nodes` (it starts with the
    /// first; numbers from 0).
    pub fn new(id: impl Into<String>, nodes: Vec<SocketAddr>) -> Self {
        let channels = vec![None; nodes.len()];
        SmrClient {
            id: id.into(),
            nodes,
            channels,
            current: 0,
            next_tx: 0,
            attempts: 0,
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(40),
            key: None,
        }
        .attempts(0)
    }

    /// A signing client of `nodes`: its ID is its public key (`smr::signed::client_id`), and it
    /// signs every transaction with `key`, so that nobody else can submit in its name.
    pub fn signing(key: k256::ecdsa::SigningKey, nodes: Vec<SocketAddr>) -> Self {
        let id = super::signed::client_id(&key);
        let mut c = SmrClient::new(id, nodes);
        c.key = Some(key);
        c
    }

    /// This client's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Numbers the next transaction `tx_no` (a client that restarts goes on from its last).
    pub fn starting_at(mut self, tx_no: u64) -> Self {
        self.next_tx = tx_no;
        self
    }

    /// Tries at most `n` times per submission (0: three rounds over the nodes).
    pub fn attempts(mut self, n: usize) -> Self {
        self.attempts = if n == 0 { 3 * self.nodes.len().max(1) } else { n };
        self
    }

    /// Starts with node `i` (of the list given).
    pub fn prefer(mut self, i: usize) -> Self {
        self.current = i % self.nodes.len().max(1);
        self
    }

    /// The number the next [`SmrClient::submit`] uses.
    pub fn next_tx_no(&self) -> u64 {
        self.next_tx
    }

    /// Submits `payload` as the client's next transaction and waits for its receipt. The number
    /// is used up unless the transaction was refused (then it is not ordered, and the next
    /// submission takes the number again).
    pub async fn submit(&mut self, payload: Vec<u8>) -> Result<Receipt, ClientError> {
        let n = self.next_tx;
        let r = self.submit_numbered(n, payload).await;
        if !matches!(r, Err(ClientError::Rejected { .. })) {
            self.next_tx = n + 1;
        }
        r
    }

    /// Submits `payload` as transaction `tx_no` (again, after a failure: it is ordered at most
    /// once).
    pub async fn submit_numbered(
        &mut self,
        tx_no: u64,
        payload: Vec<u8>,
    ) -> Result<Receipt, ClientError> {
        let signature = match &self.key {
            Some(key) => {
                super::signed::sign(key, Tx::new(self.id.as_str(), tx_no, payload.clone()))
                    .signature
            }
            None => Vec::new(),
        };
        let req = SubmitRequest { client_id: self.id.clone(), tx_no, payload, signature };
        let mut last = String::from("no node");
        if self.nodes.is_empty() {
            return Err(ClientError::Unavailable {
                tx_no,
                attempts: 0,
                last: "no nodes given".into(),
            });
        }
        // The nodes that say it is ordered without holding its receipt.
        let mut ordered = std::collections::BTreeSet::new();
        for attempt in 0..self.attempts {
            if attempt > 0 && attempt % self.nodes.len().max(1) == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await; // a round failed
            }
            let i = self.current;
            match self.call(i, req.clone()).await {
                Ok(SubmitReply { outcome: Some(Outcome::Receipt(r)) }) if !r.restored => {
                    return Ok(r)
                }
                Ok(SubmitReply { outcome: Some(Outcome::Receipt(_)) }) => {
                    last = format!("node {i} has it ordered, without its receipt");
                    ordered.insert(i);
                }
                Ok(SubmitReply { outcome: Some(Outcome::Rejection(r)) }) => {
                    let reason = Reason::try_from(r.reason).unwrap_or(Reason::Unknown);
                    match reason {
                        Reason::MempoolFull | Reason::Unknown => {}
                        // Ordered, and this node no longer holds the receipt: another may.
                        Reason::Duplicate => {
                            ordered.insert(i);
                        }
                        _ => return Err(ClientError::Rejected { reason, detail: r.detail }),
                    }
                    last = format!("node {i}: {reason:?}: {}", r.detail);
                }
                Ok(SubmitReply { outcome: None }) => last = format!("node {i}: an empty answer"),
                // The node's gRPC layer refused the message itself (over its size limit, or
                // undecodable): every node would.
                Err(e) if e.code() == tonic::Code::OutOfRange => {
                    let detail = e.message().to_owned();
                    return Err(ClientError::Rejected { reason: Reason::TooLarge, detail });
                }
                Err(e) if e.code() == tonic::Code::InvalidArgument => {
                    let detail = e.message().to_owned();
                    return Err(ClientError::Rejected { reason: Reason::Invalid, detail });
                }
                Err(e) => {
                    last = format!("node {i}: {e}");
                    self.channels[i] = None;
                }
            }
            if ordered.len() == self.nodes.len() {
                return Err(ClientError::OrderedWithoutReceipt { tx_no });
            }
            self.current = (self.current + 1) % self.nodes.len();
        }
        Err(ClientError::Unavailable { tx_no, attempts: self.attempts, last })
    }

    /// Follows the log from `from_sn` at the current node (on an error, call it again with the
    /// next sn wanted: it resumes; `OUT_OF_RANGE` means that node no longer keeps those
    /// batches).
    pub async fn deliveries(&mut self, from_sn: u64) -> Result<Streaming<Delivery>, Status> {
        let i = self.current;
        let channel = self.channel(i).await?;
        // A batch holds up to a batch's payloads and their results: no 4 MiB default here.
        let mut grpc = Grpc::new(channel).max_decoding_message_size(MAX_DELIVERY);
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = ProstCodec::<DeliveriesRequest, Delivery>::default();
        let path = PathAndQuery::from_static(DELIVERIES);
        let resp = grpc.server_streaming(Request::new(DeliveriesRequest { from_sn }), path, codec);
        Ok(resp.await?.into_inner())
    }

    async fn channel(&mut self, i: usize) -> Result<Channel, Status> {
        if let Some(c) = &self.channels[i] {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", self.nodes[i]))
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .connect_timeout(self.connect_timeout);
        let c = endpoint.connect().await.map_err(|e| Status::unavailable(e.to_string()))?;
        self.channels[i] = Some(c.clone());
        Ok(c)
    }

    async fn call(&mut self, i: usize, req: SubmitRequest) -> Result<SubmitReply, Status> {
        let channel = self.channel(i).await?;
        let mut grpc = Grpc::new(channel);
        grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = ProstCodec::<SubmitRequest, SubmitReply>::default();
        let mut req = Request::new(req);
        // The node answers within its own deadline (30 s by default); a node that stops taking
        // input must not hold the client for ever.
        req.set_timeout(self.call_timeout);
        let path = PathAndQuery::from_static(SUBMIT);
        Ok(grpc.unary(req, path, codec).await?.into_inner())
    }
}
