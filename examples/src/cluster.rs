//! What the gRPC demos share: a node with its transport handle, membership files with test
//! keys, free loopback ports, and starting and stopping a cluster of nodes in this process.

use std::time::Duration;

use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::transport::grpc::GrpcHandle;
use mir_dsl::mir_runtime::{Exit, Node, NodeError, NodeHandle, NodeId};

/// A demo node and its gRPC transport.
pub struct DemoNode {
    /// The node (run it with [`Node::run`]).
    pub node: Node,
    /// Its gRPC transport.
    pub grpc: GrpcHandle,
}

/// Finishes a demo node: adds the gRPC transport (as `net`, with `transport_key`) to `builder`,
/// and a recorder of every event under `record`, if given.
pub fn over_grpc(
    me: &NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    transport_key: mir_dsl::mir_runtime::transport::tls::TransportKey,
    mut builder: mir_dsl::mir_runtime::NodeBuilder,
    record: Option<&std::path::Path>,
) -> Result<DemoNode, Box<dyn std::error::Error>> {
    use mir_dsl::mir_runtime::eventlog::{Recorder, RecorderConfig};
    use mir_dsl::mir_runtime::transport::grpc::{GrpcConfig, GrpcTransport};
    let transport =
        GrpcTransport::new(GrpcConfig::new(me.clone(), membership.clone(), transport_key))?;
    let grpc = transport.handle();
    if let Some(dir) = record {
        builder = builder.interceptor(Recorder::new(RecorderConfig::new(dir), me)?);
    }
    Ok(DemoNode { node: builder.active("net", transport).build()?, grpc })
}

/// Nodes running in this process (see [`start`]).
pub struct Running {
    /// One handle per node, in the order given.
    pub handles: Vec<NodeHandle>,
    runs: Vec<tokio::task::JoinHandle<Result<Exit, NodeError>>>,
}

/// Spawns every node on the current tokio runtime and waits until each is connected to all the
/// others (at most `timeout`).
pub async fn start(nodes: Vec<DemoNode>, timeout: Duration) -> Result<Running, String> {
    let n = nodes.len();
    let mut grpcs = Vec::with_capacity(n);
    let mut running = Running { handles: Vec::with_capacity(n), runs: Vec::with_capacity(n) };
    for d in nodes {
        running.handles.push(d.node.handle());
        grpcs.push(d.grpc);
        running.runs.push(tokio::spawn(d.node.run()));
    }
    for g in &grpcs {
        if !g.wait_connected(n.saturating_sub(1), timeout).await {
            running.stop().await.ok();
            return Err(format!("the nodes did not connect within {timeout:?}"));
        }
    }
    Ok(running)
}

impl Running {
    /// Stops every node and waits for them; the first node error, if any.
    pub async fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        for h in &self.handles {
            h.stop();
        }
        for r in self.runs {
            r.await??;
        }
        Ok(())
    }
}

/// A membership of `n` nodes on `host` from `base_port`, with test keys from `seed`, as TOML.
pub fn membership_toml(n: usize, host: &str, base_port: u16, seed: u64) -> Result<String, String> {
    let ports: Vec<u16> = (0..n).map(|i| base_port.saturating_add(i as u16)).collect();
    membership_toml_with_ports(host, &ports, seed)
}

/// A membership with one node per port (node i on `ports[i]`), **insecure** test keys from
/// `seed` ([`NodeKeys::test`]), as TOML. `host` must be an IP address (a bad one is an error).
pub fn membership_toml_with_ports(host: &str, ports: &[u16], seed: u64) -> Result<String, String> {
    let ip: std::net::IpAddr =
        host.parse().map_err(|_| format!("--host {host:?} is not an IP address"))?;
    let mut out = format!(
        "# {} nodes, INSECURE test keys from seed {seed} (anyone can compute them; for demos only)\n",
        ports.len()
    );
    for (i, port) in ports.iter().enumerate() {
        let id = NodeId::from_index(i);
        let entry = NodeKeys::test(seed, &id).member(id, (ip, *port).into(), 1);
        out += &format!("\n{}", entry.to_toml());
    }
    Ok(out)
}

/// The arguments of a demo's `membership` subcommand: a membership file with test keys.
#[derive(clap::Args, Debug, Clone)]
pub struct MembershipArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Host or IP the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Node i listens on base-port + i.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// Seed of the test keys.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl MembershipArgs {
    /// The membership file as TOML; an error for no nodes or a bad host.
    pub fn toml(&self) -> Result<String, String> {
        if self.nodes == 0 {
            return Err("--nodes must be at least 1".into());
        }
        membership_toml(self.nodes, &self.host, self.base_port, self.seed)
    }
}

