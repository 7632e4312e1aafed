//! ISS over gRPC with real k256 signatures: clients submit transactions, every node orders them
//! into the same log (ISS: epochs of PBFT segments over the availability layer's certificates),
//! and the program prints the log, a progress line each second, and a check that every node
//! delivered the same log with every transaction once.
//!
//! ```text
//! cargo run -p examples --bin iss                                   # 4 nodes, 4 clients
//! cargo run -p examples --bin iss -- --txs 2000 --clients 8 --leader-policy backoff --crash 3@2
//! cargo run -p examples --bin iss -- membership --nodes 4 --base-port 7000 > m.toml   # demo keys
//! cargo run -p examples --bin iss -- node --id 0 --membership m.toml --insecure-test-keys --exit-after 400
//! cargo run -p examples --bin iss -- --txs 50 --record /tmp/iss-log     # record every node's events
//! cargo run -p examples --bin iss -- cat /tmp/iss-log --node 1 --epoch 1 --sn 18   # mircat, decoded
//! ```

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use examples::bcb::{free_ports, membership_toml_with_ports};
use examples::iss::{demo_node, IssReport};
use examples::say;
use mir_dsl::mir_runtime::keys::{NodeKeys, DEMO_SEED};
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::stdmodules::hasher;
use mir_dsl::mir_runtime::{Event, NodeId};
use protocols::availability::mempool::NewTransactions;
use protocols::availability::Tx;
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::{IssConfig, Mode, NodeSettings};
use protocols::ordering::pbft::PbftConfig;

