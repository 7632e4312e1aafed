//! Helpers shared by the availability tests (`availability_*.rs`): a 4-node simulated cluster
//! with test crypto, the application that records what the layer tells it, and message helpers.
#![allow(dead_code, unused_imports)]

pub use std::collections::BTreeMap;
pub use std::sync::{Arc, Mutex};
pub use std::time::Duration;

pub use mir_dsl::mir_runtime::sim::{Fault, SimConfig, Simulation};
pub use mir_dsl::mir_runtime::stdevents::crypto::Origin;
pub use mir_dsl::mir_runtime::stdmodules::{TestCrypto, Timer};
pub use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
pub use mir_dsl::Weight;
pub use protocols::availability::batchfetcher::{DeliverCert, EpochStart, NewOrderedBatch};
pub use protocols::availability::mempool::{
    MempoolParams, NewBatch, NewEpoch, NewTransactions, RequestBatch, TransactionsRejected,
};
pub use protocols::availability::msc::{
    CertVerified, MscParams, NewCert, ProvideTransactions, RequestCert, RequestTransactions,
    VerifyCert,
};
pub use protocols::availability::{
    self, new_epoch_instance, BatchCert, Cert, ClientProgress, Config, Tx,
};

pub const SEED: u64 = 7;

pub fn nodes() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

pub fn membership() -> Vec<(NodeId, Weight)> {
    nodes().into_iter().map(|n| (n, 1)).collect()
}

/// What each node's application saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub certs: Vec<Cert>,
    pub verified: Vec<CertVerified>,
    pub provided: Vec<Vec<Tx>>,
    pub ordered: Vec<NewOrderedBatch>,
    pub rejected: Vec<TransactionsRejected>,
    pub batches: Vec<NewBatch>,
    pub epochs: Vec<u64>,
    /// Ordered batches and epochs as they came: "batch <sn>", "epoch <e>".
    pub order: Vec<String>,
}

pub type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The application: records everything the availability layer tells it.
pub struct App {
    pub me: NodeId,
    pub outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(c) = ev.get::<NewCert>() {
                seen.certs.push(c.cert.clone());
            } else if let Some(v) = ev.get::<CertVerified>() {
                seen.verified.push(v.clone());
            } else if let Some(p) = ev.get::<ProvideTransactions>() {
                seen.provided.push(p.txs.clone());
            } else if let Some(b) = ev.get::<NewOrderedBatch>() {
                seen.order.push(format!("batch {}", b.sn));
                seen.ordered.push(b.clone());
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                seen.rejected.push(r.clone());
            } else if let Some(b) = ev.get::<NewBatch>() {
                seen.batches.push(b.clone());
            } else if let Some(e) = ev.get::<EpochStart>() {
                seen.order.push(format!("epoch {}", e.epoch));
                seen.epochs.push(e.epoch);
            }
        }
        Ok(())
    }
}

pub struct Cluster {
    pub sim: Simulation,
    pub outcome: Outcome,
    pub next_origin: u64,
}

pub fn config() -> Config {
    Config {
        mempool: MempoolParams {
            batch_timeout: Duration::from_millis(50),
            ..MempoolParams::default()
        },
        msc: MscParams { fetch_timeout: Duration::from_millis(200), ..MscParams::default() },
        ..Config::default()
    }
}

pub fn cluster(seed: u64, cfg: Config) -> Cluster {
    let outcome = Outcome::default();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    for me in nodes() {
        let b = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), SEED))
            .active("timer", Timer::new());
        let b = availability::add_to(b, me.clone(), &cfg).unwrap();
        sim.add_node(b).unwrap();
    }
    for me in nodes() {
        sim.inject(
            &me,
            vec![Event::new("app", "availability", new_epoch_instance(0, &membership()))],
        )
        .unwrap();
    }
    Cluster { sim, outcome, next_origin: 0 }
}

impl Cluster {
    pub fn origin(&mut self) -> Origin {
        self.next_origin += 1;
        Origin { module: ModuleId::new("app"), id: self.next_origin }
    }

    pub fn inject(
        &mut self,
        node: usize,
        dest: &str,
        payload: impl Into<mir_dsl::mir_runtime::Payload>,
    ) {
        self.sim.inject(&nodes()[node], vec![Event::new("app", dest, payload)]).unwrap();
    }

    pub fn submit(&mut self, node: usize, txs: Vec<Tx>) {
        self.inject(node, "mempool", NewTransactions { txs });
    }

    pub fn request_cert(&mut self, node: usize) {
        let origin = self.origin();
        self.inject(node, "availability/0", RequestCert { buckets: None, origin });
    }

    /// Asks node `node` to verify `cert` in `epoch`; returns the request's origin number.
    pub fn verify(&mut self, node: usize, epoch: u64, cert: Cert) -> u64 {
        let origin = self.origin();
        let id = origin.id;
        self.inject(node, &format!("availability/{epoch}"), VerifyCert { cert, origin });
        id
    }

    pub fn request_txs(&mut self, node: usize, cert: Cert) {
        let origin = self.origin();
        self.inject(node, "availability/0", RequestTransactions { cert, origin });
    }

    pub fn run(&mut self) {
        self.sim.run_until_idle(Duration::from_secs(30)).unwrap();
    }

    pub fn seen<T>(&self, node: usize, f: impl FnOnce(&Seen) -> T) -> T {
        let all = self.outcome.lock().unwrap();
        let empty = Seen::default();
        f(all.get(&nodes()[node]).unwrap_or(&empty))
    }
}

pub fn txs(client: &str, range: std::ops::Range<u64>) -> Vec<Tx> {
    range.map(|i| Tx::new(client, i, format!("{client}-{i}").into_bytes())).collect()
}

/// Node `node` makes a certificate of `batch`; returns it.
pub fn make_cert(c: &mut Cluster, node: usize, batch: Vec<Tx>) -> Cert {
    let before = c.seen(node, |s| s.certs.len());
    c.submit(node, batch);
    c.request_cert(node);
    c.run();
    c.seen(node, |s| {
        assert_eq!(s.certs.len(), before + 1, "node {node} must answer with a certificate");
        s.certs.last().unwrap().clone()
    })
}

/// Node 3 is cut off while node 0 makes a certificate, so it never stores the batch.
pub fn cert_node3_missed(seed: u64, batch: Vec<Tx>) -> (Cluster, Cert) {
    let mut c = cluster(seed, config());
    let n = nodes();
    c.sim
        .apply_fault(Fault::Partition(vec![
            vec![n[0].clone(), n[1].clone(), n[2].clone()],
            vec![n[3].clone()],
        ]))
        .unwrap();
    let cert = make_cert(&mut c, 0, batch);
    c.sim.apply_fault(Fault::Heal).unwrap();
    assert!(!cert.batches[0].signers.contains(&n[3]));
    (c, cert)
}

/// A message from `from` as the transport would hand it to `module`.
pub fn received(from: usize, module: &str, msg: impl Into<mir_dsl::mir_runtime::Payload>) -> Event {
    use mir_dsl::mir_runtime::stdevents::{Message, MessageReceived};
    Event::new(
        "net",
        module,
        MessageReceived { from: nodes()[from].clone(), message: Message::new(module, msg) },
    )
}

/// `req` as `ctx.request` sends it: with an origin (module `x`), so the batch DB answers.
pub fn asked(
    mut req: protocols::availability::batchdb::StoreBatch,
) -> protocols::availability::batchdb::StoreBatch {
    use mir_runtime::stdevents::crypto::{Origin, Request};
    req.set_origin(Origin { module: ModuleId::new("x"), id: 0 });
    req
}
