//! Ping-pong on the Mir runtime, written without the DSL.
//!
//! ```text
//! cargo run -p examples --bin pingpong                 # one node on tokio, two modules
//! cargo run -p examples --bin pingpong -- sim --seed 7 # two nodes in the deterministic simulator
//! ```

use std::sync::mpsc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use examples::pingpong::{Peer, Pinger, Ponger};
use examples::say;

use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdmodules::{Timer, TimerHandle};
use mir_runtime::{ModuleId, Node, NodeConfig};

#[derive(Parser)]
#[command(about = "Ping-pong between two modules written against mir-runtime directly")]
struct Cli {
    /// How many pings.
    #[arg(long, default_value_t = 5)]
    count: u64,
    /// Milliseconds between pings.
    #[arg(long, default_value_t = 200)]
    period_ms: u64,
    /// Print node statistics every this many milliseconds (tracing, INFO).
    #[arg(long)]
    stats_ms: Option<u64>,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand, Clone)]
enum Mode {
    /// One node, two modules, on the production (tokio) executor (the default).
    Local,
    /// Two nodes over the simulated network in the deterministic simulator.
    Sim {
        /// The seed: the same seed gives the same run, bit for bit.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Use the modules written in the DSL (the run is bit-for-bit the same).
        #[arg(long)]
        dsl: bool,
        /// Instead of printing, run twice with the seed and report the first divergence (or
        /// that the runs are identical).
        #[arg(long)]
        check: bool,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    if cli.count == 0 || cli.period_ms == 0 {
        eprintln!("error: --count and --period-ms must be at least 1");
        std::process::exit(2);
    }
    let result = match cli.mode.clone().unwrap_or(Mode::Local) {
        Mode::Local => local(&cli),
        Mode::Sim { seed, dsl, check: true } => check(&cli, seed, dsl),
        Mode::Sim { seed, dsl, check: false } => sim(&cli, seed, dsl),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn local(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = mpsc::channel();
    let period = Duration::from_millis(cli.period_ms);
    let node = Node::builder("0")
        .config(NodeConfig {
            stats_period: cli.stats_ms.map(Duration::from_millis),
            ..NodeConfig::default()
        })
        .passive(
            "ping",
            Pinger::new(
                Peer::Local(ModuleId::new("pong")),
                TimerHandle::new(ModuleId::new("timer")),
                period,
                cli.count,
                tx,
            ),
        )
        .passive(
            "pong",
            Ponger {
                local_reply: Some(ModuleId::new("ping")),
                net: ModuleId::new("net"),
                remote_pinger: ModuleId::new("ping"),
            },
        )
        .active("timer", Timer::new())
        .build()?;
    let handle = node.handle();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    rt.block_on(async move {
        let run = tokio::spawn(node.run());
        let mut got = 0;
        while got < cli.count {
            tokio::time::sleep(Duration::from_millis(10)).await;
            while let Ok(line) = rx.try_recv() {
                say!("{line}");
                got += 1;
            }
            if run.is_finished() {
                break;
            }
        }
        handle.stop();
        run.await??;
        let stats = handle.stats();
        for m in &stats.modules {
            say!(
                "module {:<6} handled {:>4} events in {:>4} batches",
                m.module.as_str(),
                m.events_handled,
                m.batches
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

fn sim(cli: &Cli, seed: u64, dsl: bool) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, rx) = mpsc::channel();
    let period = Duration::from_millis(cli.period_ms);
    let mut sim = Simulation::new(SimConfig::with_seed(seed));
    let (n0, n1) = examples::pingpong::two_nodes(period, cli.count, tx, dsl);
    sim.add_node(n0)?;
    sim.add_node(n1)?;
    let mut got = 0;
    while got < cli.count {
        if !sim.step()? {
            break;
        }
        while let Ok(line) = rx.try_recv() {
            say!("[{}] {line}", sim.now());
            got += 1;
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

fn check(cli: &Cli, seed: u64, dsl: bool) -> Result<(), Box<dyn std::error::Error>> {
    let period = Duration::from_millis(cli.period_ms);
    let run_for = period * (cli.count as u32 + 2);
    let digest = mir_runtime::sim::check_determinism(
        SimConfig::with_seed(seed),
        |sim| {
            let (tx, _rx) = mpsc::channel();
            let (n0, n1) = examples::pingpong::two_nodes(period, cli.count, tx, dsl);
            sim.add_node(n0)?;
            sim.add_node(n1)?;
            Ok(())
        },
        |sim| sim.run_for(run_for).map(|_| ()),
    )?;
    say!("seed {seed}: two runs identical; digest {digest}");
    Ok(())
}
