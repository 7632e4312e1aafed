//! Hostile input at the network edge, on every transport.
//!
//! A member (node 1) sends node 0 every standard message type — a well-formed sample of each
//! message a module handles, and garbage under the name of every event type the runtime and the
//! protocols define — addressed to every module ID of the BCB and availability demo nodes (and to
//! submodules, missing modules and `@node`). Then the cluster must still work: BCB delivers on all
//! four nodes; the availability layer makes a certificate on node 0 and reads its batch back on
//! node 2. Run on the simulator, the in-process transport and gRPC (k256 signatures everywhere).
//! The ordering layer (a PBFT instance and a checkpoint with its agreement instance) gets the
//! same flood in the simulator and must still order and agree, and so does a whole ISS node
//! (every module of the ISS demo), which must still order transactions afterwards.
//! A property test throws random `(destination, payload)` pairs at a simulated BCB cluster.

use std::sync::mpsc;
use std::time::Duration;

use examples::availability::{self as avail, CreateBatch, ReadBatch};
use examples::bcb::{self, Submit};
use mir_dsl::mir_runtime::keys::NodeKeys;
use mir_dsl::mir_runtime::membership::Membership;
use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
use mir_dsl::mir_runtime::stdevents::{
    GarbageCollect, Init, Message, MessageReceived, NewSubmodule, SendMessage, TestString,
    TimerDelay,
};
use mir_dsl::mir_runtime::stdmodules::ecdsa::test_keys;
use mir_dsl::mir_runtime::transport::inprocess::InProcessNetwork;
use mir_dsl::mir_runtime::{Event, ModuleId, NodeBuilder, NodeHandle, NodeId, Payload};
use protocols::availability::msc::{
    ProvideBatchMessage, RequestBatchMessage, RequestSigMessage, SigMessage,
};
use protocols::availability::{Config, Tx};
use protocols::bcb::{Echo, Final};
use protocols::ordering::checkpoint::StableCheckpoint;
use protocols::ordering::iss::transfer::{CatchUpTick, StateRequest, StateResponse};

const N: usize = 4;

/// The name of every event type of the runtime and the protocols.
const NAMES: &[&str] = &[
    "mir.Init",
    "mir.SendMessage",
    "mir.MessageReceived",
    "mir.TimerDelay",
    "mir.TimerRepeat",
    "mir.TimerCancel",
    "mir.TimerGarbageCollect",
    "mir.TimerCancelModules",
    "mir.NewSubmodule",
    "mir.GarbageCollect",
    "mir.TestString",
    "mir.TestUint64",
    "mir.MembershipUpdate",
    "mir.crypto.HashRequest",
    "mir.crypto.HashResult",
    "mir.crypto.SignRequest",
    "mir.crypto.SignResult",
    "mir.crypto.VerifySig",
    "mir.crypto.SigVerified",
    "mir.crypto.VerifySigs",
    "mir.crypto.SigsVerified",
    "bcb.Instance",
    "bcb.BroadcastRequest",
    "bcb.Deliver",
    "bcb.BroadcastRefused",
    "bcb.Send",
    "bcb.Echo",
    "bcb.Final",
    "batchdb.StoreBatch",
    "batchdb.BatchStored",
    "batchdb.LookupBatch",
    "batchdb.LookupBatchResponse",
    "batchdb.BatchRecord",
    "mir.WalAppend",
    "mir.WalTruncate",
    "mir.WalRecovered",
    "batchfetcher.DeliverCert",
    "batchfetcher.NewOrderedBatch",
    "batchfetcher.EpochStart",
    "batchfetcher.SnapshotRequest",
    "batchfetcher.ClientProgressSnapshot",
    "batchfetcher.RestoreState",
    "mempool.NewTransactions",
    "mempool.TransactionsRejected",
    "mempool.RequestBatch",
    "mempool.NewBatch",
    "mempool.LookupTransactions",
    "mempool.TransactionsFound",
    "mempool.NewEpoch",
    "mempool.CheckWindow",
    "mempool.WindowChecked",
    "mempool.BatchTimeout",
    "availability.Tx",
    "availability.Cert",
    "availability.ClientProgress",
    "availability.RequestCert",
    "availability.NewCert",
    "availability.VerifyCert",
    "availability.CertVerified",
    "availability.RequestTransactions",
    "availability.ProvideTransactions",
    "availability.FetchTimeout",
    "availability.SigTimeout",
    "availability.RequestSigMessage",
    "availability.SigMessage",
    "availability.RequestBatchMessage",
    "availability.ProvideBatchMessage",
    "link.Data",
    "link.Ack",
    "link.Tick",
    "link.Forget",
    "ordering.SbInstance",
    "ordering.SbDeliver",
    "ordering.Suspect",
    "ordering.ProposalUnused",
    "ordering.EquivocationEvidence",
    "ordering.CutBatch",
    "ordering.BatchCut",
    "ordering.ValidateProposal",
    "ordering.ProposalValidated",
    "pbft.Preprepare",
    "pbft.Prepare",
    "pbft.Commit",
    "pbft.Done",
    "pbft.CatchUpRequest",
    "pbft.CatchUpResponse",
    "pbft.SignedViewChange",
    "pbft.PreprepareRequest",
    "pbft.MissingPreprepare",
    "pbft.NewView",
    "pbft.ProposeTimeout",
    "pbft.SnTimeout",
    "pbft.SegmentTimeout",
    "pbft.ViewChangeResend",
    "pbft.DoneResend",
    "pbft.CatchUpTimeout",
    "pbft.DoneRequest",
    "pbft.AskDone",
    "pbft.Sent",
    "checkpoint.AppSnapshot",
    "checkpoint.Checkpoint",
    "checkpoint.StableCheckpoint",
    "checkpoint.Instance",
    "checkpoint.Resend",
    "iss.OrderedEntry",
    "iss.EpochStarted",
    "iss.Snapshot",
    "iss.StateRequest",
    "iss.StateResponse",
    "iss.CatchUpTick",
    "iss.RejoinRequest",
    "iss.RejoinReport",
    "iss.Rejoining",
    "iss.NewMembership",
    "iss.Left",
    "iss.TookPart",
    "smr.Applied",
    "smr.Restored",
    "demo.Submit",
    "demo.CreateBatch",
    "demo.ReadBatch",
    "no.such.Type",
];

