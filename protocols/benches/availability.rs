//! Certificates and transactions per second through the availability layer on 4 simulated nodes:
//! mempool → certificate (f + 1 signatures that the batch is stored) → ordered delivery through
//! the batch fetcher on every node, one of which missed every batch and reconstructs each from
//! the signers over the simulated network.
//!
//! The simulator runs all four nodes on one thread, so the figures are the CPU cost of the whole
//! cluster's protocol work (hashing, signing, encoding, routing, the DSL) per certificate, on one
//! core. Simulated network latency does not slow it down.
//!
//! Run: `cargo bench -p protocols --bench availability` (options: `-- --certs N --crypto
//! test|ecdsa|both --batch 1,64,1024 --payload BYTES`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mir_dsl::mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_dsl::mir_runtime::stdevents::crypto::Origin;
use mir_dsl::mir_runtime::stdmodules::{ecdsa, EcdsaCrypto, TestCrypto, Timer};
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule,
};
use protocols::availability::batchfetcher::{DeliverCert, NewOrderedBatch};
use protocols::availability::mempool::{MempoolParams, NewTransactions};
use protocols::availability::msc::{MscParams, NewCert, RequestCert};
use protocols::availability::{add_to, new_epoch_instance, Cert, Config, Tx};

#[derive(Default)]
struct Seen {
    certs: Vec<Cert>,
    delivered_txs: usize,
    batches: usize,
}

type Shared = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

struct App {
    me: NodeId,
    seen: Shared,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut all = self.seen.lock().unwrap();
        let s = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(c) = ev.get::<NewCert>() {
                s.certs.push(c.cert.clone());
            } else if let Some(b) = ev.get::<NewOrderedBatch>() {
                s.delivered_txs += b.txs.len();
                s.batches += 1;
            }
        }
        Ok(())
    }
}

struct Run {
    certify: Duration,
    deliver: Duration,
    events: u64,
    messages: u64,
}

fn run(certs: usize, batch: usize, payload: usize, ecdsa_crypto: bool) -> Run {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let membership: Vec<(NodeId, u128)> = ids.iter().map(|n| (n.clone(), 1)).collect();
    let (keys, registry) = ecdsa::test_keys(1, &ids);
    // Limits count Tx::size: the payload plus the client ID ("client-k", 8 bytes) and the number.
    let tx_size = payload + "client-0".len() + 8;
    let cfg = Config {
        mempool: MempoolParams {
            max_txs_in_batch: batch,
            max_payload_in_batch: batch * tx_size,
            capacity_txs: (certs * batch).max(batch),
            capacity_bytes: (certs * batch * tx_size).max(batch * tx_size),
            client_window: (certs * batch) as u64,
            ..MempoolParams::default()
        },
        msc: MscParams {
            max_txs_in_batch: batch,
            max_payload_in_batch: batch * tx_size,
            max_requests: certs as u64,
            ..MscParams::default()
        },
        ..Config::default()
    };
    let seen = Shared::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(1) });
    for me in &ids {
        let b = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), seen: seen.clone() })
            .active("timer", Timer::new());
        let b = if ecdsa_crypto {
            b.passive("crypto", EcdsaCrypto::new(keys[me].clone(), registry.clone()))
        } else {
            b.passive("crypto", TestCrypto::new(me.clone(), 1))
        };
        sim.add_node(add_to(b, me.clone(), &cfg).unwrap()).unwrap();
    }
    // Node 3 is cut off while the certificates are made: it will fetch every batch.
    sim.apply_fault(Fault::Partition(vec![ids[..3].to_vec(), vec![ids[3].clone()]])).unwrap();
    let ev = |dest: &str, p: mir_dsl::mir_runtime::Payload| Event::new("app", dest, p);
    for me in &ids {
        sim.inject(me, vec![ev("availability", new_epoch_instance(0, &membership).into())])
            .unwrap();
    }
    // Certificates are made by nodes 0, 1, 2 in turn, from transactions of their own clients.
    let start = Instant::now();
    for k in 0..certs {
        let node = &ids[k % 3];
        let client = format!("client-{}", k % 3);
        let base = (k / 3 * batch) as u64;
        let txs: Vec<Tx> = (0..batch as u64)
            .map(|i| Tx::new(client.as_str(), base + i, vec![(k % 251) as u8; payload]))
            .collect();
        sim.inject(
            node,
            vec![
                ev("mempool", NewTransactions { txs }.into()),
                ev(
                    "availability/0",
                    RequestCert {
                        buckets: None,
                        origin: Origin { module: ModuleId::new("app"), id: k as u64 },
                    }
                    .into(),
                ),
            ],
        )
        .unwrap();
    }
    sim.run_until_idle(Duration::from_secs(3600)).unwrap();
    let certify = start.elapsed();
    let mut made: Vec<Cert> = Vec::new();
    {
        let all = seen.lock().unwrap();
        // Interleave the three nodes' certificates: the order an orderer might choose.
        for i in 0..certs.div_ceil(3) {
            for n in &ids[..3] {
                if let Some(c) = all.get(n).and_then(|s| s.certs.get(i)) {
                    made.push(c.clone());
                }
            }
        }
    }
    assert_eq!(made.len(), certs, "every certificate request is answered");
    assert!(made.iter().all(|c| !c.is_empty()));
    sim.apply_fault(Fault::Heal).unwrap();
    let start = Instant::now();
    for me in &ids {
        let evs = made
            .iter()
            .enumerate()
            .map(|(sn, cert)| {
                ev("batchfetcher", DeliverCert { sn: sn as u64, cert: cert.clone() }.into())
            })
            .collect();
        sim.inject(me, evs).unwrap();
    }
    let summary = sim.run_until_idle(Duration::from_secs(3600)).unwrap();
    let deliver = start.elapsed();
    let all = seen.lock().unwrap();
    for me in &ids {
        let s = &all[me];
        assert_eq!(s.batches, certs, "node {me} delivers every batch");
        assert_eq!(s.delivered_txs, certs * batch, "node {me} delivers every transaction once");
    }
    Run { certify, deliver, events: summary.events, messages: summary.messages_delivered }
}

