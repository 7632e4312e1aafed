//! BCB on the production executor: 4 nodes in one process over the in-process transport, with
//! real k256 signatures on worker threads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::mir_runtime::stdevents::Init;
use mir_dsl::mir_runtime::stdmodules::{ecdsa::test_keys, EcdsaCrypto};
use mir_dsl::mir_runtime::transport::inprocess::InProcessNetwork;
use mir_dsl::mir_runtime::{Batch, ModuleId, ModuleResult, Node, NodeId, Outbox, PassiveModule};
use mir_dsl::{DslModule, Voters};
use protocols::bcb::{Bcb, BcbModules, BroadcastRequest, Deliver};

type Delivered = Arc<Mutex<Vec<(NodeId, Vec<u8>)>>>;

struct App {
    me: NodeId,
    broadcast: Option<Vec<u8>>,
    delivered: Delivered,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if ev.is::<Init>() {
                if let Some(d) = self.broadcast.take() {
                    out.send(&ModuleId::new("bcb"), BroadcastRequest { data: d });
                }
            } else if let Some(d) = ev.get::<Deliver>() {
                self.delivered.lock().unwrap().push((self.me.clone(), d.data.clone()));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_deliver_over_the_in_process_transport_with_real_signatures() {
    let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
    let (keys, registry) = test_keys(1, &ids);
    let net = InProcessNetwork::new();
    let delivered = Delivered::default();
    let modules = BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let mut nodes = Vec::new();
    let mut transports = Vec::new();
    for me in &ids {
        let bcb = Bcb::new(
            modules.clone(),
            b"inst".to_vec(),
            Voters::equal(ids.clone()),
            ids[0].clone(),
            me.clone(),
        );
        let transport = net.transport(me.clone());
        transports.push(transport.stats());
        let app = App {
            me: me.clone(),
            broadcast: (me == &ids[0]).then(|| b"over the wire".to_vec()),
            delivered: delivered.clone(),
        };
        let node = Node::builder(me.clone())
            .passive("app", app)
            .passive("bcb", DslModule::new(bcb))
            .passive_on_worker("crypto", EcdsaCrypto::new(keys[me].clone(), registry.clone()))
            .active("net", transport)
            .build()
            .unwrap();
        net.connect(me.clone(), node.handle().sink());
        nodes.push(node);
    }
    let handles: Vec<_> = nodes.iter().map(|n| n.handle()).collect();
    let runs: Vec<_> = nodes.into_iter().map(|n| tokio::spawn(n.run())).collect();
    for _ in 0..1000 {
        if delivered.lock().unwrap().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for h in &handles {
        h.stop();
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }
    let mut d = delivered.lock().unwrap().clone();
    d.sort();
    assert_eq!(d, ids.iter().map(|n| (n.clone(), b"over the wire".to_vec())).collect::<Vec<_>>());
    // 4 SENDs + 4 ECHOs (one to self) + 4 FINALs: nothing dropped.
    let sent: u64 = transports.iter().map(|s| s.snapshot().0).sum();
    assert_eq!(sent, 12);
    for s in &transports {
        let (_, not_connected, overflow, rejected) = s.snapshot();
        assert_eq!((not_connected, overflow, rejected), (0, 0, 0));
    }
}