/// Well-formed values: the messages modules handle, and local events a peer must not be able to
/// trigger.
fn samples() -> Vec<Payload> {
    let tx = Tx::new("mallory", 0, "evil");
    vec![
        Payload::new(Init),
        Payload::new(TestString("hi".into())),
        Payload::new(NewSubmodule {
            id: ModuleId::new("bcb/77"),
            params: Payload::new(Init),
            retention_index: 0,
        }),
        Payload::new(GarbageCollect { retention_index: u64::MAX }),
        Payload::new(TimerDelay {
            id: None,
            delay: Duration::ZERO,
            retention_index: 0,
            events: vec![Event::new("@node", "app", Init)],
        }),
        Payload::new(SendMessage {
            destinations: vec![NodeId::from_index(2)],
            message: Message::new("app", TestString("relay me".into())),
        }),
        Payload::new(MessageReceived {
            from: NodeId::from_index(2),
            message: Message::new("app", TestString("forged sender".into())),
        }),
        Payload::new(protocols::bcb::Send { data: b"not from the leader".to_vec() }),
        Payload::new(Echo { signature: vec![7; 64] }),
        Payload::new(Final {
            data: b"forged".to_vec(),
            signers: (0..N).map(NodeId::from_index).collect(),
            signatures: vec![vec![1; 64]; N],
        }),
        Payload::new(RequestSigMessage { req_id: 1, txs: vec![tx.clone()], buckets: None }),
        Payload::new(SigMessage { req_id: 1, signature: vec![3; 64] }),
        Payload::new(RequestBatchMessage { batch_id: vec![0; 32] }),
        Payload::new(ProvideBatchMessage { batch_id: vec![0; 32], txs: vec![tx] }),
        Payload::new(Submit { data: b"submitted by a peer".to_vec() }),
        Payload::new(StateRequest { epoch: 0 }),
        Payload::new(StateResponse {
            checkpoint: StableCheckpoint {
                epoch: 5,
                first_sn: 80,
                snapshot_hash: vec![4; 32],
                signers: (0..N).map(NodeId::from_index).collect(),
                signatures: vec![vec![1; 64]; N],
            },
            snapshot: b"forged state".to_vec(),
            client_progress: Default::default(),
        }),
        Payload::new(CatchUpTick),
        Payload::new(protocols::ordering::iss::rejoin::RejoinRequest),
        Payload::new(protocols::ordering::iss::rejoin::RejoinReport { epoch: u64::MAX }),
        Payload::new(protocols::ordering::iss::rejoin::RejoinReport { epoch: 3 }),
        Payload::new(protocols::ordering::iss::rejoin::Rejoining),
        Payload::new(protocols::ordering::iss::reconfig::NewMembership {
            epoch: 1,
            members: vec![(NodeId::new("mallory"), 1_000_000)],
        }),
        Payload::new(protocols::ordering::iss::reconfig::Left { epoch: 1 }),
        Payload::new(protocols::ordering::iss::reconfig::TookPart),
        Payload::new(mir_dsl::mir_runtime::stdevents::MembershipUpdate {
            members: vec![mir_dsl::mir_runtime::keys::NodeKeys::test(9, &NodeId::new("mallory"))
                .member(NodeId::new("mallory"), ([127, 0, 0, 1], 9).into(), 1_000_000)],
        }),
        Payload::new(protocols::smr::app::Applied {
            sn: 3,
            receipts: vec![protocols::smr::app::Receipt {
                client: "mallory".into(),
                tx_no: 9,
                index: 0,
                data: b"put k v".to_vec(),
                result: b"+forged".to_vec(),
            }],
        }),
        Payload::new(protocols::smr::app::Restored {
            epoch: 9,
            client_progress: Default::default(),
        }),
        Payload::new(protocols::ordering::pbft::Sent::Done { values: vec![None; 3] }),
        Payload::new(mir_dsl::mir_runtime::wal::WalAppend {
            retention_index: 0,
            records: vec![Event::new("iss", "iss", Init)],
            then: vec![Event::new("@node", "app", Init)],
        }),
        Payload::new(mir_dsl::mir_runtime::wal::WalTruncate { retention_index: u64::MAX }),
        Payload::new(mir_dsl::mir_runtime::wal::WalRecovered {
            records: vec![Event::new("iss", "batchdb", Init)],
        }),
        Payload::new(protocols::availability::batchdb::BatchRecord {
            batch_id: vec![0; 32],
            txs: vec![Tx::new("mallory", 1, "planted")],
            retention_index: u64::MAX,
        }),
    ]
    .into_iter()
    .chain(ordering::samples())
    .collect()
}

