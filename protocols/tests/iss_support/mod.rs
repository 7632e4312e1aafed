//! Helpers shared by the ISS tests (`iss*.rs`): a simulated node running ISS over PBFT with a
//! test source of proposals, and an application that records the log.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_runtime::stdmodules::{Hasher, TestCrypto, Timer};
use mir_runtime::{Batch, ModuleResult, Node, NodeBuilder, Outbox, PassiveModule};
use protocols::availability::batchfetcher::{ClientProgressSnapshot, SnapshotRequest};
use protocols::availability::ClientProgress;
use protocols::ordering::checkpoint::{
    self, AppSnapshot, CheckpointConfig, CheckpointModules, StableCheckpoint,
};
use protocols::ordering::iss::leaders::LeaderPolicy;
use protocols::ordering::iss::{EpochStarted, Iss, IssConfig, IssModules, OrderedEntry};
use protocols::ordering::pbft::{self, PbftConfig, PbftModules};
use protocols::ordering::{BatchCut, CutBatch, Source, Validator};

#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub log: Vec<OrderedEntry>,
    pub epochs: Vec<EpochStarted>,
    pub stable: Vec<StableCheckpoint>,
}

pub type Outcome = Arc<Mutex<BTreeMap<NodeId, Seen>>>;

/// The application: records the log; its state is the number of entries delivered.
pub struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        let mut all = self.outcome.lock().unwrap();
        let seen = all.entry(self.me.clone()).or_default();
        for ev in events {
            if let Some(e) = ev.get::<OrderedEntry>() {
                seen.log.push(e.clone());
            } else if let Some(e) = ev.get::<EpochStarted>() {
                seen.epochs.push(e.clone());
            } else if let Some(c) = ev.get::<StableCheckpoint>() {
                seen.stable.push(c.clone());
            } else if let Some(r) = ev.get::<SnapshotRequest>() {
                let data = (seen.log.len() as u64).to_le_bytes().to_vec();
                let iss = ModuleId::new("iss");
                out.send(&iss, AppSnapshot { epoch: r.epoch, data });
                let progress = ClientProgressSnapshot {
                    epoch: r.epoch,
                    client_progress: ClientProgress::default(),
                };
                out.send(&iss, progress);
            }
        }
        Ok(())
    }
}

/// Proposes `"<sn> by <me>"`.
pub struct TestSource {
    me: NodeId,
}

impl PassiveModule for TestSource {
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            if let Some(c) = ev.get::<CutBatch>() {
                let value = format!("{} by {}", c.sn, self.me).into_bytes();
                out.send(&c.origin.module, BatchCut { value, origin: c.origin.clone() });
            }
        }
        Ok(())
    }
}

pub fn ids() -> Vec<NodeId> {
    (0..4).map(NodeId::from_index).collect()
}

pub fn node(me: &NodeId, policy: LeaderPolicy, outcome: &Outcome) -> NodeBuilder {
    node_with(me, IssConfig { leader_policy: policy, ..IssConfig::default() }, outcome)
}

/// A node with these ISS settings.
pub fn node_with(me: &NodeId, iss_config: IssConfig, outcome: &Outcome) -> NodeBuilder {
    let id = ModuleId::new;
    let membership: Vec<(NodeId, Weight)> = ids().into_iter().map(|n| (n, 1)).collect();
    let pbft_config = PbftConfig {
        sn_timeout: Duration::from_millis(500),
        segment_timeout: Some(Duration::from_secs(1)),
        view_change_resend: Duration::from_millis(200),
        done_resend: Duration::from_millis(200),
        catch_up_delay: Duration::from_millis(200),
        ..PbftConfig::default()
    };
    let pbft_modules = PbftModules {
        net: id("net"),
        crypto: id("crypto"),
        timer: id("timer"),
        consumer: id("iss"),
        source: Source::Module(id("source")),
        validator: Validator::AcceptAll,
    };
    let chkp_modules = CheckpointModules {
        net: id("net"),
        crypto: id("crypto"),
        hasher: id("hasher"),
        timer: id("timer"),
        agreement: id("chkp-agreement"),
        consumer: id("iss"),
    };
    let chkp_config =
        CheckpointConfig { resend_period: Duration::from_millis(300), ..Default::default() };
    let iss_modules = IssModules {
        orderer: id("ordering"),
        checkpoint: id("checkpoint"),
        consumer: id("app"),
        availability: None,
        batchfetcher: None,
    };
    let iss = Iss::new(iss_modules, iss_config, membership).unwrap();
    Node::builder(me.clone())
        .passive("app", App { me: me.clone(), outcome: outcome.clone() })
        .passive("source", TestSource { me: me.clone() })
        .passive("crypto", TestCrypto::new(me.clone(), 1))
        .passive("hasher", Hasher)
        .passive("ordering", pbft::factory(pbft_modules, pbft_config.clone(), me.clone()))
        .passive("checkpoint", checkpoint::factory(chkp_modules, chkp_config, me.clone()))
        .passive(
            "chkp-agreement",
            checkpoint::agreement_factory(
                id("net"),
                id("crypto"),
                id("timer"),
                pbft_config,
                me.clone(),
            ),
        )
        .passive("iss", DslModule::new(iss))
        .active("timer", Timer::new())
}
