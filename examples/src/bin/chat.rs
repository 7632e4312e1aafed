//! The chat demo (as Mir's): each node reads lines from its standard input and every node prints
//! the same ordered chat. The chat decides its own membership: `/add-node N` and
//! `/remove-node N` are ordered like messages, and the nodes follow (`docs/smr.md`,
//! "Reconfiguration").
//!
//! ```text
//! chat --id 0        # in four terminals: ids 0, 1, 2, 3 (nodes 0–3 are the first members;
//!                    # `chat 0` works too)
//! chat --id 1
//! chat --id 2
//! chat --id 3
//! > hello            # typed at node 1: every node prints "[sn] 1: hello"
//! > /add-node 4      # typed at any node; then, in a fifth terminal:
//! chat --id 4 --join
//! > /remove-node 0   # node 0 prints that it left, and exits
//! ```
//!
//! Node `N` listens on `127.0.0.1:(7400 + N)` (`--base-port`, or `--ports` for all) and uses the
//! public **demo keys** (insecure: anyone can compute them). Each node keeps a write-ahead log in
//! `--data` (default: `<temp>/mir-chat/node-N`): stopped and started again with the same
//! command, it resumes from its log and the last checkpoint (`--fresh` starts over). Type
//! `/quit` or end the input to stop.

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use mir_dsl::mir_runtime::keys::{NodeKeys, DEMO_SEED};
use mir_dsl::mir_runtime::membership::{Member, Membership};
use mir_dsl::mir_runtime::{Batch, Event, ModuleResult, NodeId, Outbox, PassiveModule};
use protocols::availability::mempool::{NewTransactions, TransactionsRejected};
use protocols::availability::{names, Tx};
use protocols::ordering::iss::reconfig::Left;
use protocols::smr::app::{Applied, Restored};
use protocols::smr::members::{Members, MAX_MEMBERS};
use protocols::smr::system::System;
use protocols::smr::Application;

type Error = Box<dyn std::error::Error>;

/// The first members.
const FIRST: usize = 4;
/// Messages the chat keeps (its state stays small).
const HISTORY: usize = 100;

#[derive(Parser)]
#[command(about = "A replicated chat: every node prints the same ordered messages")]
struct Cli {
    /// This node's number (0 to 63); nodes 0 to 3 are the first members (`chat 2` works too).
    #[arg(long, required_unless_present = "node")]
    id: Option<usize>,
    /// This node's number, as Mir's demo takes it.
    #[arg(conflicts_with = "id")]
    node: Option<usize>,
    /// Node N listens on 127.0.0.1:(base-port + N).
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// The ports of nodes 0, 1, 2, … (instead of --base-port).
    #[arg(long, value_delimiter = ',')]
    ports: Vec<u16>,
    /// Where the write-ahead log lives (default: mir-chat/node-N in the temporary directory).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Delete the data directory first (start over).
    #[arg(long)]
    fresh: bool,
    /// This node is not one of the first members: it takes part once `/add-node N` is ordered.
    #[arg(long)]
    join: bool,
    /// With --join: the members now (they certify the state this node fetches).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 2, 3])]
    trust: Vec<usize>,
}

/// Node `n` of the demo: its address and demo keys.
fn member(cli: &Cli, n: usize) -> Result<Member, String> {
    if n >= MAX_MEMBERS {
        return Err(format!("node {n}: the demo has nodes 0 to {}", MAX_MEMBERS - 1));
    }
    let port = match cli.ports.get(n) {
        Some(p) => *p,
        None if !cli.ports.is_empty() => return Err(format!("--ports has no port for node {n}")),
        None => cli.base_port.checked_add(n as u16).ok_or("--base-port too high")?,
    };
    let id = NodeId::from_index(n);
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    Ok(NodeKeys::test(DEMO_SEED, &id).member(id, address, 1))
}

fn membership(cli: &Cli, nodes: &[usize]) -> Result<Membership, String> {
    Ok(Membership { nodes: nodes.iter().map(|n| member(cli, *n)).collect::<Result<_, _>>()? })
}

/// The chat's state: the membership and the last messages.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Chat {
    members: Members,
    messages: u64,
    history: VecDeque<(String, String)>,
}

impl Application for Chat {
    fn apply(&mut self, tx: &Tx) -> Vec<u8> {
        if let Some(result) = self.members.command(&tx.client, &tx.data) {
            return result;
        }
        self.messages += 1;
        self.history.push_back((tx.client.0.clone(), String::from_utf8_lossy(&tx.data).into()));
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        b"+".to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        mir_dsl::mir_runtime::codec::encode(self)
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        *self = mir_dsl::mir_runtime::codec::decode("chat.Snapshot", snapshot)
            .map_err(|e| format!("not a chat snapshot: {e}"))?;
        Ok(())
    }
    fn membership(&self) -> Option<Vec<Member>> {
        Some(self.members.nodes().to_vec())
    }
}

/// Prints what is ordered (the module `chat`: it gets the application's reports and the
/// mempool's refusals of this node's lines).
struct Printer;

