//! The benchmark harness: starts ISS nodes and load clients as separate processes on loopback
//! (gRPC with TLS between the nodes, k256 for the protocol's own signatures), shows the live
//! rate, stops everything, and prints a summary in the form of the HotStuff and Narwhal
//! benchmark scripts. What is measured, and how: `examples::bench` and `docs/benchmarks.md`.
//!
//! ```text
//! cargo run --release -p examples --bin bench -- --nodes 4 --clients 4 --rate 50000 --tx-size 512 --duration 30
//! cargo run --release -p examples --bin bench -- --sweep 10000,50000,100000 --duration 20 --out bench-results
//! cargo run --release -p examples --bin bench -- --leader-policy single --sweep 10000,50000 --out bench-results
//! cargo run --release -p examples --bin bench -- plot bench-results/bench.csv --out bench-results/bench.svg
//! ```
//!
//! Each run appends a row to `OUT/bench.csv` and redraws `OUT/bench.svg` from all its rows (one
//! line per configuration); the nodes' and clients' logs are in `OUT/<label>-<rate>/`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use examples::bench::{self, Burst, ClientReport, NodeReport, Results, RunConfig};
use examples::cluster::{free_ports, membership_toml_with_ports};
use mir_dsl::mir_runtime::keys::{NodeKeys, DEMO_SEED};
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::{
    Batch, Event, ModuleId, ModuleResult, NodeHandle, NodeId, Outbox, PassiveModule,
};
use protocols::availability::batchfetcher::{NewOrderedBatch, RestoreState, SnapshotRequest};
use protocols::availability::mempool::{NewTransactions, RejectKind, TransactionsRejected};
use protocols::ordering::checkpoint::AppSnapshot;
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::{self, IssConfig, Mode, NodeSettings};

#[derive(Parser)]
#[command(
    about = "Benchmark harness: ISS nodes and load clients as processes, HotStuff-style summary"
)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    proto: ProtoArgs,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Nodes.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Load clients (processes); each sends to every node (see --submit-to).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// `all`: each client sends every transaction to every node (the ISS paper's clients:
    /// no leader can censor them). `one`: client `c` sends only to node `c mod n`, as the
    /// HotStuff and Narwhal benchmark clients do; pair it with `--mode redundant`, where any
    /// leader proposes what it holds (with buckets, a transaction waits for an epoch in which
    /// its node leads its bucket).
    #[arg(long, default_value = "all", value_parser = ["all", "one"])]
    submit_to: String,
    /// Transactions per second offered, all clients together.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Bytes per transaction.
    #[arg(long, default_value_t = 512)]
    tx_size: usize,
    /// Seconds the clients send.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Several offered rates, one run each (`10000,50000,100000`); replaces --rate.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<u64>,
    /// Where the CSV, the plot and the logs go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The configuration's name in the CSV and the plot (default: from the protocol options).
    #[arg(long)]
    label: Option<String>,
    /// After each summary, print where the nodes' time went (busy time per module).
    #[arg(long)]
    stats: bool,
}

/// The protocol's options, passed on to every node.
#[derive(Args, Clone, Debug)]
struct ProtoArgs {
    /// `iss`, or `pbft`: PBFT alone, one leader at a time (ISS's frame with the single-leader
    /// policy and segments of 64 sequence numbers unless --segment-length says otherwise; the
    /// epochs stay because clients' windows and the mempools' pruning move at epoch ends).
    #[arg(long, default_value = "iss")]
    protocol: String,
    /// `bucketed` (the paper) or `redundant` (Trantor).
    #[arg(long, default_value = "bucketed")]
    mode: Mode,
    /// Leader policy: simple (every node leads), single (one leader per epoch, rotating),
    /// backoff or blacklist.
    #[arg(long, default_value = "simple")]
    leader_policy: LeaderPolicy,
    /// Sequence numbers per segment (default: ISS's, 4; 64 with --protocol pbft).
    #[arg(long)]
    segment_length: Option<u64>,
    /// Most transactions in a batch (the library's default is Mir's 1,024; the harness uses
    /// 4,096: below saturation batches are sealed by the timeout long before they fill, and at
    /// high load fewer, larger batches need fewer certificates; see docs/benchmarks.md).
    #[arg(long, default_value_t = 4096)]
    batch_size: usize,
    /// How long a batch request waits for a full batch, in milliseconds (the library's default
    /// is Mir's 100 ms; below saturation that wait is most of the latency, so the harness uses
    /// 10 ms unless told otherwise; see docs/benchmarks.md).
    #[arg(long, default_value_t = 10)]
    batch_timeout_ms: u64,
    /// A write-ahead log per node (synced once per batch of events), under the run's directory.
    #[arg(long)]
    wal: bool,
    /// Most transactions a node's mempool holds (the library's default: 100,000); beyond it,
    /// it refuses them as `full` and the clients send them again.
    #[arg(long)]
    mempool_capacity: Option<usize>,
}