/// The samples, plus garbage under every name.
fn payloads() -> Vec<Payload> {
    let mut out = samples();
    for name in NAMES {
        out.push(Payload::encoded(*name, vec![]));
        out.push(Payload::encoded(*name, vec![0xff; 9]));
        out.push(Payload::encoded(*name, (0..37u8).map(|i| i.wrapping_mul(101)).collect()));
    }
    out
}

/// Every module of the node, submodules (existing, missing, nested), a missing module, `@node`.
fn destinations(modules: &[&str]) -> Vec<ModuleId> {
    let mut out: Vec<ModuleId> = modules.iter().map(|m| ModuleId::new(m)).collect();
    for m in modules {
        out.push(ModuleId::new(m).then(0));
        out.push(ModuleId::new(m).then(1).then("deep"));
        out.push(ModuleId::new(m).then(999));
    }
    out.push(ModuleId::new("nosuch"));
    out.push(ModuleId::node());
    out
}

const BCB_MODULES: &[&str] = &["app", "bcb", "crypto", "net"];
const AVAILABILITY_MODULES: &[&str] = &[
    "app",
    "crypto",
    "timer",
    "net",
    "mempool",
    "batchdb",
    "availability",
    "batchfetcher",
    "hasher",
];

/// What node 1 asks its transport to send to node 0: every payload to every destination.
fn flood(modules: &[&str]) -> Vec<Event> {
    let mut out = Vec::new();
    for dest in destinations(modules) {
        for payload in payloads() {
            out.push(Event::new(
                ModuleId::node(),
                "net",
                SendMessage {
                    destinations: vec![NodeId::from_index(0)],
                    message: Message { dest_module: dest.clone(), payload },
                },
            ));
        }
    }
    out
}

fn membership() -> Membership {
    let ports = examples::cluster::free_ports(N).unwrap();
    let toml = examples::cluster::membership_toml_with_ports("127.0.0.1", &ports, 42).unwrap();
    Membership::from_toml_str(&toml, "test").unwrap()
}

fn ids() -> Vec<NodeId> {
    (0..N).map(NodeId::from_index).collect()
}

fn bcb_builders(m: &Membership, report: &mpsc::Sender<bcb::BcbReport>) -> Vec<NodeBuilder> {
    let (keys, _) = test_keys(42, &ids());
    ids()
        .into_iter()
        .map(|id| {
            let key = keys[&id].clone();
            bcb::demo_modules(id, NodeId::from_index(0), m, key, report.clone()).unwrap()
        })
        .collect()
}