/// The sender's node, from its client ID (`chat-N`).
fn sender(client: &str) -> &str {
    client.strip_prefix("chat-").unwrap_or(client)
}

/// A membership command, shown as typed.
fn shown(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    if let Some(entry) = text.strip_prefix("add-node\n") {
        let id = entry
            .lines()
            .find_map(|l| l.trim().strip_prefix("id = "))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        return format!("/add-node {id}");
    }
    if let Some(id) = text.strip_prefix("remove-node ") {
        return format!("/remove-node {id}");
    }
    text.into_owned()
}

impl PassiveModule for Printer {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(a) = ev.get::<Applied>() {
                for r in &a.receipts {
                    let who = sender(&r.client.0);
                    if Members::is_command(&r.data) {
                        let result = String::from_utf8_lossy(&r.result);
                        let outcome = result.strip_prefix('!').unwrap_or("done");
                        println!("[{}] {who}: {} ({outcome})", a.sn, shown(&r.data));
                    } else {
                        println!("[{}] {who}: {}", a.sn, String::from_utf8_lossy(&r.data));
                    }
                }
            } else if let Some(r) = ev.get::<Restored>() {
                println!(
                    "-- caught up: the chat as of epoch {} (earlier lines not shown)",
                    r.epoch
                );
            } else if let Some(l) = ev.get::<Left>() {
                println!("-- this node left the membership (epoch {})", l.epoch);
            } else if let Some(r) = ev.get::<TransactionsRejected>() {
                for x in &r.rejected {
                    println!("-- not sent (line {}): {}", x.tx_no, x.reason);
                }
            }
        }
        Ok(())
    }
}

/// The next number of this node's lines, kept in the data directory.
struct Numbers(PathBuf);

impl Numbers {
    fn next(&self) -> u64 {
        std::fs::read_to_string(&self.0).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }
    fn used(&self, n: u64) -> std::io::Result<()> {
        std::fs::write(&self.0, (n + 1).to_string())
    }
}

#[tokio::main]
async fn main() {
    let mut cli = Cli::parse();
    cli.id = cli.id.or(cli.node);
    if let Err(e) = run(cli).await {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let id = cli.id.ok_or("give the node's number: chat --id N (or chat N)")?;
    let me = member(&cli, id)?;
    let first: Vec<usize> = (0..FIRST).collect();
    let genesis = membership(&cli, &first)?;
    if cli.join == first.contains(&id) {
        return Err(if cli.join {
            format!("node {} is one of the first members: drop --join", id)
        } else {
            format!("node {} is not one of the first members (0 to 3): add --join", id)
        }
        .into());
    }
    let data = cli
        .data
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("mir-chat").join(format!("node-{}", id)));
    if cli.fresh && data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    std::fs::create_dir_all(&data)?;
    let numbers = Numbers(data.join("next-line"));
    let admins = (0..MAX_MEMBERS).map(|n| format!("chat-{n}").as_str().into());
    let chat = Chat {
        members: Members::new(genesis.clone(), admins),
        messages: 0,
        history: VecDeque::new(),
    };
    let trusted = if cli.join { membership(&cli, &cli.trust)? } else { genesis };
    let mut builder = System::builder(me.id.clone(), trusted, NodeKeys::test(DEMO_SEED, &me.id))
        .wal(data.join("wal"))
        .observe("chat", Printer);
    if cli.join {
        builder = builder.join_as(me.clone());
    }
    let node = builder.build(chat)?.start();
    eprintln!(
        "chat node {} on {} (demo keys: insecure); data in {}{}",
        id,
        me.address,
        data.display(),
        if cli.join { "; waiting to be added (/add-node at a member)" } else { "" }
    );
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let handle = node.handle();
    let left = node.left();
    tokio::pin!(left);
    let client = format!("chat-{}", id);
    loop {
        tokio::select! {
            _ = &mut left => {
                println!("-- removed from the chat: stopping");
                break;
            }
            _ = tokio::signal::ctrl_c() => break,
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                let data = match line.split_once(' ').unwrap_or((line, "")) {
                    ("", _) => continue,
                    ("/quit", _) => break,
                    ("/add-node", n) => match n.trim().parse().map_err(|e| format!("{e}")).and_then(|n| member(&cli, n)) {
                        Ok(m) => format!("add-node\n{}", m.to_toml()),
                        Err(e) => { println!("-- /add-node N (a node number): {e}"); continue; }
                    },
                    ("/remove-node", n) => match n.trim().parse::<usize>() {
                        Ok(n) => format!("remove-node {n}"),
                        Err(e) => { println!("-- /remove-node N (a node number): {e}"); continue; }
                    },
                    (c, _) if c.starts_with('/') => {
                        println!("-- commands: /add-node N, /remove-node N, /quit");
                        continue;
                    }
                    _ => line.to_owned(),
                };
                let n = numbers.next();
                numbers.used(n)?;
                let submit = NewTransactions { txs: vec![Tx::new(client.as_str(), n, data)] };
                handle.inject(vec![Event::new("chat", names::MEMPOOL, submit)]).await?;
            }
        }
    }
    node.stop().await?;
    Ok(())
}
