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
//! cargo run -p examples --bin iss -- cat /tmp/iss-log --html /tmp/iss-trace.html    # the viewer
//! cargo run -p examples --bin iss -- replay --log /tmp/iss-log --node 2 --step 3    # replay a node
//! cargo run -p examples --bin iss -- sim --seed 4 --check             # simulated twice: identical?
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
    /// Crash recovery: keep a write-ahead log under DIR (`DIR/node-<id>` for each node of the
    /// cluster; DIR itself for `iss node`), synced once per batch; a node started again on it
    /// resumes from it (docs/recovery.md).
    #[arg(long, value_name = "DIR")]
    wal: Option<std::path::PathBuf>,
    /// Print only the progress and the summary, not every batch.
    #[arg(long)]
    quiet: bool,
    /// Transactions per second the clients offer, all together (sent every 10 ms to every node).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// At the end, print how long each module was busy (all nodes together): where the time
    /// went.
    #[arg(long)]
    stats: bool,
    /// Payload bytes per transaction (default: a short text naming it).
    #[arg(long, value_name = "BYTES")]
    tx_size: Option<usize>,
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
    /// Replay a node's recorded events into fresh ISS modules (ISS, PBFT, checkpointing, the
    /// availability layer: every passive module but the application and crypto), in the recorded
    /// batches, and check they emit what was recorded. The recorded run's settings are read from
    /// `LOG/iss-settings.txt` (written by `--record`). `--step` as for `bcb replay`.
    Replay {
        /// The directory given to `--record`.
        #[arg(long)]
        log: std::path::PathBuf,
        /// The node to replay.
        #[arg(long, default_value = "0")]
        node: String,
        /// Show each batch and what it produced: wait for Enter after each, or with N, show N
        /// batches without waiting.
        #[arg(long, num_args = 0..=1, value_name = "N")]
        step: Option<Option<usize>>,
    },
    /// Run the nodes (k256 signatures; `--nodes`, `--leader-policy`, `--segment-length`,
    /// `--buckets`, `--mode` apply) in the deterministic simulator for `--seconds` of simulated
    /// time, each of 2 clients submitting `--txs` transactions to every node; prints node 0's
    /// batches with their simulated times and the run's digest.
    Sim {
        /// The simulation's seed (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run twice and check both runs are identical event for event.
        #[arg(long)]
        check: bool,
        /// Simulated seconds to run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
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
        /// This node took part before and lost its disk (its WAL): it first asks the others how
        /// far they have gone and acts in no epoch it may have acted in, then continues from a
        /// state transfer (docs/recovery.md, "Amnesia"). Ignored when the WAL holds a
        /// checkpoint.
        #[arg(long)]
        rejoin: bool,
    },
}

type Error = Box<dyn std::error::Error>;

