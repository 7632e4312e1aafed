//! The availability layer over gRPC with real k256 signatures: submit transactions on one node,
//! get a certificate printed, read the batch back from the certificate on another node.
//!
//! ```text
//! cargo run -p examples --bin availability                     # 4 nodes in this process
//! cargo run -p examples --bin availability -- --txs 100 --read-on 2
//! ```

use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use examples::availability::{demo_node, hex, AvailabilityReport, CreateBatch, ReadBatch};
use examples::bcb::{free_ports, membership_toml_with_ports};
use mir_dsl::mir_runtime::keys::{NodeKeys, DEMO_SEED};
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::{Event, NodeId};
use protocols::availability::{Cert, Config, Tx};

#[derive(Parser)]
#[command(about = "The availability layer (mempool, batch DB, multisig collector) over gRPC")]
struct Cli {
    /// Nodes in the local cluster.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// How many transactions to submit.
    #[arg(long, default_value_t = 5)]
    txs: u64,
    /// The node that submits the transactions and makes the certificate.
    #[arg(long, default_value_t = 0)]
    create_on: usize,
    /// The node that reads the batch back from the certificate.
    #[arg(long, default_value_t = 3)]
    read_on: usize,
}

type Error = Box<dyn std::error::Error>;

fn main() {
    examples::init_logging();
    if let Err(e) = run(&Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn wait_for(
    rx: &mpsc::Receiver<AvailabilityReport>,
    what: &str,
    mut pick: impl FnMut(AvailabilityReport) -> Option<Result<AvailabilityReport, Error>>,
) -> Result<AvailabilityReport, Error> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let r = rx.recv_timeout(left).map_err(|_| format!("no {what} within 30 s"))?;
        if let Some(r) = pick(r) {
            return r;
        }
    }
}

fn run(cli: &Cli) -> Result<(), Error> {
    if cli.nodes < 1 {
        return Err("--nodes must be at least 1".into());
    }
    for (name, i) in [("--create-on", cli.create_on), ("--read-on", cli.read_on)] {
        if i >= cli.nodes {
            return Err(format!("{name} {i}: there are only {} nodes", cli.nodes).into());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let toml = membership_toml_with_ports("127.0.0.1", &free_ports(cli.nodes)?, DEMO_SEED)?;
    let membership = Membership::from_toml_str(&toml, "generated")?;
    let ids: Vec<NodeId> = membership.ids();
    let (tx, rx) = mpsc::channel();
    let config = Config::default();
    rt.block_on(async {
        let nodes = ids
            .iter()
            .map(|id| {
                demo_node(
                    id.clone(),
                    &membership,
                    NodeKeys::test(DEMO_SEED, id),
                    &config,
                    tx.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = examples::cluster::start(nodes, Duration::from_secs(10)).await?;
        let handles = &cluster.handles;
        println!("{} nodes connected over gRPC on loopback", ids.len());
        let result = tokio::task::block_in_place(|| -> Result<(), Error> {
            let txs: Vec<Tx> = (0..cli.txs)
                .map(|i| Tx::new("demo-client", i, format!("transaction {i}")))
                .collect();
            println!(
                "node {}: submitting {} transactions and asking for a certificate",
                ids[cli.create_on],
                txs.len()
            );
            handles[cli.create_on].blocking_inject(vec![Event::new(
                "app",
                "app",
                CreateBatch { txs },
            )])?;
            let AvailabilityReport::Cert { node, cert } =
                wait_for(&rx, "certificate", |r| match r {
                    r @ AvailabilityReport::Cert { .. } => Some(Ok(r)),
                    AvailabilityReport::Rejected { node, rejected } => {
                        println!(
                            "node {node} refused {} transactions, first: {:?}",
                            rejected.len(),
                            rejected[0]
                        );
                        None
                    }
                    _ => None,
                })?
            else {
                unreachable!()
            };
            print_cert(&node, &cert);
            println!("node {}: reading the batch back from the certificate", ids[cli.read_on]);
            handles[cli.read_on].blocking_inject(vec![Event::new(
                "app",
                "app",
                ReadBatch { cert },
            )])?;
            match wait_for(&rx, "batch", |r| match r {
                r @ (AvailabilityReport::Batch { .. } | AvailabilityReport::Invalid { .. }) => {
                    Some(Ok(r))
                }
                _ => None,
            })? {
                AvailabilityReport::Batch { node, txs } => {
                    println!("node {node} read {} transactions:", txs.len());
                    for t in &txs {
                        println!(
                            "  {} #{}: {}",
                            t.client,
                            t.tx_no,
                            String::from_utf8_lossy(&t.data)
                        );
                    }
                    Ok(())
                }
                AvailabilityReport::Invalid { node, error } => {
                    Err(format!("node {node} rejected the certificate: {error}").into())
                }
                _ => unreachable!(),
            }
        });
        cluster.stop().await?;
        result
    })
}

fn print_cert(node: &NodeId, cert: &Cert) {
    if cert.is_empty() {
        println!("node {node} made the empty certificate (the mempool had nothing)");
        return;
    }
    for b in &cert.batches {
        let signers: Vec<String> = b.signers.iter().map(|s| s.to_string()).collect();
        println!(
            "node {node} made a certificate for batch {}…, signed by nodes {} (a weak quorum)",
            &hex(&b.batch_id)[..16],
            signers.join(", ")
        );
    }
    let bytes = cert.to_bytes();
    println!("certificate ({} bytes): {}", bytes.len(), hex(&bytes));
}