fn availability_builders(
    m: &Membership,
    report: &mpsc::Sender<avail::AvailabilityReport>,
) -> Vec<NodeBuilder> {
    let (keys, _) = test_keys(42, &ids());
    ids()
        .into_iter()
        .map(|id| {
            let key = keys[&id].clone();
            avail::demo_modules(id, m, key, &Config::default(), report.clone()).unwrap()
        })
        .collect()
}

fn submit() -> Event {
    Event::new("@node", "app", Submit { data: b"still working".to_vec() })
}

fn create() -> Event {
    let txs = (0..5).map(|i| Tx::new("client", i, format!("tx {i}"))).collect();
    Event::new("@node", "app", CreateBatch { txs })
}

/// Every node delivered BCB instance 0 with the leader's data.
fn check_bcb(reports: &[bcb::BcbReport]) {
    let mut nodes: Vec<NodeId> = reports
        .iter()
        .filter_map(|r| match r {
            bcb::BcbReport::Delivered { node, instance: 0, data } if data == b"still working" => {
                Some(node.clone())
            }
            _ => None,
        })
        .collect();
    nodes.sort();
    assert_eq!(nodes, ids(), "{reports:?}");
}

fn cert_of(r: avail::AvailabilityReport) -> Option<protocols::availability::Cert> {
    match r {
        avail::AvailabilityReport::Cert { node, cert } if node == NodeId::from_index(0) => {
            Some(cert)
        }
        _ => None,
    }
}

fn check_batch(r: &avail::AvailabilityReport) -> bool {
    match r {
        avail::AvailabilityReport::Batch { node, txs } => {
            assert_eq!(*node, NodeId::from_index(2));
            assert_eq!(txs.len(), 5);
            true
        }
        avail::AvailabilityReport::Invalid { error, .. } => panic!("certificate refused: {error}"),
        _ => false,
    }
}

// ---- the simulator ----

/// Every module of the ISS demo node.
const ISS_MODULES: &[&str] = &[
    "wal",
    "app",
    "crypto",
    "timer",
    "net",
    "hasher",
    "mempool",
    "batchdb",
    "availability",
    "batchfetcher",
    "ordering",
    "checkpoint",
    "chkp-agreement",
    "iss",
    "kv",
];

#[test]
fn simulator_iss_survives_every_message_to_every_module() {
    use examples::iss::{demo_modules, IssReport};
    use protocols::availability::mempool::NewTransactions;
    use protocols::ordering::iss::NodeSettings;
    let (tx, rx) = mpsc::channel();
    let (keys, _) = test_keys(42, &ids());
    let m = membership();
    let builders = ids()
        .into_iter()
        .map(|id| {
            let key = keys[&id].clone();
            // With a write-ahead log: the WAL and what logs in it take the flood too.
            let disk = mir_dsl::mir_runtime::wal::disk::SimDisk::new(7);
            let wal = mir_dsl::mir_runtime::wal::Wal::new(disk, ModuleId::new("iss"));
            let b =
                demo_modules(id.clone(), &m, key, &NodeSettings::default(), tx.clone(), Some(wal));
            // The SMR system's application module too (it takes no messages).
            let kv =
                protocols::smr::app::AppModule::new(protocols::smr::kv::KvStore::default(), id);
            b.unwrap().passive("kv", kv)
        })
        .collect();
    let mut sim = sim_of(builders);
    sim.inject(&NodeId::from_index(1), flood(ISS_MODULES)).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    let txs: Vec<Tx> = (0..20).map(|i| Tx::new("client", i, "after the flood")).collect();
    for me in ids() {
        let ev = Event::new("@node", "mempool", NewTransactions { txs: txs.clone() });
        sim.inject(&me, vec![ev]).unwrap();
    }
    // Every node delivers the 20 transactions, in the same batches.
    type Batches = Vec<(u64, Vec<(String, u64)>)>;
    let mut batches: std::collections::BTreeMap<NodeId, Batches> = Default::default();
    let delivered = |b: &Batches| b.iter().map(|x| x.1.len()).sum::<usize>();
    let done = sim
        .run_until(Duration::from_secs(60), |_| {
            for r in rx.try_iter() {
                if let IssReport::Batch { node, sn, txs } = r {
                    batches.entry(node).or_default().push((sn, txs));
                }
            }
            ids().iter().all(|n| batches.get(n).is_some_and(|b| delivered(b) >= 20))
        })
        .unwrap();
    assert!(done, "{:?}", batches.iter().map(|(n, b)| (n, delivered(b))).collect::<Vec<_>>());
    let non_empty =
        |b: &Batches| -> Batches { b.iter().filter(|x| !x.1.is_empty()).cloned().collect() };
    let first = non_empty(&batches[&NodeId::from_index(0)]);
    for (n, b) in &batches {
        assert_eq!(non_empty(b), first, "node {n}");
    }
    let stats = sim.stats(&NodeId::from_index(0)).unwrap();
    // (Modules that take messages count what they drop in their own statistics.)
    for m in ["net", "crypto", "hasher", "timer", "mempool", "batchdb", "batchfetcher", "kv"] {
        assert!(stats.module(m).unwrap().messages_refused > 0, "{m}: {stats:?}");
    }
}

