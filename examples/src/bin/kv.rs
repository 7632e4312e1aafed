//! The replicated key-value store of the SMR system (`docs/smr.md`): nodes built with
//! `protocols::smr::system::System`, and a command-line client of their client service.
//!
//! ```text
//! kv                                              # demo: 4 nodes here, a client, a follower
//! kv membership --nodes 4 --base-port 7200 > kv.toml          # demo keys
//! kv node --id 0 --membership kv.toml --insecure-test-keys --clients 127.0.0.1:7300 [--wal DIR]
//! kv client --nodes 127.0.0.1:7300,127.0.0.1:7301 --id alice put color blue
//! kv client --nodes 127.0.0.1:7300 --id alice get color
//! kv client --nodes 127.0.0.1:7300 --id alice            # one command per line from stdin
//! kv client --nodes 127.0.0.1:7300 follow --from 0       # print the log as it is delivered
//! ```

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::NodeId;
use protocols::smr::client::SmrClient;
use protocols::smr::kv::KvStore;
use protocols::smr::service::Receipt;
use protocols::smr::system::System;

type Error = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(about = "A replicated key-value store (ISS over PBFT and the availability layer)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a membership file with demo keys.
    Membership(examples::cluster::MembershipArgs),
    /// Run one node of a membership file.
    Node {
        #[command(flatten)]
        node: examples::cluster::NodeArgs,
        /// Where clients connect.
        #[arg(long)]
        clients: SocketAddr,
        /// Crash recovery: a write-ahead log in DIR (started again on it, the node resumes).
        #[arg(long, value_name = "DIR")]
        wal: Option<PathBuf>,
        /// This node lost its disk after it took part: rejoin (docs/recovery.md, "Amnesia").
        #[arg(long)]
        rejoin: bool,
    },
    /// Submit commands (`put KEY VALUE`, `get KEY`, `del KEY`), or follow the log.
    Client {
        /// The nodes' client addresses, comma-separated (tried in turn).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<SocketAddr>,
        /// The client's ID.
        #[arg(long, default_value = "cli")]
        id: String,
        /// The number of the first transaction (default: the next one this client used from
        /// this machine, kept in the temporary directory).
        #[arg(long)]
        tx_no: Option<u64>,
        /// What to do; none: one command per line from stdin (`put KEY VALUE`, `get KEY`, `del
        /// KEY`).
        #[command(subcommand)]
        action: Option<Action>,
    },
}

#[derive(Subcommand)]
enum Action {
    /// `put KEY VALUE`: prints the previous value (`+VALUE`) or `-`.
    Put {
        /// The key (one word).
        key: String,
        /// The value (the rest of the line).
        #[arg(trailing_var_arg = true, required = true)]
        value: Vec<String>,
    },
    /// `get KEY`: prints `+VALUE` or `-`.
    Get {
        /// The key.
        key: String,
    },
    /// `del KEY`: prints the previous value (`+VALUE`) or `-`.
    Del {
        /// The key.
        key: String,
    },
    /// Print the log as a node delivers it.
    Follow {
        /// The first sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many transactions.
        #[arg(long)]
        count: Option<u64>,
    },
}

