//! The BCB demo: nodes broadcasting messages with Signed Echo Broadcast over gRPC, with real k256
//! signatures.
//!
//! Each node runs: `app` (this module: asks for broadcasts, prints deliveries), `bcb` (a
//! [factory](protocols::bcb::factory) of BCB instances, one per message), `crypto` (k256, on a
//! worker thread) and `net` (the gRPC transport). Message `k` is broadcast in instance `bcb/k`.
//! Every node keeps a window of instances open ahead of what it has delivered, so it can take part
//! in the next broadcasts; messages for instances it has not opened yet wait in the factory.

use std::sync::mpsc;

use mir_dsl::mir_runtime::stdevents::{GarbageCollect, Init, NewSubmodule};
use mir_dsl::mir_runtime::{payload, ModuleId, NodeId, Payload};
use mir_dsl::{ensure, protocol, Ctx, Handled};
use protocols::bcb::{BcbInstance, BroadcastRefused, BroadcastRequest, Deliver};

pub use crate::cluster::{free_ports, membership_toml, membership_toml_with_ports, DemoNode};
use serde::{Deserialize, Serialize};

/// Injected into the leader's `app`: broadcast this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// The message.
    pub data: Vec<u8>,
}

payload!(Submit = "demo.Submit");

/// What the app reports to the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BcbReport {
    /// Message `instance` was delivered with `data`.
    Delivered {
        /// The node.
        node: NodeId,
        /// The instance number.
        instance: u64,
        /// The message.
        data: Vec<u8>,
    },
    /// A broadcast request was refused.
    Refused(String),
}

/// The demo's application module.
pub struct BcbApp {
    me: NodeId,
    leader: NodeId,
    factory: ModuleId,
    window: u64,
    /// Instances created so far: 0..opened.
    opened: u64,
    next_broadcast: u64,
    delivered: u64,
    report: mpsc::Sender<BcbReport>,
}

impl BcbApp {
    /// The app of node `me`, where `leader` broadcasts; reports go to `report`.
    pub fn new(me: NodeId, leader: NodeId, report: mpsc::Sender<BcbReport>) -> Self {
        BcbApp {
            me,
            leader,
            factory: ModuleId::new("bcb"),
            window: 16,
            opened: 0,
            next_broadcast: 0,
            delivered: 0,
            report,
        }
    }

    fn open_until(&mut self, ctx: &mut Ctx<Self>, end: u64) {
        while self.opened < end {
            let k = self.opened;
            let params = Payload::new(BcbInstance { leader: self.leader.clone(), instance: k });
            ctx.emit(
                &self.factory.clone(),
                NewSubmodule { id: self.factory.then(k), params, retention_index: k },
            );
            self.opened += 1;
        }
    }
}

#[protocol]
impl BcbApp {
    /// At start, open the first window of instances.
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        self.open_until(ctx, self.window);
        Ok(())
    }

    /// A message to broadcast (the leader only).
    #[upon(event)]
    fn submit(&mut self, ctx: &mut Ctx<Self>, s: Submit) -> Handled {
        ensure!(
            self.me == self.leader,
            "node {} is not the leader; only {} broadcasts",
            self.me,
            self.leader
        );
        let k = self.next_broadcast;
        self.next_broadcast += 1;
        self.open_until(ctx, k + 1);
        ctx.emit(&self.factory.then(k), BroadcastRequest { data: s.data });
        Ok(())
    }

    /// Delivered: report, slide the window, forget old instances.
    #[upon(event)]
    fn deliver(&mut self, ctx: &mut Ctx<Self>, d: Deliver) -> Handled {
        let Ok(bytes) = <[u8; 8]>::try_from(d.instance.as_slice()) else {
            mir_dsl::fatal!("instance id of {} bytes", d.instance.len())
        };
        let instance = u64::from_le_bytes(bytes);
        let _ = self.report.send(BcbReport::Delivered {
            node: self.me.clone(),
            instance,
            data: d.data,
        });
        self.delivered += 1;
        self.open_until(ctx, self.delivered + self.window);
        if self.delivered > self.window {
            ctx.emit(
                &self.factory.clone(),
                GarbageCollect { retention_index: self.delivered - self.window },
            );
        }
        Ok(())
    }

    /// A refused broadcast request.
    #[upon(event)]
    fn refused(&mut self, _ctx: &mut Ctx<Self>, r: BroadcastRefused) -> Handled {
        let _ = self.report.send(BcbReport::Refused(r.reason));
        Ok(())
    }
}

/// Builds node `me` of the demo: app, BCB factory, k256 crypto on a worker thread, gRPC.
pub fn demo_node(
    me: NodeId,
    leader: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    keys: mir_dsl::mir_runtime::keys::NodeKeys,
    report: mpsc::Sender<BcbReport>,
    record: Option<&std::path::Path>,
) -> Result<DemoNode, Box<dyn std::error::Error>> {
    let builder = demo_modules(me.clone(), leader, membership, keys.signing, report)?;
    crate::cluster::over_grpc(&me, membership, keys.transport, builder, record)
}

/// The demo node's modules without a transport (add one named `net`, or hand the builder to the
/// simulator, which adds its own): app, BCB factory, k256 crypto on a worker thread.
pub fn demo_modules(
    me: NodeId,
    leader: NodeId,
    membership: &mir_dsl::mir_runtime::membership::Membership,
    key: k256::ecdsa::SigningKey,
    report: mpsc::Sender<BcbReport>,
) -> Result<mir_dsl::mir_runtime::NodeBuilder, Box<dyn std::error::Error>> {
    use mir_dsl::mir_runtime::stdmodules::EcdsaCrypto;
    use mir_dsl::mir_runtime::Node;
    if membership.get(&leader).is_none() {
        return Err(format!("the leader {leader} is not in the membership").into());
    }
    let modules = protocols::bcb::BcbModules {
        net: ModuleId::new("net"),
        crypto: ModuleId::new("crypto"),
        consumer: ModuleId::new("app"),
    };
    let quorum = mir_dsl::Voters::new(membership.weights());
    let registry = membership.registry()?;
    Ok(Node::builder(me.clone())
        .passive("app", mir_dsl::DslModule::new(BcbApp::new(me.clone(), leader, report)))
        .passive("bcb", protocols::bcb::factory(modules, quorum, me))
        .passive_on_worker("crypto", EcdsaCrypto::new(key, registry).threads(2)))
}