fn sim_of(builders: Vec<NodeBuilder>) -> Simulation {
    let mut sim = Simulation::new(SimConfig::with_seed(5));
    for b in builders {
        sim.add_node(b).unwrap();
    }
    sim
}

#[test]
fn simulator_bcb_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let mut sim = sim_of(bcb_builders(&membership(), &tx));
    sim.inject(&NodeId::from_index(1), flood(BCB_MODULES)).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    sim.inject(&NodeId::from_index(0), vec![submit()]).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    check_bcb(&rx.try_iter().collect::<Vec<_>>());
    let stats = sim.stats(&NodeId::from_index(0)).unwrap();
    for m in ["crypto", "net"] {
        assert!(stats.module(m).unwrap().messages_refused > 0, "{m}: {stats:?}");
    }
}

#[test]
fn simulator_availability_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let mut sim = sim_of(availability_builders(&membership(), &tx));
    sim.inject(&NodeId::from_index(1), flood(AVAILABILITY_MODULES)).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    sim.inject(&NodeId::from_index(0), vec![create()]).unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    let cert = rx.try_iter().find_map(cert_of).expect("a certificate");
    assert!(!cert.is_empty());
    sim.inject(&NodeId::from_index(2), vec![Event::new("@node", "app", ReadBatch { cert })])
        .unwrap();
    sim.run_for(Duration::from_secs(2)).unwrap();
    assert!(rx.try_iter().any(|r| check_batch(&r)));
    let stats = sim.stats(&NodeId::from_index(0)).unwrap();
    for m in ["crypto", "net", "timer", "hasher", "batchdb", "mempool"] {
        assert!(stats.module(m).unwrap().messages_refused > 0, "{m}: {stats:?}");
    }
}

/// Replies to events injected from outside the node (source `@node`) go nowhere: dropped and
/// counted, never an unknown destination that stops the node. Injecting from a source that is
/// neither `@node` nor a module is refused.
#[test]
fn replies_to_injected_events_never_stop_a_node() {
    use mir_dsl::mir_runtime::sim::SimError;
    use protocols::availability::mempool::NewTransactions;
    use protocols::bcb::BroadcastRequest;
    let (tx, _rx) = mpsc::channel();
    let (atx, _arx) = mpsc::channel();
    let m = membership();
    let one = NodeId::from_index(1);
    let mut sim = sim_of(bcb_builders(&m, &tx));
    sim.run_for(Duration::from_millis(100)).unwrap(); // the app opens instance bcb/0
                                                      // Node 1 is not the leader: the BCB instance refuses, replying to the source.
    let request = BroadcastRequest { data: vec![1] };
    sim.inject(&one, vec![Event::new("@node", "bcb/0", request.clone())]).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.stats(&one).unwrap().to_outside, 1);
    assert!(matches!(
        sim.inject(&one, vec![Event::new("gateway", "bcb/0", request)]),
        Err(SimError::UnknownSource { .. })
    ));

    // The mempool rejects a transaction outside the client's window, replying to the source.
    let mut sim = sim_of(availability_builders(&m, &atx));
    let new = NewTransactions { txs: vec![Tx::new("c", u64::MAX, "x")] };
    sim.inject(&one, vec![Event::new("@node", "mempool", new)]).unwrap();
    sim.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(sim.stats(&one).unwrap().to_outside, 1);
}

// ---- production executors: in-process and gRPC ----

