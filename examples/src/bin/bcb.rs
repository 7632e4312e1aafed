//! Signed Echo Broadcast over gRPC with real k256 signatures.
//!
//! ```text
//! cargo run -p examples --bin bcb                         # 4 nodes in this process, on loopback
//! cargo run -p examples --bin bcb -- --interactive        # the leader broadcasts each line of stdin
//! cargo run -p examples --bin bcb -- membership --nodes 4 --base-port 7000 > m.toml   # demo keys
//! cargo run -p examples --bin bcb -- node --id 0 --membership m.toml --insecure-test-keys --message hi
//! cargo run -p examples --bin bcb -- node --id 0 --membership m.toml --keys keys/   # keys from `mir keygen`
//! cargo run -p examples --bin bcb -- sim --seed 3 [--check]   # 4 simulated nodes; --check: twice, identical?
//! cargo run -p examples --bin bcb -- --record /tmp/bcb-log    # record every node's events
//! cargo run -p examples --bin bcb -- cat /tmp/bcb-log --event bcb.Final   # mircat, BCB payloads decoded
//! cargo run -p examples --bin bcb -- replay --log /tmp/bcb-log --node 2 --step   # Enter for each batch
//! ```

use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use examples::bcb::{
    demo_node, free_ports, membership_toml, membership_toml_with_ports, BcbReport, Submit,
};
use mir_dsl::mir_runtime::keys::{NodeKeys, DEMO_SEED};
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::{Event, NodeHandle, NodeId};