/// The arguments of a demo's `node` subcommand that say which node of which membership file to
/// run, and with which keys.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's ID.
    #[arg(long)]
    pub id: String,
    /// The membership file (.toml or .json).
    #[arg(long)]
    pub membership: std::path::PathBuf,
    /// The directory holding this node's key files (`mir keygen --out DIR`).
    #[arg(long, required_unless_present = "insecure_test_keys")]
    pub keys: Option<std::path::PathBuf>,
    /// Use the public test keys of `--seed` (as printed by `membership`): anyone can compute
    /// them, so only for demos on one machine.
    #[arg(long, conflicts_with = "keys")]
    pub insecure_test_keys: bool,
    /// Seed of the test keys (with --insecure-test-keys).
    #[arg(long, default_value_t = 42, requires = "insecure_test_keys")]
    pub seed: u64,
}

impl NodeArgs {
    /// The node's ID, the membership (which must list it) and its keys ([`node_keys`]).
    pub fn load(
        &self,
    ) -> Result<
        (NodeId, mir_dsl::mir_runtime::membership::Membership, NodeKeys),
        Box<dyn std::error::Error>,
    > {
        let me = NodeId::try_new(&self.id)?;
        let membership = mir_dsl::mir_runtime::membership::Membership::from_file(&self.membership)?;
        if membership.get(&me).is_none() {
            return Err(format!("node {me} is not in the membership file").into());
        }
        let keys =
            node_keys(&me, self.keys.as_deref(), self.insecure_test_keys.then_some(self.seed))?;
        Ok((me, membership, keys))
    }
}

/// `n` free TCP ports on loopback (free when asked; another program could take one meanwhile).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}

/// The keys a node started from a membership file runs with: read from `key_dir` (written by
/// `mir keygen`), or the **insecure** test keys of `test_seed`. Exactly one must be given, and
/// the public demo keys are refused from a key directory (copying them there does not make them
/// secret).
pub fn node_keys(
    me: &NodeId,
    key_dir: Option<&std::path::Path>,
    test_seed: Option<u64>,
) -> Result<NodeKeys, String> {
    match (key_dir, test_seed) {
        (Some(dir), None) => {
            let keys = NodeKeys::read(dir, me).map_err(|e| e.to_string())?;
            if keys.is_demo(me) {
                return Err(format!(
                    "the keys in {} are the public demo keys of node {me}; make real ones with \
                     `mir keygen`, or pass --insecure-test-keys to run a demo",
                    dir.display()
                ));
            }
            Ok(keys)
        }
        (None, Some(seed)) => {
            tracing::warn!(node = %me, seed, "running with INSECURE test keys (anyone can compute them)");
            Ok(NodeKeys::test(seed, me))
        }
        _ => Err("give either --keys DIR (from `mir keygen`) or --insecure-test-keys".into()),
    }
}

/// Replays node `me`'s log recorded under `log` (`--record DIR`: `DIR/<node>/*`) into `fresh`
/// modules (in the recorded batches) and prints what it found. `step`: `None` replays silently;
/// `Some(None)` shows each batch and what each module emitted, waiting for Enter after each (end
/// of input: the rest silently); `Some(Some(n))` shows `n` batches without waiting.
pub fn replay_recorded(
    log: &std::path::Path,
    me: &mir_dsl::mir_runtime::NodeId,
    fresh: std::collections::BTreeMap<
        mir_dsl::mir_runtime::ModuleId,
        Box<dyn mir_dsl::mir_runtime::PassiveModule>,
    >,
    step: Option<Option<usize>>,
) -> Result<(), Box<dyn std::error::Error>> {
    use mir_dsl::mir_runtime::eventlog::{is_log_file_name, read_log, replay};
    let dir = log.join(me.as_str());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!("{}: {e} (was the cluster run with --record {}?)", dir.display(), log.display())
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_log_file_name))
        .collect();
    files.sort();
    let mut entries = Vec::new();
    for f in &files {
        entries.extend(read_log(f)?);
    }
    let (mut shown, limit, wait) = match step {
        None => (0, 0, false),
        Some(None) => (0, usize::MAX, true),
        Some(Some(n)) => (0, n, false),
    };
    let mut interactive = wait;
    let report = replay(&entries, me, fresh, |s| {
        if shown >= limit {
            return;
        }
        shown += 1;
        crate::say!(
            "step {shown}: {} handles a batch of {} (recorded at {:.3} ms)",
            s.module,
            s.inputs.len(),
            s.time_ns as f64 / 1e6
        );
        for i in &s.inputs {
            crate::say!("  in   {:<24} from {:<10} {:?}", i.name(), i.src.as_str(), i.payload);
        }
        for o in &s.outputs {
            crate::say!("  out  {:<24} to   {:<10} {:?}", o.name(), o.dest.as_str(), o.payload);
        }
        if interactive {
            eprint!("[Enter: next batch] ");
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).map_or(true, |n| n == 0) {
                interactive = false; // end of input: replay the rest without waiting
            }
        }
    })?;
    crate::say!(
        "node {me}: replayed {} input events in {} batches; {} emitted events match the recording, {} were not delivered before the recording stopped",
        report.inputs, report.batches, report.confirmed, report.unconfirmed
    );
    Ok(())
}
