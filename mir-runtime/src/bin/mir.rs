//! mir: make a node's keys and assemble membership files.
//!
//! ```text
//! mir keygen --id 3 --address 10.0.0.3:7000 --out keys/ [--weight 1]
//!     writes keys/3.signing.key and keys/3.transport.key (owner-only), and prints node 3's
//!     membership entry (also written to keys/3.member.toml)
//! mir membership keys/*.member.toml [--out membership.toml]
//!     checks the entries (distinct IDs, addresses and keys) and writes one membership file
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::Membership;
use mir_runtime::NodeId;

#[derive(Parser)]
#[command(name = "mir", about = "Make a node's keys and assemble membership files")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a node's signing and transport keys and print its membership entry.
    Keygen {
        /// The node's ID.
        #[arg(long)]
        id: String,
        /// Where the node listens (IP and port).
        #[arg(long)]
        address: SocketAddr,
        /// The node's voting weight.
        #[arg(long, default_value_t = 1)]
        weight: u128,
        /// The directory for the key files (created if missing; existing files are kept).
        #[arg(long)]
        out: PathBuf,
    },
    /// Assemble membership entries (files written by `keygen`, or whole membership files) into
    /// one membership file.
    Membership {
        /// Entry or membership files (.toml or .json).
        #[arg(required = true)]
        entries: Vec<PathBuf>,
        /// Write here instead of standard output (an existing file is kept).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

type Error = Box<dyn std::error::Error>;

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Keygen { id, address, weight, out } => keygen(&id, address, weight, &out),
        Cmd::Membership { entries, out } => membership(&entries, out.as_deref()),
    };
    if let Err(e) = res {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn keygen(id: &str, address: SocketAddr, weight: u128, out: &std::path::Path) -> Result<(), Error> {
    let id = NodeId::try_new(id)?;
    if weight == 0 {
        return Err("--weight must be at least 1".into());
    }
    let entry_path = out.join(format!("{id}.member.toml"));
    if entry_path.exists() {
        return Err(format!("{} exists: node {id} has keys already", entry_path.display()).into());
    }
    let keys = NodeKeys::generate()?;
    let (s, t) = keys.write(out, &id)?;
    let entry = keys.member(id.clone(), address, weight).to_toml();
    std::fs::write(&entry_path, &entry)
        .map_err(|e| format!("cannot write {}: {e}", entry_path.display()))?;
    eprintln!(
        "node {id}: secret keys in {} and {} (owner-only); entry in {}",
        s.display(),
        t.display(),
        entry_path.display()
    );
    print!("{entry}");
    Ok(())
}

fn membership(entries: &[PathBuf], out: Option<&std::path::Path>) -> Result<(), Error> {
    let mut all = Membership { nodes: Vec::new() };
    for path in entries {
        all.nodes.extend(Membership::from_file(path)?.nodes);
    }
    // Re-read the whole: every check of a membership file applies (IDs, addresses, keys).
    let text = all.to_toml();
    let checked = Membership::from_toml_str(&text, "the assembled membership")?;
    match out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            std::io::Write::write_all(&mut f, text.as_bytes())?;
            eprintln!("{} nodes written to {}", checked.nodes.len(), path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
