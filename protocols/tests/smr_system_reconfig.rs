//! Reconfiguration over gRPC (issue 17): four nodes built with [`System::builder`] and the
//! key-value store deciding the membership. The admin client adds a fifth node, which was built
//! with `join_as` and the membership that adds it: the others' transports dial it and their
//! crypto learns its key, it joins by state transfer and serves clients. Then the admin removes
//! node 0, whose `left()` resolves, and the four that stay go on.
#![cfg(feature = "system")]

use std::net::SocketAddr;
use std::time::Duration;

use mir_runtime::keys::NodeKeys;
use mir_runtime::membership::{Member, Membership};
use mir_runtime::NodeId;
use protocols::ordering::iss::NodeSettings;
use protocols::ordering::pbft::PbftConfig;
use protocols::smr::client::SmrClient;
use protocols::smr::kv::KvStore;
use protocols::smr::system::{RunningNode, System, SystemBuilder};

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<std::net::TcpListener> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn settings() -> NodeSettings {
    let mut s = NodeSettings {
        pbft: PbftConfig {
            sn_timeout: Duration::from_secs(1),
            segment_timeout: Some(Duration::from_secs(2)),
            ..PbftConfig::default()
        },
        ..NodeSettings::default()
    };
    s.availability.mempool.batch_timeout = Duration::from_millis(20);
    s.iss.catch_up_period = Duration::from_millis(300);
    s
}

fn builder(member: &Member, trusted: &Membership) -> SystemBuilder {
    System::builder(member.id.clone(), trusted.clone(), NodeKeys::test(7, &member.id))
        .settings(settings())
        .clients("127.0.0.1:0".parse().unwrap())
}

async fn submit(client: &mut SmrClient, cmd: &str) -> Vec<u8> {
    let r = tokio::time::timeout(Duration::from_secs(60), client.submit(cmd.as_bytes().to_vec()))
        .await
        .unwrap_or_else(|_| panic!("no receipt for {cmd:?} in time"))
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    r.result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_and_a_node_leaves_over_grpc() {
    let ids: Vec<NodeId> = (0..5).map(NodeId::from_index).collect();
    let peers = free_addrs(5);
    let all: Vec<Member> = ids
        .iter()
        .zip(&peers)
        .map(|(id, a)| NodeKeys::test(7, id).member(id.clone(), *a, 1))
        .collect();
    let initial = Membership { nodes: all[..4].to_vec() };
    // The admin is a signing client: nobody else can act in its name.
    let admin_key = NodeKeys::test(7, &NodeId::new("admin")).signing;
    let admins = || [protocols::smr::signed::client_id(&admin_key).as_str().into()];
    let mut nodes: Vec<Option<RunningNode>> = Vec::new();
    let mut addrs = Vec::new();
    for m in &initial.nodes {
        let built = builder(m, &initial)
            .build(KvStore::with_membership(initial.clone(), admins()))
            .unwrap();
        addrs.push(built.clients().unwrap().local_addr());
        nodes.push(Some(built.start()));
    }
    for n in nodes.iter().flatten() {
        assert!(n.wait_connected(Duration::from_secs(30)).await, "the nodes did not connect");
    }
    let mut alice = SmrClient::new("alice", addrs.clone());
    assert_eq!(submit(&mut alice, "put color blue").await, b"-");

    // Node 4 starts outside the membership; a client of its own gets nothing yet.
    let joiner = builder(&all[4], &initial)
        .join_as(all[4].clone())
        .build(KvStore::with_membership(initial.clone(), admins()))
        .unwrap();
    let joiner_addr = joiner.clients().unwrap().local_addr();
    nodes.push(Some(joiner.start()));

    // Only the admin client may change the membership.
    let mut mallory = SmrClient::new("mallory", addrs.clone());
    let refused = submit(&mut mallory, "remove-node 1").await;
    assert!(refused.starts_with(b"!"), "{}", String::from_utf8_lossy(&refused));
    let mut admin = SmrClient::signing(admin_key.clone(), addrs.clone());
    let add = format!("add-node\n{}", all[4].to_toml());
    assert_eq!(submit(&mut admin, &add).await, b"+ok");

    // Node 4 joins (state transfer) and orders and answers: a command through it alone.
    let mut bob = SmrClient::new("bob", vec![joiner_addr]);
    assert_eq!(submit(&mut bob, "put joined yes").await, b"-");
    assert_eq!(submit(&mut alice, "get color").await, b"+blue");
    assert_eq!(submit(&mut bob, "get color").await, b"+blue", "node 4 has the state from before");

    // Node 0 leaves: its part ends, `left()` tells, and the others go on without it.
    let left = nodes[0].as_ref().unwrap().left();
    assert_eq!(submit(&mut admin, "remove-node 0").await, b"+ok");
    let epoch = tokio::time::timeout(Duration::from_secs(60), left)
        .await
        .expect("node 0 did not leave in time");
    assert!(epoch > 0);
    // Its client service refuses what it could no longer have ordered.
    let mut dave = SmrClient::new("dave", vec![addrs[0]]).attempts(1);
    let e = dave.submit(b"put late x".to_vec()).await.unwrap_err();
    assert!(e.to_string().contains("left the membership"), "{e}");
    nodes[0].take().unwrap().stop().await.unwrap();
    let mut carol = SmrClient::new("carol", addrs[1..].to_vec());
    assert_eq!(submit(&mut carol, "get joined").await, b"+yes");
    assert_eq!(submit(&mut bob, "put after leave").await, b"-");

    for n in nodes.into_iter().flatten() {
        n.stop().await.unwrap();
    }
}