impl ProtoArgs {
    fn label(&self) -> String {
        let mut l = match self.protocol.as_str() {
            "pbft" => "pbft".to_string(),
            _ => format!(
                "iss-{}-{}",
                format!("{:?}", self.mode).to_lowercase(),
                format!("{:?}", self.leader_policy).to_lowercase()
            ),
        };
        if let Some(s) = self.segment_length {
            l += &format!("-seg{s}");
        }
        if self.batch_size != 4096 {
            l += &format!("-batch{}", self.batch_size);
        }
        if self.batch_timeout_ms != 10 {
            l += &format!("-timeout{}ms", self.batch_timeout_ms);
        }
        if self.wal {
            l += "-wal";
        }
        if let Some(c) = self.mempool_capacity {
            l += &format!("-mempool{c}");
        }
        l
    }

    fn check(&self) -> Result<(), String> {
        if !matches!(self.protocol.as_str(), "iss" | "pbft") {
            return Err(format!("--protocol {:?}: expected iss or pbft", self.protocol));
        }
        if self.segment_length == Some(0) || self.batch_size == 0 {
            return Err("--segment-length and --batch-size must be at least 1".into());
        }
        if self.mempool_capacity.is_some_and(|c| c < self.batch_size) {
            return Err("--mempool-capacity must hold at least one batch (--batch-size)".into());
        }
        Ok(())
    }

    /// The node settings; `window` is each client's window of transaction numbers.
    fn settings(&self, window: u64) -> NodeSettings {
        let pbft = self.protocol == "pbft";
        let mut s = NodeSettings {
            iss: IssConfig {
                segment_length: self.segment_length.unwrap_or(if pbft { 64 } else { 4 }),
                leader_policy: if pbft { LeaderPolicy::Single } else { self.leader_policy },
                mode: self.mode,
                ..IssConfig::default()
            },
            ..NodeSettings::default()
        };
        // Batches of --batch-size transactions of up to 1 KiB each (the library's 1 MiB
        // otherwise), and signers that take such batches.
        // Each signer's budget per source and epoch holds two segments of full batches (one
        // leader leads a whole epoch with `--protocol pbft`).
        let payload = (self.batch_size * 1024).max(s.availability.mempool.max_payload_in_batch);
        let segment = s.iss.segment_length as usize;
        let msc = &mut s.availability.msc;
        msc.max_txs_in_batch = msc.max_txs_in_batch.max(self.batch_size);
        msc.max_payload_in_batch = msc.max_payload_in_batch.max(payload);
        msc.max_bytes_per_source = msc.max_bytes_per_source.max(payload * segment * 2);
        let m = &mut s.availability.mempool;
        m.max_txs_in_batch = self.batch_size;
        m.max_payload_in_batch = payload;
        m.batch_timeout = Duration::from_millis(self.batch_timeout_ms);
        m.client_window = window.max(m.client_window);
        if let Some(c) = self.mempool_capacity {
            m.capacity_txs = c;
        }
        s
    }

    fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            "--protocol".into(),
            self.protocol.clone(),
            "--mode".into(),
            format!("{:?}", self.mode).to_lowercase(),
            "--leader-policy".into(),
            format!("{:?}", self.leader_policy).to_lowercase(),
            "--batch-size".into(),
            self.batch_size.to_string(),
            "--batch-timeout-ms".into(),
            self.batch_timeout_ms.to_string(),
        ];
        if let Some(s) = self.segment_length {
            a.extend(["--segment-length".into(), s.to_string()]);
        }
        if self.wal {
            a.push("--wal".into());
        }
        if let Some(c) = self.mempool_capacity {
            a.extend(["--mempool-capacity".into(), c.to_string()]);
        }
        a
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Draws the plot of a CSV written by the harness (one line per configuration).
    Plot {
        /// The CSV.
        csv: PathBuf,
        /// The SVG to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// One node (started by the harness): reads load on --load-port, prints what it measures.
    #[command(hide = true)]
    Node {
        #[arg(long)]
        id: String,
        #[arg(long)]
        membership: PathBuf,
        #[arg(long)]
        load_port: u16,
        #[arg(long)]
        client_window: u64,
        /// The WAL's directory (with --wal).
        #[arg(long)]
        wal_dir: Option<PathBuf>,
    },
    /// One load client (started by the harness).
    #[command(hide = true)]
    Client {
        #[arg(long)]
        id: String,
        /// The nodes' load ports on loopback.
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
        /// This client's rate, tx/s.
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        tx_size: usize,
        #[arg(long)]
        duration: f64,
    },
}