fn main() {
    let mut certs = 300usize;
    let mut batches = vec![1usize, 64, 1024];
    let mut payload = 64usize;
    let mut cryptos = vec![false, true];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--certs" => certs = val().parse().expect("--certs N"),
            "--payload" => payload = val().parse().expect("--payload BYTES"),
            "--batch" => {
                batches = val().split(',').map(|s| s.parse().expect("--batch 1,64,1024")).collect()
            }
            "--crypto" => {
                cryptos = match val().as_str() {
                    "test" => vec![false],
                    "ecdsa" => vec![true],
                    "both" => vec![false, true],
                    other => panic!("--crypto test|ecdsa|both, not {other}"),
                }
            }
            "--bench" => {}
            other => panic!("unknown option {other}"),
        }
    }
    println!(
        "availability layer, 4 simulated nodes on one thread, {certs} certificates, {payload}-byte transactions; node 3 reconstructs every batch from the signers"
    );
    println!(
        "{:>6} {:>6} | {:>10} {:>12} | {:>10} {:>12} | {:>12} {:>9}",
        "crypto", "batch", "certs/s", "tx/s", "deliver/s", "tx/s", "end-to-end", "events"
    );
    for &ecdsa_crypto in &cryptos {
        for &batch in &batches {
            // Scale the run down for big batches so each takes seconds, not minutes.
            let n = if batch >= 1024 { certs.min(60) } else { certs };
            let r = run(n, batch, payload, ecdsa_crypto);
            let total = r.certify + r.deliver;
            let per = |d: Duration| n as f64 / d.as_secs_f64();
            println!(
                "{:>6} {:>6} | {:>10.0} {:>12.0} | {:>10.0} {:>12.0} | {:>8.0} tx/s {:>9}  ({} messages, {n} certs)",
                if ecdsa_crypto { "k256" } else { "test" },
                batch,
                per(r.certify),
                per(r.certify) * batch as f64,
                per(r.deliver),
                per(r.deliver) * batch as f64,
                per(total) * batch as f64,
                r.events,
                r.messages,
            );
        }
    }
}