fn main() {
    examples::init_logging();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let res = match cli.cmd {
        None => rt.block_on(demo()),
        Some(Cmd::Membership(m)) => m.toml().map(|t| print!("{t}")).map_err(Into::into),
        Some(Cmd::Node { node, clients, wal, rejoin }) => rt.block_on(async {
            let (me, membership, keys) = node.load()?;
            run_node(me, membership, keys, clients, wal, rejoin).await
        }),
        Some(Cmd::Client { nodes, id, tx_no, action }) => {
            rt.block_on(client(nodes, id, tx_no, action))
        }
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// One node, until Ctrl-C.
async fn run_node(
    me: NodeId,
    membership: Membership,
    keys: NodeKeys,
    clients: SocketAddr,
    wal: Option<PathBuf>,
    rejoin: bool,
) -> Result<(), Error> {
    let mut b = System::builder(me.clone(), membership, keys).clients(clients).rejoin(rejoin);
    if let Some(dir) = wal {
        b = b.wal(dir);
    }
    let node = b.build(KvStore::default())?.start();
    eprintln!("node {me}: clients at {clients}; waiting for the others");
    if node.wait_connected(Duration::from_secs(60)).await {
        eprintln!("node {me}: connected");
    }
    tokio::signal::ctrl_c().await?;
    eprintln!("node {me}: stopping");
    node.stop().await?;
    Ok(())
}

fn show(r: &Receipt) -> String {
    let result = String::from_utf8_lossy(&r.result);
    if r.restored {
        "ordered (this node caught up by state transfer: no result here)".into()
    } else {
        format!("sn {}.{}: {result}", r.sn, r.index)
    }
}

/// Where the CLI keeps a client's next number.
fn state_file(id: &str) -> PathBuf {
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::env::temp_dir().join(format!("kv-client-{safe}.next"))
}

async fn client(
    nodes: Vec<SocketAddr>,
    id: String,
    tx_no: Option<u64>,
    action: Option<Action>,
) -> Result<(), Error> {
    let command = match action {
        Some(Action::Follow { from, count }) => return follow(nodes, from, count).await,
        Some(Action::Put { key, value }) => Some(format!("put {key} {}", value.join(" "))),
        Some(Action::Get { key }) => Some(format!("get {key}")),
        Some(Action::Del { key }) => Some(format!("del {key}")),
        None => None,
    };
    let state = state_file(&id);
    let start = match tx_no {
        Some(n) => n,
        None => {
            std::fs::read_to_string(&state).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
        }
    };
    let mut c = SmrClient::new(id.clone(), nodes).starting_at(start);
    let Some(command) = command else {
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match submit(&mut c, &state, line).await {
                Ok(r) => println!("{}", show(&r)),
                Err(e) => println!("error: {e}"),
            }
        }
        return Ok(());
    };
    let r = submit(&mut c, &state, command).await?;
    println!("{}", show(&r));
    Ok(())
}

/// Submits `line` as the client's next transaction (the client says when the number is used
/// up; after "no node answered", submit the same command again with the error's number as
/// `--tx-no`).
async fn submit(
    c: &mut SmrClient,
    state: &std::path::Path,
    line: String,
) -> Result<Receipt, Error> {
    let r = c.submit(line.into_bytes()).await;
    std::fs::write(state, format!("{}\n", c.next_tx_no()))?;
    Ok(r?)
}

async fn follow(nodes: Vec<SocketAddr>, from: u64, count: Option<u64>) -> Result<(), Error> {
    let mut c = SmrClient::new("follower", nodes);
    let mut stream = c.deliveries(from).await?;
    let mut seen = 0;
    while let Some(d) = stream.message().await? {
        for t in d.txs {
            println!(
                "sn {}: {} #{}: {} -> {}",
                d.sn,
                t.client_id,
                t.tx_no,
                String::from_utf8_lossy(&t.payload),
                String::from_utf8_lossy(&t.result)
            );
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Four nodes in this process, a client that puts and gets, and a follower.
async fn demo() -> Result<(), Error> {
    let ports = examples::cluster::free_ports(4)?;
    let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports, 42)?;
    let membership = Membership::from_toml_str(&toml, "generated")?;
    let mut nodes = Vec::new();
    let mut addrs = Vec::new();
    for id in membership.ids() {
        let keys = NodeKeys::test(42, &id);
        let built = System::builder(id, membership.clone(), keys)
            .clients("127.0.0.1:0".parse()?)
            .build(KvStore::default())?;
        addrs.push(built.clients().expect("asked for").local_addr());
        nodes.push(built.start());
    }
    for n in &nodes {
        if !n.wait_connected(Duration::from_secs(30)).await {
            return Err("the nodes did not connect within 30 s".into());
        }
    }
    println!("4 nodes; client services at {addrs:?}");
    let mut alice = SmrClient::new("alice", addrs.clone());
    for cmd in [
        "put color blue",
        "put shape circle",
        "get color",
        "put color green",
        "del shape",
        "get shape",
    ] {
        let r = alice.submit(cmd.as_bytes().to_vec()).await?;
        println!("alice: {cmd:<18} {}", show(&r));
    }
    let mut follower = SmrClient::new("follower", addrs.clone()).prefer(3);
    let mut log = follower.deliveries(0).await?;
    println!("the log, as node 3 delivered it:");
    let mut seen = 0;
    while seen < 6 {
        let Some(d) = log.message().await? else { break };
        for t in &d.txs {
            println!(
                "  sn {}: {} #{} {}",
                d.sn,
                t.client_id,
                t.tx_no,
                String::from_utf8_lossy(&t.payload)
            );
            seen += 1;
        }
    }
    for n in nodes {
        n.stop().await?;
    }
    Ok(())
}