/// The nodes and clients allocate and free many small objects (transactions, their IDs, map
/// entries) at high rates: mimalloc serves them far cheaper than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    examples::init_logging();
    let cli = Cli::parse();
    let res = match &cli.cmd {
        None => harness(&cli.run, &cli.proto),
        Some(Cmd::Plot { csv, out }) => plot(csv, out),
        Some(Cmd::Node { id, membership, load_port, client_window, wal_dir }) => {
            node(id, membership, *load_port, *client_window, wal_dir.as_deref(), &cli.proto)
        }
        Some(Cmd::Client { id, ports, rate, tx_size, duration }) => {
            client(id, ports, *rate, *tx_size, *duration)
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Microseconds since the Unix epoch (every process on the machine shares this clock).
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn plot(csv: &Path, out: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    bench::plot(&bench::read_csv(&text)?, out)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The harness

fn harness(run: &RunArgs, proto: &ProtoArgs) -> Result<(), Error> {
    proto.check()?;
    if run.nodes < 1 || run.clients < 1 {
        return Err("--nodes and --clients must be at least 1".into());
    }
    // A transaction must fit a batch (the mempool's 1 MiB, with its client ID and number).
    if run.tx_size < 1 || run.tx_size > 1 << 19 {
        return Err("--tx-size must be between 1 and 524,288 bytes".into());
    }
    if !(run.duration > 0.0 && run.duration <= 3600.0) {
        return Err("--duration must be between 0 and 3600 seconds".into());
    }
    let rates = if run.sweep.is_empty() { vec![run.rate] } else { run.sweep.clone() };
    if let Some(r) = rates.iter().find(|r| **r < run.clients as u64) {
        return Err(format!("rate {r}: at least one transaction per second per client").into());
    }
    // A client's burst is one frame, which a node takes up to `MAX_FRAME` bytes.
    let burst = |r: u64| (r / run.clients as u64 + 1) / bench::BURSTS_PER_SECOND + 1;
    if let Some(r) =
        rates.iter().find(|r| burst(**r) * run.tx_size as u64 > bench::MAX_FRAME as u64 / 2)
    {
        return Err(format!(
            "rate {r}: a client's burst of {} transactions of {} bytes is too large for one frame; use more --clients",
            burst(*r),
            run.tx_size
        )
        .into());
    }
    std::fs::create_dir_all(&run.out).map_err(|e| format!("{}: {e}", run.out.display()))?;
    let label = run.label.clone().unwrap_or_else(|| {
        proto.label() + if run.submit_to == "one" { "-submit-to-one" } else { "" }
    });
    let csv = run.out.join("bench.csv");
    for (i, &rate) in rates.iter().enumerate() {
        eprintln!(
            "run {}/{}: {label}, {} nodes, {} clients, {rate} tx/s of {} B for {} s",
            i + 1,
            rates.len(),
            run.nodes,
            run.clients,
            run.tx_size,
            run.duration
        );
        let config = RunConfig {
            label: label.clone(),
            nodes: run.nodes,
            clients: run.clients,
            rate,
            tx_size: run.tx_size,
            duration: run.duration,
        };
        let dir = run.out.join(format!("{label}-{rate}"));
        let results = one_run(config, proto, &dir, run.submit_to == "one")?;
        print!("{}", results.summary());
        if run.stats {
            print!("{}", results.busy_table());
        }
        std::io::stdout().flush()?;
        let fresh = !csv.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&csv)
            .map_err(|e| format!("{}: {e}", csv.display()))?;
        if fresh {
            writeln!(f, "{}", Results::CSV_HEADER)?;
        }
        writeln!(f, "{}", results.csv_row())?;
    }
    let svg = run.out.join("bench.svg");
    let text = std::fs::read_to_string(&csv)?;
    bench::plot(&bench::read_csv(&text)?, &svg)?;
    eprintln!("results appended to {}; plot of all its rows: {}", csv.display(), svg.display());
    Ok(())
}

/// A line a node or client printed, and which.
enum Line {
    Node(usize, String),
    Client(String, String),
    Closed,
}

/// Child processes that are killed if the harness stops early.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(args: &[String], log: &Path) -> Result<Child, Error> {
    let exe = std::env::current_exe()?;
    let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(exe);
    // mimalloc gives freed memory back to the kernel after a delay; the nodes free and
    // reallocate batches at a steady rate, so what it gave back was soon faulted in again and
    // zeroed by the kernel (a fifth of a node's samples at 90,000 tx/s). Keep it instead, unless
    // the caller chose otherwise. mimalloc reads this at process start.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        cmd.env("MIMALLOC_PURGE_DELAY", "-1");
    }
    Ok(cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()?)
}

fn read_lines(
    child: &mut Child,
    tx: mpsc::Sender<Line>,
    wrap: impl Fn(String) -> Line + Send + 'static,
) {
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(wrap(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(Line::Closed);
    });
}