fn wait<T>(rx: &mpsc::Receiver<T>, mut done: impl FnMut(&T) -> bool) -> Vec<T>
where
    T: std::fmt::Debug,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(50)) {
            let stop = done(&r);
            seen.push(r);
            if stop {
                return seen;
            }
        }
    }
    panic!("timed out; seen {seen:?}");
}

/// Floods node 0 from node 1, then checks BCB still delivers everywhere.
async fn bcb_after_flood(handles: &[NodeHandle], rx: &mpsc::Receiver<bcb::BcbReport>) {
    handles[1].inject(flood(BCB_MODULES)).await.unwrap();
    handles[0].inject(vec![submit()]).await.unwrap();
    let mut delivered = 0;
    let reports = tokio::task::block_in_place(|| {
        wait(rx, |r| {
            delivered += matches!(r, bcb::BcbReport::Delivered { .. }) as usize;
            delivered == N
        })
    });
    check_bcb(&reports);
    refused_eventually(&handles[0], "net").await;
}

/// Waits until `module` of the node has refused peers' messages (gRPC streams from node 1 may lag
/// behind the others, whose echoes suffice for BCB).
async fn refused_eventually(h: &NodeHandle, module: &str) {
    for _ in 0..400 {
        if h.stats().module(module).unwrap().messages_refused > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{module} refused nothing: {:?}", h.stats());
}

async fn availability_after_flood(
    handles: &[NodeHandle],
    rx: &mpsc::Receiver<avail::AvailabilityReport>,
) {
    handles[1].inject(flood(AVAILABILITY_MODULES)).await.unwrap();
    handles[0].inject(vec![create()]).await.unwrap();
    let reports = tokio::task::block_in_place(|| {
        wait(
            rx,
            |r| matches!(r, avail::AvailabilityReport::Cert { node, .. } if *node == NodeId::from_index(0)),
        )
    });
    let cert = reports.into_iter().find_map(cert_of).unwrap();
    handles[2].inject(vec![Event::new("@node", "app", ReadBatch { cert })]).await.unwrap();
    tokio::task::block_in_place(|| wait(rx, check_batch));
    refused_eventually(&handles[0], "hasher").await;
}

/// Runs the builders on the in-process transport; `f` gets the handles; every node must still be
/// running at the end and stop cleanly.
async fn in_process<F, Fut>(builders: Vec<NodeBuilder>, f: F)
where
    F: FnOnce(Vec<NodeHandle>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let net = InProcessNetwork::new();
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    for (i, b) in builders.into_iter().enumerate() {
        let node = b.active("net", net.transport(NodeId::from_index(i))).build().unwrap();
        net.connect(NodeId::from_index(i), node.handle().sink());
        handles.push(node.handle());
        runs.push(tokio::spawn(node.run()));
    }
    f(handles.clone()).await;
    for h in &handles {
        h.stop();
    }
    for r in runs {
        r.await.unwrap().expect("the node kept running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_bcb_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let builders = bcb_builders(&membership(), &tx);
    in_process(builders, |h| async move { bcb_after_flood(&h, &rx).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_availability_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let builders = availability_builders(&membership(), &tx);
    in_process(builders, |h| async move { availability_after_flood(&h, &rx).await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bcb_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let m = membership();
    let nodes = ids()
        .into_iter()
        .map(|id| {
            let keys = NodeKeys::test(42, &id);
            bcb::demo_node(id, NodeId::from_index(0), &m, keys, tx.clone(), None).unwrap()
        })
        .collect();
    let cluster = examples::cluster::start(nodes, Duration::from_secs(20)).await.unwrap();
    bcb_after_flood(&cluster.handles, &rx).await;
    cluster.stop().await.expect("the nodes kept running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_availability_survives_every_message_to_every_module() {
    let (tx, rx) = mpsc::channel();
    let m = membership();
    let nodes = ids()
        .into_iter()
        .map(|id| {
            let keys = NodeKeys::test(42, &id);
            avail::demo_node(id, &m, keys, &Config::default(), tx.clone()).unwrap()
        })
        .collect();
    let cluster = examples::cluster::start(nodes, Duration::from_secs(20)).await.unwrap();
    availability_after_flood(&cluster.handles, &rx).await;
    cluster.stop().await.expect("the nodes kept running");
}

// ---- random input ----

mod random {
    use super::*;
    use proptest::prelude::*;

    fn dest() -> impl Strategy<Value = ModuleId> {
        let known: Vec<ModuleId> = destinations(BCB_MODULES);
        prop_oneof![
            proptest::sample::select(known),
            "[a-z0-9]{1,6}(/[a-z0-9]{1,4}){0,2}".prop_map(|s| ModuleId::new(&s)),
        ]
    }

    fn payload() -> impl Strategy<Value = Payload> {
        let name = prop_oneof![
            proptest::sample::select(NAMES.to_vec()).prop_map(str::to_owned),
            "[ -~]{0,20}",
        ];
        (name, proptest::collection::vec(any::<u8>(), 0..80))
            .prop_map(|(n, bytes)| Payload::encoded(n, bytes))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Random `(destination, payload bytes)` pairs from a member never stop a node, and BCB
        /// still delivers on every node afterwards.
        #[test]
        fn random_messages_from_a_member_never_stop_a_node(
            msgs in proptest::collection::vec((dest(), payload()), 1..40)
        ) {
            let (tx, rx) = mpsc::channel();
            let mut sim = sim_of(bcb_builders(&membership(), &tx));
            let evs = msgs.into_iter().map(|(dest_module, payload)| Event::new(
                ModuleId::node(),
                "net",
                SendMessage {
                    destinations: vec![NodeId::from_index(0)],
                    message: Message { dest_module, payload },
                },
            )).collect();
            sim.inject(&NodeId::from_index(1), evs).unwrap();
            sim.run_for(Duration::from_millis(500)).unwrap();
            sim.inject(&NodeId::from_index(0), vec![submit()]).unwrap();
            sim.run_for(Duration::from_secs(2)).unwrap();
            check_bcb(&rx.try_iter().collect::<Vec<_>>());
        }
    }
}

// ---- the ordering layer (PBFT, checkpointing), in the simulator ----

mod ordering {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use mir_dsl::mir_runtime::sim::{SimConfig, Simulation};
    use mir_dsl::mir_runtime::stdevents::NewSubmodule;
    use mir_dsl::mir_runtime::stdmodules::{Hasher, TestCrypto, Timer};
    use mir_dsl::mir_runtime::{
        Batch, Event, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule, Payload,
    };
    use protocols::availability::batchfetcher::ClientProgressSnapshot;
    use protocols::availability::ClientProgress;
    use protocols::ordering::checkpoint::{
        self, AppSnapshot, Checkpoint, CheckpointInstance, StableCheckpoint,
    };
    use protocols::ordering::pbft::{self, *};
    use protocols::ordering::{SbDeliver, SbInstance, Segment, Source, Validator};

    use super::{flood, ids, N};

    /// A well-formed sample of every message the ordering layer handles.
    pub fn samples() -> Vec<Payload> {
        let d = vec![5; 32];
        let vc = ViewChange {
            view: 1,
            p_set: vec![PEntry { sn: 0, view: 0, digest: d.clone() }],
            q_set: vec![PEntry { sn: 0, view: 0, digest: d.clone() }],
        };
        let svc = SignedViewChange { view_change: vc, signature: vec![1; 64] };
        let pp = Preprepare { sn: 0, view: 0, value: Some(b"forged".to_vec()) };
        vec![
            Payload::new(pp.clone()),
            Payload::new(Preprepare { view: 7, ..pp.clone() }),
            Payload::new(Prepare { sn: 0, view: 0, digest: d.clone() }),
            Payload::new(Commit { sn: 1, view: 0, digest: d.clone(), signature: vec![] }),
            Payload::new(Done { digests: vec![d.clone(); 4], resent: true }),
            Payload::new(CatchUpRequest { sn: 0, digest: d.clone() }),
            Payload::new(CatchUpResponse { sn: 0, value: Some(b"forged".to_vec()) }),
            Payload::new(svc.clone()),
            Payload::new(PreprepareRequest { sn: 0, digest: d.clone() }),
            Payload::new(MissingPreprepare { sn: 0, value: None }),
            Payload::new(NewView {
                view: 1,
                senders: ids(),
                view_changes: vec![svc; N],
                preprepares: vec![Preprepare { view: 1, ..pp }],
            }),
            Payload::new(SnTimeout { view: 0, committed: 0 }),
            Payload::new(protocols::ordering::pbft::DoneRequest),
            Payload::new(protocols::ordering::pbft::AskDone),
            Payload::new(protocols::ordering::pbft::Sent::Commit(Commit {
                sn: 0,
                view: 0,
                digest: vec![5; 32],
                signature: vec![],
            })),
            Payload::new(SegmentTimeout { view: 0 }),
            Payload::new(Checkpoint {
                epoch: 1,
                first_sn: 4,
                snapshot_hash: d,
                signature: vec![2; 64],
                stable: true,
                resent: true,
            }),
        ]
    }

    const MODULES: &[&str] =
        &["app", "crypto", "timer", "net", "hasher", "ordering", "checkpoint", "chkp-agreement"];

    #[derive(Default, Debug)]
    struct Seen {
        delivered: BTreeMap<NodeId, usize>,
        stable: BTreeMap<NodeId, StableCheckpoint>,
    }

    struct App {
        me: NodeId,
        seen: Arc<Mutex<Seen>>,
    }

    impl PassiveModule for App {
        fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
            let mut seen = self.seen.lock().unwrap();
            for ev in events {
                if ev.get::<SbDeliver>().is_some() {
                    *seen.delivered.entry(self.me.clone()).or_default() += 1;
                } else if let Some(c) = ev.get::<StableCheckpoint>() {
                    seen.stable.insert(self.me.clone(), c.clone());
                }
            }
            Ok(())
        }
    }

    fn start() -> Vec<Event> {
        let members: Vec<(NodeId, u128)> = ids().into_iter().map(|n| (n, 1)).collect();
        let segment = Segment::new(NodeId::from_index(0), members.clone(), (0..4).collect());
        let chkp = CheckpointInstance {
            epoch: 1,
            first_sn: 4,
            membership: members,
            recovered_agreement: Vec::new(),
        };
        let new = |id: ModuleId, params: Payload| NewSubmodule { id, params, retention_index: 1 };
        let instance = ModuleId::new("checkpoint").then(1);
        vec![
            Event::new(
                "app",
                "ordering",
                new(ModuleId::new("ordering").then(0), SbInstance::new(segment).into()),
            ),
            Event::new("app", "checkpoint", new(instance.clone(), chkp.into())),
            Event::new("app", instance.clone(), AppSnapshot { epoch: 1, data: b"state".to_vec() }),
            Event::new(
                "app",
                instance,
                ClientProgressSnapshot { epoch: 1, client_progress: ClientProgress::default() },
            ),
        ]
    }

    #[test]
    fn simulator_ordering_survives_every_message_to_every_module() {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let mut sim = Simulation::new(SimConfig::with_seed(9));
        for me in ids() {
            let id = ModuleId::new;
            let pbft_modules = PbftModules {
                wal: None,
                net: id("net"),
                crypto: id("crypto"),
                timer: id("timer"),
                consumer: id("app"),
                source: Source::FixedOnly,
                validator: Validator::AcceptAll,
            };
            let chkp_modules = checkpoint::CheckpointModules {
                net: id("net"),
                crypto: id("crypto"),
                hasher: id("hasher"),
                timer: id("timer"),
                agreement: id("chkp-agreement"),
                consumer: id("app"),
            };
            let agreement = checkpoint::agreement_factory(
                id("net"),
                id("crypto"),
                id("timer"),
                PbftConfig::default(),
                me.clone(),
            );
            let node = Node::builder(me.clone())
                .passive("app", App { me: me.clone(), seen: seen.clone() })
                .passive("crypto", TestCrypto::new(me.clone(), 1))
                .passive("hasher", Hasher)
                .passive("ordering", pbft::factory(pbft_modules, PbftConfig::default(), me.clone()))
                .passive(
                    "checkpoint",
                    checkpoint::factory(chkp_modules, Default::default(), me.clone()),
                )
                .passive("chkp-agreement", agreement)
                .active("timer", Timer::new());
            sim.add_node(node).unwrap();
        }
        sim.inject(&NodeId::from_index(1), flood(MODULES)).unwrap();
        sim.run_for(Duration::from_secs(2)).unwrap();
        for me in ids() {
            sim.inject(&me, start()).unwrap();
        }
        sim.run_for(Duration::from_secs(30)).unwrap();
        let seen = seen.lock().unwrap();
        for me in ids() {
            assert_eq!(seen.delivered.get(&me), Some(&4), "{me}: {:?}", seen.delivered);
            assert!(seen.stable.contains_key(&me), "{me}: no stable checkpoint");
        }
        let stats = sim.stats(&NodeId::from_index(0)).unwrap();
        // (The factories and their instances count what they drop in their own statistics.)
        for m in ["net", "crypto", "hasher", "timer"] {
            assert!(stats.module(m).unwrap().messages_refused > 0, "{m}: {stats:?}");
        }
    }
}