fn main() {
    examples::init_logging();
    let cli = Cli::parse();
    let res = match &cli.cmd {
        None => run(&cli),
        Some(Cmd::Cat { args }) => {
            let argv = std::iter::once(std::ffi::OsString::from("iss cat")).chain(args.clone());
            std::process::exit(mir_dsl::mir_runtime::eventlog::cli::run(argv));
        }
        Some(Cmd::Membership(m)) => m.toml().map(|t| print!("{t}")).map_err(Error::from),
        Some(Cmd::Replay { log, node, step }) => replay(log, node, *step),
        Some(Cmd::Sim { seed, check, seconds }) => sim(&cli, *seed, *check, *seconds),
        Some(Cmd::Node { node, txs, exit_after, rejoin }) => {
            one_node(&cli, node, *txs, *exit_after, *rejoin)
        }
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

/// The settings `--record` saves next to the logs, for `iss replay`.
const SETTINGS_FILE: &str = "iss-settings.txt";

/// What a run's nodes were built from: the protocol options and the membership's weights.
struct RunSettings {
    leader_policy: LeaderPolicy,
    segment_length: u64,
    buckets: Option<u64>,
    mode: Mode,
    members: Vec<(NodeId, u128)>,
}

impl RunSettings {
    fn of(cli: &Cli, membership: &Membership) -> Self {
        RunSettings {
            leader_policy: cli.leader_policy,
            segment_length: cli.segment_length,
            buckets: cli.buckets,
            mode: cli.mode,
            members: membership.weights(),
        }
    }

    /// `key = value` lines.
    fn save(&self, dir: &std::path::Path) -> Result<(), Error> {
        let members: Vec<String> = self.members.iter().map(|(n, w)| format!("{n}:{w}")).collect();
        let text = format!(
            "# the settings of the recorded ISS run, for `iss replay`\nleader_policy = {}\nsegment_length = {}\nbuckets = {}\nmode = {}\nmembers = {}\n",
            format!("{:?}", self.leader_policy).to_lowercase(),
            self.segment_length,
            self.buckets.map_or("default".to_string(), |b| b.to_string()),
            format!("{:?}", self.mode).to_lowercase(),
            members.join(",")
        );
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SETTINGS_FILE);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    fn load(dir: &std::path::Path) -> Result<Self, Error> {
        let path = dir.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (was the run recorded with --record {}?)",
                path.display(),
                dir.display()
            )
        })?;
        let mut map = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let (k, v) = line
                .split_once('=')
                .ok_or(format!("{}: {line:?} is not `key = value`", path.display()))?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        let get = |k: &str| map.get(k).cloned().ok_or(format!("{}: no {k}", path.display()));
        let bad = |k: &str, e: String| format!("{}: {k}: {e}", path.display());
        let members = get("members")?
            .split(',')
            .map(|m| {
                let (n, w) = m.split_once(':').ok_or(format!("member {m:?} is not ID:WEIGHT"))?;
                let w: u128 = w.parse().map_err(|e| format!("member {m:?}: {e}"))?;
                Ok((NodeId::try_new(n).map_err(|e| e.to_string())?, w))
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| bad("members", e))?;
        let buckets = match get("buckets")?.as_str() {
            "default" => None,
            b => Some(
                b.parse().map_err(|e: std::num::ParseIntError| bad("buckets", e.to_string()))?,
            ),
        };
        Ok(RunSettings {
            leader_policy: get("leader_policy")?.parse().map_err(|e| bad("leader_policy", e))?,
            segment_length: get("segment_length")?
                .parse()
                .map_err(|e: std::num::ParseIntError| bad("segment_length", e.to_string()))?,
            buckets,
            mode: get("mode")?.parse().map_err(|e| bad("mode", e))?,
            members,
        })
    }

    fn node_settings(&self) -> NodeSettings {
        node_settings(self.leader_policy, self.segment_length, self.buckets, self.mode)
    }
}

fn settings(cli: &Cli) -> NodeSettings {
    node_settings(cli.leader_policy, cli.segment_length, cli.buckets, cli.mode)
}