/// One run; `to_one`: each client sends to one node only (`--submit-to one`).
fn one_run(
    config: RunConfig,
    proto: &ProtoArgs,
    dir: &Path,
    to_one: bool,
) -> Result<Results, Error> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let n = config.nodes;
    let ports = free_ports(2 * n)?;
    let (net_ports, load_ports) = ports.split_at(n);
    let toml = membership_toml_with_ports("127.0.0.1", net_ports, DEMO_SEED)?;
    let membership = dir.join("membership.toml");
    std::fs::write(&membership, toml)?;
    // Each client's window of numbers must hold what it sends while earlier ones are ordered.
    let window = (config.rate / config.clients as u64).saturating_mul(10);
    let (tx, rx) = mpsc::channel();
    let mut nodes = Children(Vec::new());
    let mut stdins: Vec<Option<ChildStdin>> = Vec::new();
    for (i, load_port) in load_ports.iter().enumerate() {
        // The protocol's options belong to the top level, before the subcommand.
        let mut args = proto.to_args();
        args.extend([
            "node".to_string(),
            "--id".into(),
            NodeId::from_index(i).to_string(),
            "--membership".into(),
            membership.display().to_string(),
            "--load-port".into(),
            load_port.to_string(),
            "--client-window".into(),
            window.to_string(),
        ]);
        if proto.wal {
            args.extend(["--wal-dir".into(), dir.join(format!("wal-{i}")).display().to_string()]);
        }
        let mut c = spawn(&args, &dir.join(format!("node-{i}.log")))?;
        read_lines(&mut c, tx.clone(), move |l| Line::Node(i, l));
        stdins.push(c.stdin.take());
        nodes.0.push(c);
    }
    let mut reports: Vec<NodeReport> = vec![NodeReport::default(); n];
    let mut ended = vec![false; n];
    let mut clients_out: BTreeMap<String, ClientReport> = BTreeMap::new();
    // Wait until every node is connected to all others.
    let mut ready = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Line::Node(_, l)) if l == "ready" => ready += 1,
            Ok(Line::Closed) => {
                return Err(
                    format!("a node stopped while starting (logs in {})", dir.display()).into()
                )
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "the nodes did not connect within 60 s (logs in {})",
                    dir.display()
                )
                .into())
            }
        }
    }
    let per_client = config.rate / config.clients as u64;
    let extra = config.rate % config.clients as u64;
    let port_list: Vec<String> = load_ports.iter().map(|p| p.to_string()).collect();
    let mut clients = Children(Vec::new());
    for c in 0..config.clients {
        let id = format!("client-{c}");
        let rate = per_client + u64::from((c as u64) < extra);
        let ports = if to_one { port_list[c % n].clone() } else { port_list.join(",") };
        let args = vec![
            "client".to_string(),
            "--id".into(),
            id.clone(),
            "--ports".into(),
            ports,
            "--rate".into(),
            rate.to_string(),
            "--tx-size".into(),
            config.tx_size.to_string(),
            "--duration".into(),
            config.duration.to_string(),
        ];
        let mut child = spawn(&args, &dir.join(format!("{id}.log")))?;
        let cid = id.clone();
        read_lines(&mut child, tx.clone(), move |l| Line::Client(cid.clone(), l));
        clients_out.insert(id, ClientReport::default());
        clients.0.push(child);
    }
    drop(tx);
    // Follow until every client is done.
    let start = Instant::now();
    let mut progress = Progress::new(config.duration);
    let mut clients_done = 0;
    let mut node0: (u64, u64) = (0, 0); // (time µs, delivered) of node 0's last progress line
    let mut rate_window: std::collections::VecDeque<(u64, u64)> = Default::default();
    let mut closed = 0;
    // Every node's delivered count over time, for a look at the run's course.
    let progress_path = dir.join("progress.csv");
    let mut progress_csv = std::io::BufWriter::new(
        std::fs::File::create(&progress_path)
            .map_err(|e| format!("{}: {e}", progress_path.display()))?,
    );
    writeln!(progress_csv, "unix_us,node,delivered")?;
    loop {
        let line = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match line {
            Some(Line::Node(i, l)) => {
                if let Some((t, d)) = parse_progress(&l) {
                    writeln!(progress_csv, "{t},{i},{d}")?;
                }
                if i == 0 {
                    if let Some((t, d)) = parse_progress(&l) {
                        node0 = (t, d);
                        rate_window.push_back((t, d));
                        while rate_window.len() > 5 {
                            rate_window.pop_front();
                        }
                    }
                }
                ended[i] |= node_line(&mut reports[i], &l);
            }
            Some(Line::Client(c, l))
                if client_line(clients_out.get_mut(&c).expect("known"), &l) =>
            {
                clients_done += 1;
            }
            Some(Line::Client(..)) => {}
            Some(Line::Closed) => {
                closed += 1;
                if closed == n + config.clients {
                    break;
                }
            }
            None => {}
        }
        if clients_done == config.clients && stdins.iter().any(Option::is_some) {
            // Clients done: stop the nodes (they print their last lines and exit).
            for s in &mut stdins {
                s.take();
            }
            progress.finish();
        }
        if ended.iter().all(|e| *e) && clients_done == config.clients {
            break;
        }
        if stdins.iter().any(Option::is_some) {
            let live = match (rate_window.front(), rate_window.back()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / ((b.0 - a.0) as f64 / 1e6),
                _ => 0.0,
            };
            progress.show(start.elapsed().as_secs_f64(), live, node0.1);
        }
        if start.elapsed().as_secs_f64() > config.duration + 120.0 {
            return Err(format!("the run did not end in time (logs in {})", dir.display()).into());
        }
    }
    for c in &mut clients.0 {
        c.wait()?;
    }
    clients.0.clear();
    for (i, c) in nodes.0.iter_mut().enumerate() {
        let status = c.wait()?;
        if !status.success() || !ended[i] {
            return Err(format!(
                "node {i} did not end cleanly ({status}); its log: {}",
                dir.join(format!("node-{i}.log")).display()
            )
            .into());
        }
    }
    nodes.0.clear();
    Ok(Results::compute(config, &reports, &clients_out))
}

