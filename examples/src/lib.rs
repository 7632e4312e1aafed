//! # examples: runnable programs built on the Mir runtime
//!
//! | binary | what it shows |
//! |---|---|
//! | `availability` | the availability layer over gRPC with k256: transactions in, a certificate of f + 1 signatures out, the batch read back from the certificate on another node ([`availability`]) |
//! | `iss` | ISS over PBFT and the availability layer over gRPC with k256: clients' transactions ordered into one log that every node prints the same, epochs with checkpoints, a crashed leader sidelined ([`iss`]) |
//! | `bcb` | Signed Echo Broadcast over gRPC with real k256 signatures: 4 nodes in one process, one node per process from a membership file, or interactive ([`bcb`]) |
//! | `kv` | the SMR system: a replicated key-value store, nodes built with `System::builder`, a command-line client of their client service (`src/bin/kv.rs`) |
//! | `chat` | the chat demo: every node prints one ordered chat of the lines typed at each; `/add-node` and `/remove-node` reconfigure it; restarts resume from the WAL (`src/bin/chat.rs`) |
//! | `bench` | the benchmark harness: nodes and load clients as processes over gRPC, a summary in the HotStuff/Narwhal form, sweeps to CSV and an SVG plot ([`bench`], `src/bin/bench.rs`) |
//! | `pingpong` | two modules, run by the production executor on tokio, or as two nodes over the simulated network in the deterministic simulator; written by hand ([`pingpong`]) and in the DSL ([`pingpong_dsl`], `--dsl`) |
//!
//! The modules of each example live in this library so that tests can drive them too; what the
//! gRPC demos share (starting a local cluster, membership files with test keys) is in [`cluster`].

pub mod availability;
pub mod bcb;
pub mod bench;
pub mod cluster;
pub mod iss;
pub mod pingpong;
pub mod pingpong_dsl;

/// Logs to standard error at the level `RUST_LOG` gives (default `warn`): what the demo programs
/// call first, so their standard output holds only what they print.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Like `println!`, but ends the program quietly (exit status 0) when the reader of standard
/// output has gone (`bcb replay … | head`, `pingpong sim … | head`), where `println!` panics.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to standard output: {e}");
        }
    }};
}