#[derive(Parser)]
#[command(about = "ISS (epochs of PBFT segments over availability certificates) over gRPC")]
struct Cli {
    /// Nodes in the local cluster.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Transactions per client.
    #[arg(long, default_value_t = 250)]
    txs: u64,
    /// Leader policy: simple, single, backoff or blacklist.
    #[arg(long, default_value = "simple")]
    leader_policy: LeaderPolicy,
    /// Sequence numbers per segment.
    #[arg(long, default_value_t = 4)]
    segment_length: u64,
    /// Buckets of the request space (default: 16 per node).
    #[arg(long)]
    buckets: Option<u64>,
    /// `bucketed` (the paper: each leader proposes only requests of its buckets) or
    /// `redundant` (Trantor: any leader proposes anything, duplicates removed after ordering).
    #[arg(long, default_value = "bucketed")]
    mode: Mode,
    /// Stop node NODE SECONDS after the start (`3@2`): its segments end as ⊥ after view
    /// changes, and a leader policy other than `simple` sidelines it.
    #[arg(long, value_name = "NODE@SECONDS")]
    crash: Option<String>,
    /// Record every node's events under DIR (for mircat, replay and the viewer).
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,
    /// Print only the progress and the summary, not every batch.
    #[arg(long)]
    quiet: bool,
    /// Keep the cluster running this many seconds after everything is delivered (epochs go on
    /// with empty batches; useful with --record).
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// mircat (see `mircat --help`) with the payload types of this program decoded (ISS's,
    /// PBFT's, the checkpoint's, the availability layer's): `iss cat LOGDIR --epoch 1 --sn 18`.
    Cat {
        /// mircat's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Print a membership file (TOML) with test keys, for running one node per process.
    Membership(examples::cluster::MembershipArgs),
    /// Run one node of a membership file (one process per node, on one or several machines). Its
    /// client (`client-<id>`) submits `--txs` transactions to it; it prints what it delivers and,
    /// with `--exit-after N`, stops after N transactions with the log's digest (the same at
    /// every node).
    Node {
        #[command(flatten)]
        node: examples::cluster::NodeArgs,
        /// Transactions this node's client submits.
        #[arg(long, default_value_t = 100)]
        txs: u64,
        /// Exit after delivering this many transactions (all nodes' clients together).
        #[arg(long)]
        exit_after: Option<usize>,
    },
}

type Error = Box<dyn std::error::Error>;

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let res = match &cli.cmd {
        None => run(&cli),
        Some(Cmd::Cat { args }) => {
            let argv = std::iter::once(std::ffi::OsString::from("iss cat")).chain(args.clone());
            std::process::exit(mir_dsl::mir_runtime::eventlog::cli::run(argv));
        }
        Some(Cmd::Membership(m)) => m.toml().map(|t| print!("{t}")).map_err(Error::from),
        Some(Cmd::Node { node, txs, exit_after }) => one_node(&cli, node, *txs, *exit_after),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// `--crash NODE@SECONDS`.
fn parse_crash(s: &str, nodes: usize) -> Result<(usize, Duration), Error> {
    let (n, t) = s.split_once('@').ok_or(format!("--crash {s:?}: expected NODE@SECONDS"))?;
    let n: usize = n.parse().map_err(|_| format!("--crash {s:?}: {n:?} is not a node number"))?;
    let t: f64 =
        t.parse().map_err(|_| format!("--crash {s:?}: {t:?} is not a number of seconds"))?;
    if n >= nodes {
        return Err(format!("--crash {s:?}: there are only {nodes} nodes").into());
    }
    if !(0.0..=3600.0).contains(&t) {
        return Err(format!("--crash {s:?}: seconds must be between 0 and 3600").into());
    }
    Ok((n, Duration::from_secs_f64(t)))
}

fn settings(cli: &Cli) -> NodeSettings {
    NodeSettings {
        iss: IssConfig {
            segment_length: cli.segment_length,
            leader_policy: cli.leader_policy,
            buckets: cli.buckets,
            mode: cli.mode,
            ..IssConfig::default()
        },
        // Short view-change timeouts, so that a crashed leader is replaced within seconds.
        pbft: PbftConfig {
            sn_timeout: Duration::from_secs(1),
            segment_timeout: Some(Duration::from_secs(2)),
            ..PbftConfig::default()
        },
        ..NodeSettings::default()
    }
}

/// What one node delivered.
#[derive(Default)]
struct NodeLog {
    batches: Vec<(u64, Vec<(String, u64)>)>,
    txs: usize,
}

impl NodeLog {
    fn digest(&self) -> String {
        let parts: Vec<Vec<u8>> = self
            .batches
            .iter()
            .filter(|(_, txs)| !txs.is_empty())
            .flat_map(|(sn, txs)| {
                std::iter::once(sn.to_le_bytes().to_vec())
                    .chain(txs.iter().map(|(c, n)| [c.as_bytes(), &n.to_le_bytes()].concat()))
            })
            .collect();
        hasher::digest(&parts)[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn run(cli: &Cli) -> Result<(), Error> {
    if cli.nodes < 1 || cli.clients < 1 || cli.segment_length < 1 {
        return Err("--nodes, --clients and --segment-length must be at least 1".into());
    }
    if cli.buckets.is_some_and(|b| b == 0 || b > protocols::availability::MAX_BUCKETS) {
        return Err(format!(
            "--buckets must be between 1 and {}",
            protocols::availability::MAX_BUCKETS
        )
        .into());
    }
    let crash = cli.crash.as_deref().map(|s| parse_crash(s, cli.nodes)).transpose()?;
    let total = cli.clients * cli.txs as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let toml = membership_toml_with_ports("127.0.0.1", &free_ports(cli.nodes)?, DEMO_SEED)?;
    let membership = Membership::from_toml_str(&toml, "generated")?;
    let ids: Vec<NodeId> = membership.ids();
    let (tx, rx) = mpsc::channel();
    let settings = settings(cli);
    rt.block_on(async {
        let nodes = ids
            .iter()
            .map(|id| {
                let keys = NodeKeys::test(DEMO_SEED, id);
                demo_node(id.clone(), &membership, keys, &settings, tx.clone(), cli.record.as_deref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = examples::cluster::start(nodes, Duration::from_secs(10)).await?;
        let handles = cluster.handles.clone();
        say!(
            "{} nodes over gRPC on loopback, {:?} mode, leader policy {:?}, segments of {}; {} clients × {} transactions",
            ids.len(),
            cli.mode,
            cli.leader_policy,
            cli.segment_length,
            cli.clients,
            cli.txs
        );
        // The clients: each sends its transactions to every node, in chunks.
        let submit = {
            let handles = handles.clone();
            let (clients, per_client) = (cli.clients, cli.txs);
            tokio::spawn(async move {
                let chunk = 50u64;
                for start in (0..per_client).step_by(chunk as usize) {
                    let txs: Vec<Tx> = (0..clients)
                        .flat_map(|c| {
                            (start..(start + chunk).min(per_client)).map(move |i| {
                                Tx::new(format!("client-{c}").as_str(), i, format!("tx {i} of client {c}"))
                            })
                        })
                        .collect();
                    for h in &handles {
                        let ev = Event::new("app", "mempool", NewTransactions { txs: txs.clone() });
                        let _ = h.inject(vec![ev]).await; // a stopped node takes nothing
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let result = tokio::task::block_in_place(|| follow(cli, &ids, &handles, &rx, crash, total));
        submit.abort();
        if result.is_ok() && cli.linger > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(cli.linger.min(3600.0))).await;
        }
        cluster.stop().await?;
        result
    })
}

/// Prints the log and the progress until every live node delivered every transaction; then
/// checks that they delivered the same log.
fn follow(
    cli: &Cli,
    ids: &[NodeId],
    handles: &[mir_dsl::mir_runtime::NodeHandle],
    rx: &mpsc::Receiver<IssReport>,
    crash: Option<(usize, Duration)>,
    total: usize,
) -> Result<(), Error> {
    let start = Instant::now();
    let mut logs: BTreeMap<NodeId, NodeLog> =
        ids.iter().map(|n| (n.clone(), NodeLog::default())).collect();
    let mut crashed: Option<NodeId> = None;
    let mut epoch = 0;
    let (mut last_progress, mut last_count) = (Instant::now(), 0usize);
    let shown = |crashed: &Option<NodeId>| -> NodeId {
        ids.iter().find(|n| Some(*n) != crashed.as_ref()).cloned().unwrap_or_else(|| ids[0].clone())
    };
    loop {
        if let Some((n, at)) = crash {
            if crashed.is_none() && start.elapsed() >= at {
                say!("*** stopping node {} at {:.1} s", ids[n], start.elapsed().as_secs_f64());
                handles[n].stop();
                crashed = Some(ids[n].clone());
            }
        }
        let live: Vec<&NodeId> = ids.iter().filter(|n| Some(*n) != crashed.as_ref()).collect();
        if live.iter().all(|n| logs[*n].txs >= total) {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            return Err("not every transaction was delivered within 300 s".into());
        }
        let watched = shown(&crashed);
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(IssReport::Batch { node, sn, txs }) => {
                if node == watched && !cli.quiet && !txs.is_empty() {
                    let first = &txs[0];
                    say!(
                        "[node {node}] sn {sn:>4}: {:>4} txs ({}#{} …)",
                        txs.len(),
                        first.0,
                        first.1
                    );
                }
                let log = logs.get_mut(&node).ok_or("a report from an unknown node")?;
                log.txs += txs.len();
                log.batches.push((sn, txs));
            }
            Ok(IssReport::Epoch { node, epoch: e, leaders }) => {
                if node == watched {
                    epoch = e;
                    let l: Vec<String> = leaders.iter().map(|n| n.to_string()).collect();
                    say!("[node {node}] epoch {e} starts, leaders [{}]", l.join(", "));
                }
            }
            Ok(IssReport::Stable { node, epoch: e }) => {
                if node == watched && !cli.quiet {
                    say!("[node {node}] checkpoint of epoch {e} is stable");
                }
            }
            Ok(IssReport::Restored { node, epoch: e }) => {
                say!("[node {node}] restored the checkpoint of epoch {e} from its peers");
            }
            Ok(IssReport::Rejected { node, rejected }) => {
                say!(
                    "[node {node}] mempool refused {} transactions, first: {:?}",
                    rejected.len(),
                    rejected[0]
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the nodes stopped".into()),
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            let count = logs[&shown(&crashed)].txs;
            let rate = (count - last_count) as f64 / last_progress.elapsed().as_secs_f64();
            say!("progress: epoch {epoch} | delivered {count} / {total} transactions | {rate:.0} tx/s");
            (last_progress, last_count) = (Instant::now(), count);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Every live node: the same batches with transactions, each transaction once.
    let live: Vec<&NodeId> = ids.iter().filter(|n| Some(*n) != crashed.as_ref()).collect();
    let reference = &logs[live[0]];
    for n in &live {
        let log = &logs[*n];
        let mut seen = std::collections::BTreeSet::new();
        if !log.batches.iter().flat_map(|(_, t)| t).all(|t| seen.insert(t.clone())) {
            return Err(format!("node {n} delivered a transaction twice").into());
        }
        let nonempty = |l: &NodeLog| -> Vec<(u64, Vec<(String, u64)>)> {
            l.batches.iter().filter(|(_, t)| !t.is_empty()).cloned().collect()
        };
        if nonempty(log) != nonempty(reference) {
            return Err(format!("node {n}'s log differs from node {}'s", live[0]).into());
        }
    }
    say!(
        "all {} live nodes delivered the same log: {} transactions in {:.1} s ({:.0} tx/s), log digest {}",
        live.len(),
        total,
        elapsed,
        total as f64 / elapsed,
        reference.digest()
    );
    Ok(())
}

/// `iss node`: one node of a membership file, with its own client.
fn one_node(
    cli: &Cli,
    node: &examples::cluster::NodeArgs,
    txs: u64,
    exit_after: Option<usize>,
) -> Result<(), Error> {
    let (me, membership, keys) = node.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (tx, rx) = mpsc::channel();
    let settings = settings(cli);
    rt.block_on(async {
        let n = demo_node(me.clone(), &membership, keys, &settings, tx, cli.record.as_deref())?;
        let handle = n.node.handle();
        let run = tokio::spawn(n.node.run());
        let peers = membership.nodes.len() - 1;
        eprintln!("node {me}: waiting for {peers} peers");
        if !n.grpc.wait_connected(peers, Duration::from_secs(60)).await {
            return Err::<(), Error>(
                format!("node {me}: peers did not connect within 60 s").into(),
            );
        }
        eprintln!("node {me}: connected");
        let client = format!("client-{me}");
        let txs: Vec<Tx> =
            (0..txs).map(|i| Tx::new(client.as_str(), i, format!("tx {i} of {client}"))).collect();
        handle.inject(vec![Event::new("app", "mempool", NewTransactions { txs })]).await?;
        let mut log = NodeLog::default();
        loop {
            while let Ok(r) = rx.try_recv() {
                match r {
                    IssReport::Batch { sn, txs, .. } => {
                        if !cli.quiet && !txs.is_empty() {
                            say!("node {me} sn {sn}: {} txs", txs.len());
                        }
                        log.txs += txs.len();
                        log.batches.push((sn, txs));
                    }
                    IssReport::Epoch { epoch, leaders, .. } => {
                        let l: Vec<String> = leaders.iter().map(|n| n.to_string()).collect();
                        say!("node {me}: epoch {epoch} starts, leaders [{}]", l.join(", "));
                    }
                    IssReport::Rejected { rejected, .. } => {
                        say!("node {me}: mempool refused {} transactions", rejected.len());
                    }
                    IssReport::Restored { epoch, .. } => {
                        say!("node {me}: restored the checkpoint of epoch {epoch} from its peers");
                    }
                    IssReport::Stable { .. } => {}
                }
            }
            if exit_after.is_some_and(|n| log.txs >= n) || run.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        say!("node {me} delivered {} transactions, log digest {}", log.txs, log.digest());
        // Stay a while: the others may still need this node for their last batches.
        tokio::time::sleep(Duration::from_secs(3)).await;
        handle.stop();
        run.await??;
        Ok(())
    })
}