fn parse_progress(l: &str) -> Option<(u64, u64)> {
    let mut w = l.split(' ');
    (w.next()? == "progress").then_some(())?;
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// Takes one line of a node into its report; true for its last line.
fn node_line(r: &mut NodeReport, l: &str) -> bool {
    let w: Vec<&str> = l.split(' ').collect();
    let num = |i: usize| w.get(i).and_then(|x| x.parse::<u64>().ok());
    match w[0] {
        "ingest" => {
            if let (Some(n), Some(t)) = (num(2), num(3)) {
                // A sample sent again (after a refusal) counts from its first arrival.
                r.ingested.entry((w[1].to_string(), n)).or_insert(t);
            }
        }
        "deliver" => {
            if let (Some(n), Some(t)) = (num(2), num(3)) {
                r.delivered_samples.insert((w[1].to_string(), n), t);
            }
        }
        "busy" => {
            if let (Some(secs), Some(events)) =
                (w.get(2).and_then(|x| x.parse::<f64>().ok()), num(3))
            {
                let e = r.busy.entry(w[1].to_string()).or_default();
                e.0 += secs;
                e.1 += events;
            }
        }
        "refused" => {
            if let Some(c) = num(2) {
                r.refused.insert(w[1].to_string(), c);
            }
        }
        "end" => {
            r.delivered = num(1).unwrap_or(0);
            r.first_delivery = num(2).filter(|t| *t > 0);
            r.last_delivery = num(3).filter(|t| *t > 0);
            return true;
        }
        _ => {}
    }
    false
}

/// Takes one line of a client into its report; true for its last line.
fn client_line(r: &mut ClientReport, l: &str) -> bool {
    let w: Vec<&str> = l.split(' ').collect();
    let num = |i: usize| w.get(i).and_then(|x| x.parse::<u64>().ok());
    match w[0] {
        "start" => r.start = num(1),
        "sample" => {
            if let (Some(n), Some(t)) = (num(1), num(2)) {
                r.sent_samples.insert(n, t);
            }
        }
        "end" => {
            r.sent = num(1).unwrap_or(0);
            r.late_bursts = num(2).unwrap_or(0);
            r.resent = num(3).unwrap_or(0);
            return true;
        }
        _ => {}
    }
    false
}

/// The progress bar on standard error (a line every 5 s when it is not a terminal).
struct Progress {
    duration: f64,
    tty: bool,
    last: Option<Instant>,
    done: bool,
}

impl Progress {
    fn new(duration: f64) -> Self {
        Progress { duration, tty: std::io::stderr().is_terminal(), last: None, done: false }
    }

    fn show(&mut self, elapsed: f64, rate: f64, delivered: u64) {
        let every = if self.tty { 0.2 } else { 5.0 };
        if self.done || self.last.is_some_and(|l| l.elapsed().as_secs_f64() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let frac = (elapsed / self.duration).clamp(0.0, 1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let text = format!(
            "[{bar}] {elapsed:>4.0}/{:.0} s | live {} tx/s | delivered {} (node 0)",
            self.duration,
            bench::group(rate),
            bench::group(delivered as f64)
        );
        if self.tty {
            eprint!("\r{text}\x1b[K");
        } else {
            eprintln!("{text}");
        }
    }

    fn finish(&mut self) {
        if !self.done && self.tty {
            eprintln!();
        }
        self.done = true;
        eprintln!("clients done; stopping the nodes");
    }
}

// ---------------------------------------------------------------------------------------------
// A node

/// What the node's application and load endpoint tell the printer.
enum Note {
    Ready,
    Ingested(String, Vec<u64>),
    Delivered {
        txs: u64,
        samples: Vec<(String, u64)>,
    },
    Refused(Vec<String>),
    /// Busy time (seconds) and events handled per module, at the end.
    Busy(Vec<(String, f64, u64)>),
}

/// The benchmark's application: counts what is delivered and reports the samples; its
/// snapshot is the count.
struct BenchApp {
    delivered: u64,
    notes: mpsc::Sender<Note>,
    refusals: Refusals,
    /// Refusals not reported to their client (its channel was full): counted, logged.
    unreported: u64,
}

/// Where to tell each load client which of its transactions the mempool refused for now: its
/// connection's writer (a lookup table of the benchmark's plumbing, never iterated).
type Refusals =
    std::sync::Arc<std::sync::Mutex<HashMap<String, tokio::sync::mpsc::Sender<Vec<u64>>>>>;

impl PassiveModule for BenchApp {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(b) = ev.get::<NewOrderedBatch>() {
                self.delivered += b.txs.len() as u64;
                let samples = b
                    .txs
                    .iter()
                    .filter(|t| t.data.first() == Some(&bench::SAMPLE))
                    .map(|t| (t.client.0.clone(), t.tx_no))
                    .collect();
                let _ = self.notes.send(Note::Delivered { txs: b.txs.len() as u64, samples });
            } else if let Some(s) = ev.get::<SnapshotRequest>() {
                let data = self.delivered.to_le_bytes().to_vec();
                out.send(&ModuleId::new(iss::names::ISS), AppSnapshot { epoch: s.epoch, data });
            } else if let Some(r) = ev.get::<RestoreState>() {
                if let Ok(b) = <[u8; 8]>::try_from(&r.app[..]) {
                    self.delivered = u64::from_le_bytes(b);
                }
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                let why =
                    r.rejected.iter().map(|x| format!("{:?}", x.kind).to_lowercase()).collect();
                let _ = self.notes.send(Note::Refused(why));
                // Refused for now (full, or outside the window while earlier ones are ordered):
                // the client sends them again, so that no number is left out for good (a gap
                // would hold its client's window, and then everything it sends, back).
                let mut again: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
                for x in &r.rejected {
                    if matches!(x.kind, RejectKind::Full | RejectKind::OutsideWindow) {
                        again.entry(x.client.0.as_str()).or_default().push(x.tx_no);
                    }
                }
                let routes = self.refusals.lock().expect("not poisoned");
                for (client, numbers) in again {
                    // A full channel drops them (that client is far behind already): counted and
                    // logged, since those numbers are then never ordered.
                    if let Some(to) = routes.get(client) {
                        let n = numbers.len() as u64;
                        if to.try_send(numbers).is_err() {
                            let before = self.unreported;
                            self.unreported += n;
                            // Logged each time the total passes a power of two (rate-limited).
                            if before.checked_ilog2() != self.unreported.checked_ilog2() {
                                tracing::warn!(
                                    client,
                                    total = self.unreported,
                                    "refusals not reported to the client (its channel is full)"
                                );
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn node(
    id: &str,
    membership: &Path,
    load_port: u16,
    window: u64,
    wal_dir: Option<&Path>,
    proto: &ProtoArgs,
) -> Result<(), Error> {
    use mir_dsl::mir_runtime::stdmodules::{EcdsaCrypto, Timer};
    proto.check()?;
    let me = NodeId::try_new(id)?;
    let membership = Membership::from_file(membership)?;
    let keys = NodeKeys::test(DEMO_SEED, &me);
    let settings = proto.settings(window);
    let (notes, notes_rx) = mpsc::channel();
    let refusals = Refusals::default();
    let builder = mir_dsl::mir_runtime::Node::builder(me.clone())
        .passive(
            "app",
            BenchApp {
                delivered: 0,
                notes: notes.clone(),
                refusals: refusals.clone(),
                unreported: 0,
            },
        )
        .passive_on_worker(
            "crypto",
            EcdsaCrypto::new(keys.signing.clone(), membership.registry()?).threads(2),
        )
        .active("timer", Timer::new());
    let weights = membership.weights();
    let builder = match wal_dir {
        Some(d) => {
            let wal = examples::iss::wal_in(d)?;
            iss::add_to_with_wal(builder, me.clone(), weights, &settings, wal)?
        }
        None => iss::add_to(builder, me.clone(), weights, &settings)?,
    };
    let demo = examples::cluster::over_grpc(&me, &membership, keys.transport, builder, None)
        .map_err(|e| e.to_string())?;
    let printer = std::thread::spawn(move || print_notes(notes_rx));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let n = membership.ids().len();
    rt.block_on(async move {
        let handle = demo.node.handle();
        let run = tokio::spawn(demo.node.run());
        if !demo.grpc.wait_connected(n - 1, Duration::from_secs(30)).await {
            return Err::<(), Error>("not connected to every other node within 30 s".into());
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", load_port)).await?;
        let _ = notes.send(Note::Ready);
        let accept = tokio::spawn(accept_load(listener, handle.clone(), notes.clone(), refusals));
        // Standard input closed (by the harness): stop.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await?;
        accept.abort();
        let busy = handle
            .stats()
            .modules
            .into_iter()
            .map(|m| (m.module.to_string(), m.busy.as_secs_f64(), m.events_handled))
            .collect();
        let _ = notes.send(Note::Busy(busy));
        handle.stop();
        run.await?.map_err(|e| e.to_string())?;
        Ok(())
    })?;
    drop(rt);
    printer.join().map_err(|_| "the printer panicked")?;
    Ok(())
}

/// Prints the node's measurements (see `node_line`); "ready" first, "end" last.
fn print_notes(rx: mpsc::Receiver<Note>) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut delivered, mut first, mut last) = (0u64, 0u64, 0u64);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = Instant::now();
    loop {
        let note = rx.recv_timeout(Duration::from_millis(100));
        let now = now_us();
        match note {
            Ok(Note::Ready) => {
                let _ = writeln!(out, "ready");
                let _ = out.flush();
            }
            Ok(Note::Ingested(c, samples)) => {
                for s in samples {
                    let _ = writeln!(out, "ingest {c} {s} {now}");
                }
            }
            Ok(Note::Delivered { txs, samples }) => {
                if txs > 0 {
                    delivered += txs;
                    if first == 0 {
                        first = now;
                    }
                    last = now;
                }
                for (c, s) in samples {
                    let _ = writeln!(out, "deliver {c} {s} {now}");
                }
            }
            Ok(Note::Busy(modules)) => {
                for (m, secs, events) in modules {
                    let _ = writeln!(out, "busy {m} {secs:.6} {events}");
                }
            }
            Ok(Note::Refused(why)) => {
                for w in why {
                    *refused.entry(w).or_default() += 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if tick.elapsed() >= Duration::from_millis(250) {
            tick = Instant::now();
            let _ = writeln!(out, "progress {now} {delivered}");
            let _ = out.flush();
        }
    }
    for (w, c) in refused {
        let _ = writeln!(out, "refused {w} {c}");
    }
    let _ = writeln!(out, "end {delivered} {first} {last}");
    let _ = out.flush();
}

/// Takes load clients' connections; each sends frames of transactions ([`Burst`]).
async fn accept_load(
    listener: tokio::net::TcpListener,
    handle: NodeHandle,
    notes: mpsc::Sender<Note>,
    refusals: Refusals,
) {
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait instead of spinning.
                tracing::warn!("load port: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (handle, notes, refusals) = (handle.clone(), notes.clone(), refusals.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_load(conn, handle, notes, refusals).await {
                tracing::warn!(%peer, "load connection dropped: {e}");
            }
        });
    }
}

/// Reads a client's bursts into the mempool; writes back what the mempool refused for now.
async fn serve_load(
    conn: tokio::net::TcpStream,
    handle: NodeHandle,
    notes: mpsc::Sender<Note>,
    refusals: Refusals,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.set_nodelay(true).ok();
    let (mut conn, back) = conn.into_split();
    let mut back = Some(back);
    let mut registered: Option<String> = None;
    let mut writer: Option<tokio::task::JoinHandle<()>> = None;
    let mut body = Vec::new(); // reused: a fresh buffer per frame costs fresh pages
    let result = loop {
        let mut len = [0u8; 4];
        match conn.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e.to_string()),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > bench::MAX_FRAME {
            break Err(format!("a frame of {len} bytes (at most {})", bench::MAX_FRAME));
        }
        body.resize(len, 0);
        if let Err(e) = conn.read_exact(&mut body).await {
            break Err(e.to_string());
        }
        let (client, txs, samples) = match Burst::decode_txs(&body) {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        if registered.is_none() {
            // The first frame names the client: its refusals go back on this connection.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u64>>(1024);
            let mut routes = refusals.lock().expect("not poisoned");
            if routes.contains_key(&client) {
                break Err(format!("a second connection of client {client}"));
            }
            routes.insert(client.clone(), tx);
            registered = Some(client.clone());
            let mut back = back.take().expect("a client registers once");
            writer = Some(tokio::spawn(async move {
                while let Some(numbers) = rx.recv().await {
                    for part in numbers.chunks(bench::MAX_REFUSED_PER_FRAME) {
                        if back.write_all(&bench::encode_refused(part)).await.is_err() {
                            return;
                        }
                    }
                }
            }));
        }
        if !samples.is_empty() {
            let _ = notes.send(Note::Ingested(client, samples));
        }
        let ev = Event::new("app", "mempool", NewTransactions { txs });
        if let Err(e) = handle.inject(vec![ev]).await {
            break Err(format!("the node stopped: {e}"));
        }
    };
    if let Some(c) = registered {
        refusals.lock().expect("not poisoned").remove(&c);
    }
    if let Some(w) = writer {
        w.abort();
    }
    result
}

// ---------------------------------------------------------------------------------------------
// A load client

fn client(id: &str, ports: &[u16], rate: u64, tx_size: usize, duration: f64) -> Result<(), Error> {
    use std::sync::{Arc, Mutex};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Per node: the connection, and the numbers it refused for now (to send again).
        let mut conns = Vec::new();
        for p in ports {
            let c = tokio::net::TcpStream::connect(("127.0.0.1", *p))
                .await
                .map_err(|e| format!("node load port {p}: {e}"))?;
            c.set_nodelay(true).ok();
            let (mut read, write) = c.into_split();
            let refused: Arc<Mutex<Vec<u64>>> = Arc::default();
            let queue = refused.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4];
                let mut body = Vec::new();
                while read.read_exact(&mut head).await.is_ok() {
                    let count = u32::from_le_bytes(head) as usize;
                    if count > bench::MAX_REFUSED_PER_FRAME {
                        break; // not what a node sends: stop listening to it
                    }
                    body.resize(8 * count, 0);
                    if read.read_exact(&mut body).await.is_err() {
                        break;
                    }
                    let numbers =
                        body.chunks(8).map(|b| u64::from_le_bytes(b.try_into().expect("8")));
                    queue.lock().expect("not poisoned").extend(numbers);
                }
            });
            conns.push((write, refused));
        }
        let mut out = std::io::stdout().lock();
        let per_burst = rate as f64 / bench::BURSTS_PER_SECOND as f64;
        let period = Duration::from_micros(1_000_000 / bench::BURSTS_PER_SECOND);
        let bursts = (duration * bench::BURSTS_PER_SECOND as f64).round() as u64;
        // `next`: the next transaction's number (numbers stay contiguous, so that the nodes'
        // client windows move); `due`: transactions due so far at the rate.
        let (mut next, mut due, mut late, mut resent) = (0u64, 0.0f64, 0u64, 0u64);
        // The first number of every burst (its sample), to send the same payloads again.
        let mut firsts: Vec<u64> = Vec::new();
        let t0 = tokio::time::Instant::now();
        writeln!(out, "start {}", now_us())?;
        for b in 0..bursts {
            let at = t0 + period * b as u32;
            let before = due.floor() as u64;
            due += per_burst;
            let count = due.floor() as u64 - before;
            if tokio::time::Instant::now() > at + period {
                late += 1; // this burst's time has passed: skip it (never exceed the rate)
                continue;
            }
            tokio::time::sleep_until(at).await;
            if count == 0 {
                continue;
            }
            // What each node refused goes to it again first; no node gets more than `count`
            // transactions in one burst, so the rate stays a ceiling.
            let mut again: Vec<Vec<u64>> = Vec::with_capacity(conns.len());
            for (_, refused) in &conns {
                let mut q = refused.lock().expect("not poisoned");
                let mut numbers = std::mem::take(&mut *q);
                numbers.sort_unstable();
                numbers.dedup();
                if numbers.len() as u64 > count {
                    *q = numbers.split_off(count as usize);
                }
                again.push(numbers);
            }
            let new = count - again.iter().map(|a| a.len() as u64).max().unwrap_or(0);
            let frame = (new > 0).then(|| Burst::new(id, next, new as usize, tx_size).encode());
            if new > 0 {
                writeln!(out, "sample {next} {}", now_us())?;
                firsts.push(next);
            }
            let is_sample = |n: u64| firsts.binary_search(&n).is_ok();
            for ((conn, _), mut numbers) in conns.iter_mut().zip(again) {
                resent += numbers.len() as u64;
                for (first, k) in bench::runs(&mut numbers) {
                    let f = Burst::resend(id, first, k, tx_size, is_sample).encode();
                    conn.write_all(&f).await.map_err(|e| format!("sending to a node: {e}"))?;
                }
                if let Some(f) = &frame {
                    conn.write_all(f).await.map_err(|e| format!("sending to a node: {e}"))?;
                }
            }
            next += new;
        }
        writeln!(out, "end {next} {late} {resent}")?;
        out.flush()?;
        Ok::<(), Error>(())
    })
}