fn node_settings(
    leader_policy: LeaderPolicy,
    segment_length: u64,
    buckets: Option<u64>,
    mode: Mode,
) -> NodeSettings {
    NodeSettings {
        iss: IssConfig { segment_length, leader_policy, buckets, mode, ..IssConfig::default() },
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
    if let Some(dir) = &cli.wal {
        // The cluster's ports and clients are new each run: its nodes cannot resume old WALs.
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(format!(
                "--wal {}: the directory is not empty; a cluster run starts fresh (remove it), and `iss node --wal` restarts one node from its WAL",
                dir.display()
            )
            .into());
        }
    }
    let total = cli.clients * cli.txs as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let toml = membership_toml_with_ports("127.0.0.1", &free_ports(cli.nodes)?, DEMO_SEED)?;
    let membership = Membership::from_toml_str(&toml, "generated")?;
    let ids: Vec<NodeId> = membership.ids();
    let (tx, rx) = mpsc::channel();
    let settings = settings(cli);
    if let Some(dir) = &cli.record {
        RunSettings::of(cli, &membership).save(dir)?;
    }
    let mut wal_stats = Vec::new();
    rt.block_on(async {
        let nodes = ids
            .iter()
            .map(|id| {
                let keys = NodeKeys::test(DEMO_SEED, id);
                let wal = match &cli.wal {
                    Some(dir) => {
                        let w = examples::iss::wal_in(&dir.join(format!("node-{id}")))?;
                        wal_stats.push(w.stats());
                        Some(w)
                    }
                    None => None,
                };
                demo_node(id.clone(), &membership, keys, &settings, tx.clone(), cli.record.as_deref(), wal)
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
        // The clients: every 10 ms, each sends its share of `--rate` to every node. When
        // transaction i of every client was submitted: `submitted[i]` (for the latency).
        // A client resubmits what a mempool refused (its window full, the mempool full) once
        // the refusal is 100 ms old: `retry` holds (when, node, client, number).
        let load = std::sync::Arc::new(Load::default());
        let tx_size = cli.tx_size;
        let make = move |c: &str, i: u64| {
            let mut data = format!("tx {i} of {c}").into_bytes();
            if let Some(n) = tx_size {
                data.resize(n, b'.');
            }
            Tx::new(c, i, data)
        };
        let submit = {
            let handles = handles.clone();
            let (clients, per_client) = (cli.clients, cli.txs);
            let per_tick = cli.rate as f64 / clients as f64 / 100.0;
            let load = load.clone();
            tokio::spawn(async move {
                let (mut next, mut due) = (0u64, 0.0f64);
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                loop {
                    tick.tick().await;
                    let again =
                        load.retry.lock().expect("not poisoned").due(Duration::from_millis(100));
                    for (node, txs) in again {
                        let txs = txs.iter().map(|(c, i)| make(c, *i)).collect();
                        let ev = Event::new("app", "mempool", NewTransactions { txs });
                        let _ = handles[node].inject(vec![ev]).await;
                    }
                    due += per_tick;
                    let upto = (due.floor() as u64).clamp(next, per_client);
                    if upto == next {
                        continue;
                    }
                    let txs: Vec<Tx> = (next..upto)
                        .flat_map(|i| (0..clients).map(move |c| make(&format!("client-{c}"), i)))
                        .collect();
                    {
                        let mut at = load.submitted.lock().expect("not poisoned");
                        at.resize(upto as usize, Instant::now());
                    }
                    for h in &handles {
                        let ev = Event::new("app", "mempool", NewTransactions { txs: txs.clone() });
                        let _ = h.inject(vec![ev]).await; // a stopped node takes nothing
                    }
                    next = upto;
                }
            })
        };
        let result = tokio::task::block_in_place(|| {
            let followed = Instant::now();
            let r = follow(cli, &ids, &handles, &rx, crash, total, &load);
            if r.is_ok() && !wal_stats.is_empty() {
                use std::sync::atomic::Ordering::Relaxed;
                let secs = followed.elapsed().as_secs_f64();
                let sum = |f: &dyn Fn(&mir_dsl::mir_runtime::wal::WalStats) -> u64| -> u64 {
                    wal_stats.iter().map(|s| f(s)).sum()
                };
                let syncs = sum(&|s| s.syncs.load(Relaxed));
                let nanos = sum(&|s| s.sync_nanos.load(Relaxed));
                say!(
                    "WAL, all nodes: {} records, {:.1} MB, {syncs} syncs ({:.0} per second per node), mean sync {:.0} µs",
                    sum(&|s| s.records.load(Relaxed)),
                    sum(&|s| s.bytes.load(Relaxed)) as f64 / 1e6,
                    syncs as f64 / secs / wal_stats.len() as f64,
                    nanos as f64 / syncs.max(1) as f64 / 1e3,
                );
            }
            r
        });
        submit.abort();
        if cli.stats {
            let mut busy: BTreeMap<String, (Duration, u64)> = BTreeMap::new();
            for h in &handles {
                for m in h.stats().modules {
                    let e = busy.entry(m.module.to_string()).or_default();
                    e.0 += m.busy;
                    e.1 += m.events_handled;
                }
            }
            let mut rows: Vec<_> = busy.into_iter().collect();
            rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
            say!("busy time per module, all nodes (events handled):");
            for (m, (d, n)) in rows {
                say!("  {m:<16} {:>8.3} s  ({n} events)", d.as_secs_f64());
            }
        }
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
    load: &Load,
) -> Result<(), Error> {
    let mut refusals: BTreeMap<NodeId, usize> = BTreeMap::new();
    let start = Instant::now();
    // Milliseconds from submission to delivery at the node shown, per transaction.
    let mut latencies: Vec<f64> = Vec::with_capacity(total);
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
                if node == watched {
                    let at = load.submitted.lock().expect("not poisoned");
                    let now = Instant::now();
                    latencies.extend(txs.iter().filter_map(|(_, n)| {
                        at.get(*n as usize).map(|t| (now - *t).as_secs_f64() * 1e3)
                    }));
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
                say!("[node {node}] restored the checkpoint of epoch {e}");
            }
            Ok(IssReport::Applied { .. }) => {}
            Ok(IssReport::Rejected { node, rejected }) => {
                let count = refusals.entry(node.clone()).or_default();
                if *count == 0 {
                    say!(
                        "[node {node}] mempool refused {} transactions (resubmitted after 100 ms), first: {:?}",
                        rejected.len(),
                        rejected[0]
                    );
                }
                *count += rejected.len();
                let i =
                    ids.iter().position(|n| *n == node).ok_or("a report from an unknown node")?;
                let txs = rejected.into_iter().map(|(c, n, _)| (c, n)).collect();
                load.retry.lock().expect("not poisoned").push(i, txs);
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
    if !latencies.is_empty() {
        latencies.sort_by(f64::total_cmp);
        let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        say!(
            "latency from submission to delivery at node {}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms ({} transactions)",
            live[0],
            p(0.5),
            p(0.9),
            p(0.99),
            latencies.len()
        );
    }
    Ok(())
}

/// What the clients and the follower share: when transaction `i` of every client was submitted
/// (`submitted[i]`, for the latency), and what waits to be resubmitted.
#[derive(Default)]
struct Load {
    submitted: std::sync::Mutex<Vec<Instant>>,
    retry: std::sync::Mutex<Retry>,
}

/// Refused transactions of one node, by client and number.
type Refused = Vec<(String, u64)>;

/// Refused transactions waiting to be resubmitted: (when refused, node index, transactions).
#[derive(Default)]
struct Retry(std::collections::VecDeque<(Instant, usize, Refused)>);

impl Retry {
    fn push(&mut self, node: usize, txs: Refused) {
        self.0.push_back((Instant::now(), node, txs));
    }

    /// Those refused at least `age` ago.
    fn due(&mut self, age: Duration) -> Vec<(usize, Refused)> {
        let mut out = Vec::new();
        while self.0.front().is_some_and(|(t, _, _)| t.elapsed() >= age) {
            let (_, node, txs) = self.0.pop_front().expect("checked");
            out.push((node, txs));
        }
        out
    }
}

/// `iss node`: one node of a membership file, with its own client.
fn one_node(
    cli: &Cli,
    node: &examples::cluster::NodeArgs,
    txs: u64,
    exit_after: Option<usize>,
    rejoin: bool,
) -> Result<(), Error> {
    let (me, membership, keys) = node.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (tx, rx) = mpsc::channel();
    let mut settings = settings(cli);
    settings.iss.rejoin = rejoin;
    if let Some(dir) = &cli.record {
        RunSettings::of(cli, &membership).save(dir)?;
    }
    // A node that starts on a WAL it wrote before restarts: its client resubmits everything at
    // once (what was delivered is refused as such), not at the rate.
    let restarting = rejoin
        || cli.wal.as_deref().is_some_and(|d| {
            std::fs::read_dir(d).map(|mut entries| entries.next().is_some()).unwrap_or(false)
        });
    rt.block_on(async {
        let wal = cli.wal.as_deref().map(examples::iss::wal_in).transpose()?;
        let n =
            demo_node(me.clone(), &membership, keys, &settings, tx, cli.record.as_deref(), wal)?;
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
        // The client: its share of `--rate` every 10 ms; what the mempool refuses (other than
        // as delivered or present) again after 100 ms.
        let client = format!("client-{me}");
        let tx_of = |i: u64| Tx::new(client.as_str(), i, format!("tx {i} of {client}"));
        let per_tick = (cli.rate / membership.nodes.len() as u64 / 100).max(1);
        let (mut next_tx, mut last_tick) = (0u64, Instant::now());
        if rejoin {
            eprintln!(
                "node {me}: rejoining after a lost disk; resubmitting its {txs} transactions"
            );
        } else if restarting {
            eprintln!("node {me}: restarted from its WAL; resubmitting its {txs} transactions");
        }
        let mut retry: std::collections::VecDeque<(Instant, Vec<u64>)> = Default::default();
        let mut log = NodeLog::default();
        let (mut applied, mut digest) = (0u64, vec![0u8; 32]);
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
                        let again: Vec<u64> = rejected
                            .iter()
                            .filter(|(c, _, why)| {
                                *c == client
                                    && why != "already delivered"
                                    && why != "already in the mempool"
                            })
                            .map(|(_, n, _)| *n)
                            .collect();
                        if !cli.quiet {
                            say!(
                                "node {me}: mempool refused {} transactions ({} to resubmit)",
                                rejected.len(),
                                again.len()
                            );
                        }
                        if !again.is_empty() {
                            retry.push_back((Instant::now(), again));
                        }
                    }
                    IssReport::Restored { epoch, .. } => {
                        say!("node {me}: restored the checkpoint of epoch {epoch}");
                    }
                    IssReport::Applied { applied: a, digest: d, .. } => {
                        applied = a;
                        digest = d;
                    }
                    IssReport::Stable { .. } => {}
                }
            }
            if exit_after.is_some_and(|n| applied >= n as u64) || run.is_finished() {
                break;
            }
            let mut batch = Vec::new();
            if next_tx < txs && (restarting || last_tick.elapsed() >= Duration::from_millis(10)) {
                last_tick = Instant::now();
                let upto = if restarting { txs } else { (next_tx + per_tick).min(txs) };
                batch.extend((next_tx..upto).map(tx_of));
                next_tx = upto;
            }
            while retry.front().is_some_and(|(t, _)| t.elapsed() >= Duration::from_millis(100)) {
                let (_, nos) = retry.pop_front().expect("checked");
                batch.extend(nos.into_iter().map(tx_of));
            }
            if !batch.is_empty() {
                handle
                    .inject(vec![Event::new("app", "mempool", NewTransactions { txs: batch })])
                    .await?;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The application's count and digest: with a WAL they include what was applied before a
        // restart.
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        say!("node {me} delivered {applied} transactions, log digest {hex}");
        // Stay a while (3 s, or --linger): the others may still need this node for their last
        // batches, or to catch up.
        tokio::time::sleep(Duration::from_secs_f64(cli.linger.clamp(3.0, 3600.0))).await;
        handle.stop();
        run.await??;
        Ok(())
    })
}

/// `iss replay`: node `node` of the run recorded under `log`, into fresh modules built as the run
/// built them.
fn replay(log: &std::path::Path, node: &str, step: Option<Option<usize>>) -> Result<(), Error> {
    let run = RunSettings::load(log)?;
    let me = NodeId::try_new(node)?;
    if !run.members.iter().any(|(n, _)| *n == me) {
        return Err(format!("node {me} is not in the recorded membership").into());
    }
    let builder = mir_dsl::mir_runtime::NodeBuilder::new(me.clone());
    let builder = protocols::ordering::iss::add_to(
        builder,
        me.clone(),
        run.members.clone(),
        &run.node_settings(),
    )?;
    let mut fresh = builder.into_passive_modules();
    fresh.retain(|id, _| id.as_str() != "crypto"); // its answers are in the log
    examples::cluster::replay_recorded(log, &me, fresh, step)
}

/// The simulated cluster of `iss sim`.
fn sim_cluster(
    sim: &mut mir_dsl::mir_runtime::sim::Simulation,
    cli: &Cli,
    report: mpsc::Sender<IssReport>,
) -> Result<(), mir_dsl::mir_runtime::sim::SimError> {
    let toml = examples::cluster::membership_toml(cli.nodes, "127.0.0.1", 7000, DEMO_SEED)
        .expect("a membership of test keys");
    let membership = Membership::from_toml_str(&toml, "generated").expect("a valid membership");
    let settings = settings(cli);
    for id in membership.ids() {
        let keys = NodeKeys::test(DEMO_SEED, &id);
        let b = examples::iss::demo_modules(
            id.clone(),
            &membership,
            keys.signing,
            &settings,
            report.clone(),
            None,
        )
        .expect("the demo's modules");
        sim.add_node(b)?;
    }
    for id in membership.ids() {
        let txs: Vec<Tx> = (0..2)
            .flat_map(|c| {
                (0..cli.txs).map(move |i| {
                    Tx::new(format!("client-{c}").as_str(), i, format!("tx {i} of client {c}"))
                })
            })
            .collect();
        sim.inject(&id, vec![Event::new("app", "mempool", NewTransactions { txs })])?;
    }
    Ok(())
}

/// `iss sim`.
fn sim(cli: &Cli, seed: u64, check: bool, seconds: f64) -> Result<(), Error> {
    use mir_dsl::mir_runtime::sim::{check_determinism, SimConfig, Simulation};
    if cli.nodes < 1 || cli.segment_length < 1 {
        return Err("--nodes and --segment-length must be at least 1".into());
    }
    if !(0.0..=3600.0).contains(&seconds) {
        return Err("--seconds must be between 0 and 3600".into());
    }
    let time = Duration::from_secs_f64(seconds);
    if check {
        let digest = check_determinism(
            SimConfig::with_seed(seed),
            |sim| sim_cluster(sim, cli, mpsc::channel().0),
            |sim| sim.run_for(time).map(|_| ()),
        )?;
        say!("seed {seed}: two runs identical; digest {digest}");
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    sim_cluster(&mut sim, cli, tx)?;
    let first = NodeId::from_index(0);
    let mut delivered = 0;
    let end = sim.now().since_start() + time;
    while sim.now().since_start() < end && sim.step()? {
        while let Ok(r) = rx.try_recv() {
            match r {
                IssReport::Batch { node, sn, txs } if node == first && !txs.is_empty() => {
                    delivered += txs.len();
                    if !cli.quiet {
                        say!("[{}] node {node} sn {sn}: {} txs", sim.now(), txs.len());
                    }
                }
                IssReport::Epoch { node, epoch, leaders } if node == first => {
                    let l: Vec<String> = leaders.iter().map(|n| n.to_string()).collect();
                    say!(
                        "[{}] node {node}: epoch {epoch} starts, leaders [{}]",
                        sim.now(),
                        l.join(", ")
                    );
                }
                _ => {}
            }
        }
    }
    let s = sim.summary();
    say!(
        "seed {seed}: node 0 delivered {delivered} transactions; {} steps, {} events, {} messages, simulated time {}",
        s.steps,
        s.events,
        s.messages_delivered,
        s.time
    );
    say!("digest {}", sim.digest());
    Ok(())
}