#[derive(Parser)]
#[command(about = "Signed Echo Broadcast (BCB) over gRPC with k256 signatures")]
struct Cli {
    /// Nodes in the local cluster.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// The message the leader broadcasts.
    #[arg(long, default_value = "hello from the leader")]
    message: String,
    /// Broadcast each line of standard input instead (until end of input).
    #[arg(long)]
    interactive: bool,
    /// Record every node's events under this directory (read them with mircat, replay them with
    /// `bcb replay`).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run 4 nodes (k256 signatures) in the deterministic simulator: the leader broadcasts 3
    /// messages; prints every delivery with its simulated time, and the run's digest.
    Sim {
        /// The simulation's seed (same seed, same run).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run twice and check both runs are identical event for event.
        #[arg(long)]
        check: bool,
        /// Nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// mircat (see `mircat --help`) with the payload types of this program decoded, BCB's among
    /// them: `bcb cat LOGDIR --event bcb.Final`.
    Cat {
        /// mircat's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Replay a node's recorded events into a fresh BCB module, in the recorded batches, and
    /// check it emits what was recorded. `--step` shows each batch and what each module emitted,
    /// waiting for Enter after each; `--step N` shows N batches without waiting, then replays
    /// the rest silently.
    Replay {
        /// The directory given to `--record`.
        #[arg(long)]
        log: std::path::PathBuf,
        /// The node to replay.
        #[arg(long, default_value = "0")]
        node: String,
        /// Nodes in the recorded cluster (equal weights, as the local cluster uses).
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Show each batch and what it produced: wait for Enter after each, or with N, show N
        /// batches without waiting.
        #[arg(long, num_args = 0..=1, value_name = "N")]
        step: Option<Option<usize>>,
    },
    /// Print a membership file (TOML) with test keys, for running one node per process.
    Membership(examples::cluster::MembershipArgs),
    /// Run one node of a membership file (one process per node, on one or several machines).
    Node {
        #[command(flatten)]
        node: examples::cluster::NodeArgs,
        /// The leader's ID.
        #[arg(long, default_value = "0")]
        leader: String,
        /// On the leader: the message to broadcast.
        #[arg(long)]
        message: Option<String>,
        /// On the leader: broadcast each line of standard input.
        #[arg(long)]
        interactive: bool,
        /// Exit after this many deliveries (default: run until interrupted or end of input).
        #[arg(long)]
        exit_after: Option<u64>,
    },
}

use examples::say;

type Error = Box<dyn std::error::Error>;

fn main() {
    examples::init_logging();
    let cli = Cli::parse();
    let res = match &cli.cmd {
        None => local(&cli),
        Some(Cmd::Replay { log, node, nodes, step }) => replay(log, node, *nodes, *step),
        Some(Cmd::Sim { seed, check, nodes }) => sim(*seed, *check, *nodes),
        Some(Cmd::Cat { args }) => {
            let argv = std::iter::once(std::ffi::OsString::from("bcb cat")).chain(args.clone());
            std::process::exit(mir_dsl::mir_runtime::eventlog::cli::run(argv));
        }
        Some(Cmd::Membership(m)) => m.toml().map(|t| print!("{t}")).map_err(Error::from),
        Some(Cmd::Node { node, leader, message, interactive, exit_after }) => {
            one_node(node, leader, message.clone(), *interactive, *exit_after)
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn print(r: &BcbReport) {
    match r {
        BcbReport::Delivered { node, instance, data } => {
            say!("node {node} delivered #{instance}: {}", String::from_utf8_lossy(data))
        }
        BcbReport::Refused(why) => say!("broadcast refused: {why}"),
    }
}

/// Reads stdin lines into the leader in a thread; returns how many were submitted.
fn feed_stdin(leader: NodeHandle) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if leader
                .blocking_inject(vec![Event::new("app", "app", Submit { data: line.into_bytes() })])
                .is_err()
            {
                break;
            }
            n += 1;
        }
        n
    })
}

fn local(cli: &Cli) -> Result<(), Error> {
    if cli.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let rt = runtime()?;
    let toml = membership_toml_with_ports("127.0.0.1", &free_ports(cli.nodes)?, DEMO_SEED)?;
    let membership = Membership::from_toml_str(&toml, "generated")?;
    let ids = membership.ids();
    let (tx, rx) = mpsc::channel();
    rt.block_on(async {
        let nodes = ids
            .iter()
            .map(|id| {
                demo_node(
                    id.clone(),
                    ids[0].clone(),
                    &membership,
                    NodeKeys::test(DEMO_SEED, id),
                    tx.clone(),
                    cli.record.as_deref(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = examples::cluster::start(nodes, Duration::from_secs(10)).await?;
        let handles = &cluster.handles;
        say!("{} nodes connected over gRPC on loopback; leader is node {}", ids.len(), ids[0]);
        let expected = if cli.interactive {
            say!("type messages for the leader to broadcast (end with Ctrl-D)");
            let feeder = feed_stdin(handles[0].clone());
            let mut delivered = 0u64;
            loop {
                while let Ok(r) = rx.try_recv() {
                    print(&r);
                    delivered += 1;
                }
                if feeder.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            feeder.join().map_err(|_| "stdin reader panicked")? * ids.len() as u64 - delivered
        } else {
            handles[0]
                .inject(vec![Event::new(
                    "app",
                    "app",
                    Submit { data: cli.message.clone().into_bytes() },
                )])
                .await?;
            ids.len() as u64
        };
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got < expected && tokio::time::Instant::now() < deadline {
            while let Ok(r) = rx.try_recv() {
                print(&r);
                got += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        cluster.stop().await?;
        if got < expected {
            return Err(format!("only {got} of {expected} deliveries within 30 s").into());
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
fn one_node(
    node: &examples::cluster::NodeArgs,
    leader: &str,
    message: Option<String>,
    interactive: bool,
    exit_after: Option<u64>,
) -> Result<(), Error> {
    let (me, membership, keys) = node.load()?;
    let leader = NodeId::try_new(leader)?;
    if (message.is_some() || interactive) && me != leader {
        return Err(format!(
            "only the leader ({leader}) broadcasts; drop --message/--interactive on node {me}"
        )
        .into());
    }
    let rt = runtime()?;
    let (tx, rx) = mpsc::channel();
    rt.block_on(async {
        let n = demo_node(me.clone(), leader.clone(), &membership, keys, tx, None)?;
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
        if let Some(m) = message {
            handle.inject(vec![Event::new("app", "app", Submit { data: m.into_bytes() })]).await?;
        }
        let feeder = interactive.then(|| feed_stdin(handle.clone()));
        let mut got = 0;
        loop {
            while let Ok(r) = rx.try_recv() {
                print(&r);
                got += 1;
            }
            if exit_after.is_some_and(|n| got >= n) || run.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Stay a moment so peers can finish with our messages, then stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.stop();
        run.await??;
        drop(feeder);
        Ok(())
    })
}

fn replay(
    log: &std::path::Path,
    node: &str,
    nodes: usize,
    step: Option<Option<usize>>,
) -> Result<(), Error> {
    use mir_dsl::mir_runtime::{ModuleId, PassiveModule};
    let me = NodeId::try_new(node)?;
    let ids: Vec<NodeId> = (0..nodes).map(NodeId::from_index).collect();
    let modules = protocols::bcb::BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let bcb = protocols::bcb::factory(modules, mir_dsl::Voters::equal(ids), me.clone());
    let mut fresh: std::collections::BTreeMap<ModuleId, Box<dyn PassiveModule>> =
        Default::default();
    fresh.insert(ModuleId::new("bcb"), Box::new(bcb));
    examples::cluster::replay_recorded(log, &me, fresh, step)
}

/// The simulated cluster: `nodes` nodes with test keys, node 0 leading; returns the leader.
fn sim_cluster(
    sim: &mut mir_dsl::mir_runtime::sim::Simulation,
    nodes: usize,
    report: mpsc::Sender<BcbReport>,
) -> Result<(), mir_dsl::mir_runtime::sim::SimError> {
    let toml =
        membership_toml(nodes, "127.0.0.1", 7000, DEMO_SEED).expect("a membership of test keys");
    let membership = Membership::from_toml_str(&toml, "generated").expect("a valid membership");
    let leader = NodeId::from_index(0);
    for i in 0..nodes {
        let me = NodeId::from_index(i);
        let keys = NodeKeys::test(DEMO_SEED, &me);
        let b = examples::bcb::demo_modules(
            me,
            leader.clone(),
            &membership,
            keys.signing,
            report.clone(),
        )
        .expect("the demo's modules");
        sim.add_node(b)?;
    }
    let submit = (0..3u8)
        .map(|k| Event::new("@node", "app", Submit { data: format!("message {k}").into_bytes() }));
    sim.inject(&leader, submit.collect())
}

fn sim(seed: u64, check: bool, nodes: usize) -> Result<(), Error> {
    use mir_dsl::mir_runtime::sim::{check_determinism, SimConfig, Simulation};
    if nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let limit = Duration::from_secs(60);
    if check {
        let digest = check_determinism(
            SimConfig::with_seed(seed),
            |sim| sim_cluster(sim, nodes, mpsc::channel().0),
            |sim| sim.run_until_idle(limit).map(|_| ()),
        )?;
        say!("seed {seed}: two runs identical; digest {digest}");
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    sim_cluster(&mut sim, nodes, tx)?;
    while sim.step()? {
        while let Ok(r) = rx.try_recv() {
            match r {
                BcbReport::Delivered { node, instance, data } => {
                    say!(
                        "[{}] node {node} delivered #{instance}: {}",
                        sim.now(),
                        String::from_utf8_lossy(&data)
                    )
                }
                BcbReport::Refused(why) => say!("[{}] refused: {why}", sim.now()),
            }
        }
        if sim.now().since_start() > limit {
            return Err(
                format!("seed {seed}: still running after {limit:?} of simulated time").into()
            );
        }
    }
    let s = sim.summary();
    say!(
        "seed {seed}: {} steps, {} events, {} messages, simulated time {}",
        s.steps,
        s.events,
        s.messages_delivered,
        s.time
    );
    say!("digest {}", sim.digest());
    Ok(())
}
