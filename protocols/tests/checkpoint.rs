//! Checkpointing in the simulator: a stable checkpoint with a strong quorum, the same
//! certificate handed to the application at every correct node (agreed through a PBFT
//! instance), forged and weak-quorum certificates rejected, a Byzantine signer and a Byzantine
//! agreement leader, a lagging member served by retransmission, nothing sent to non-members.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mir_dsl::prelude::*;
use mir_dsl::Weight;
use mir_runtime::adversary::{Adversary, Equivocate, Mutate, StrategyExt, Targets};
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use mir_runtime::stdevents::crypto::Origin;
use mir_runtime::stdevents::NewSubmodule;
use mir_runtime::stdmodules::{Hasher, TestCrypto, Timer};
use mir_runtime::{Batch, Event, ModuleResult, Node, Outbox, PassiveModule};
use protocols::availability::batchfetcher::ClientProgressSnapshot;
use protocols::availability::ClientProgress;
use protocols::ordering::checkpoint::{
    agreement_factory, factory, AppSnapshot, CertQuorum, Checkpoint, CheckpointConfig,
    CheckpointInstance, CheckpointModules, StableCheckpoint,
};
use protocols::ordering::pbft::{PbftConfig, Preprepare};
use protocols::ordering::{ProposalValidated, ValidateProposal};

const EPOCH: u64 = 1;
const FIRST_SN: u64 = 8;

/// What each node's application saw: stable checkpoints and validation answers; and every
/// CHECKPOINT message a node outside the membership got.
#[derive(Debug, Default)]
struct Seen {
    stable: BTreeMap<NodeId, Vec<StableCheckpoint>>,
    validated: BTreeMap<NodeId, Vec<ProposalValidated>>,
    foreign: Vec<Checkpoint>,
}

type Outcome = Arc<Mutex<Seen>>;

struct App {
    me: NodeId,
    outcome: Outcome,
}

impl PassiveModule for App {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        let mut seen = self.outcome.lock().unwrap();
        for ev in events {
            if let Some(c) = ev.get::<StableCheckpoint>() {
                seen.stable.entry(self.me.clone()).or_default().push(c.clone());
            } else if let Some(v) = ev.get::<ProposalValidated>() {
                seen.validated.entry(self.me.clone()).or_default().push(v.clone());
            } else if let Some(c) = ev.get::<Checkpoint>() {
                seen.foreign.push(c.clone());
            }
        }
        Ok(())
    }
}

fn ids(n: usize) -> Vec<NodeId> {
    (0..n).map(NodeId::from_index).collect()
}

fn membership() -> Vec<(NodeId, Weight)> {
    ids(4).into_iter().map(|n| (n, 1)).collect()
}

fn fast_pbft() -> PbftConfig {
    PbftConfig {
        sn_timeout: Duration::from_millis(500),
        segment_timeout: Some(Duration::from_secs(1)),
        view_change_resend: Duration::from_millis(200),
        done_resend: Duration::from_millis(200),
        catch_up_delay: Duration::from_millis(200),
        ..PbftConfig::default()
    }
}

/// Four members (and, with `outsider`, a fifth node outside the membership that records what
/// reaches its `checkpoint` module), each starting the checkpoint of epoch 1 over the same state.
fn build(seed: u64, quorum: CertQuorum, outsider: bool) -> (Simulation, Outcome) {
    let outcome: Outcome = Arc::default();
    let mut sim = Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(seed) });
    let n = if outsider { 5 } else { 4 };
    for me in ids(n) {
        let id = ModuleId::new;
        let mut node = Node::builder(me.clone())
            .passive("app", App { me: me.clone(), outcome: outcome.clone() })
            .passive("crypto", TestCrypto::new(me.clone(), 1))
            .passive("hasher", Hasher)
            .active("timer", Timer::new());
        if me.to_string() == "4" {
            node = node.passive("checkpoint", App { me: me.clone(), outcome: outcome.clone() });
        } else {
            let modules = CheckpointModules {
                net: id("net"),
                crypto: id("crypto"),
                hasher: id("hasher"),
                timer: id("timer"),
                agreement: id("chkp-agreement"),
                consumer: id("app"),
            };
            let config = CheckpointConfig { resend_period: Duration::from_millis(300), quorum };
            node = node.passive("checkpoint", factory(modules, config, me.clone())).passive(
                "chkp-agreement",
                agreement_factory(id("net"), id("crypto"), id("timer"), fast_pbft(), me.clone()),
            );
        }
        sim.add_node(node).unwrap();
    }
    for me in ids(4) {
        sim.inject(&me, start_events()).unwrap();
    }
    (sim, outcome)
}

fn instance() -> ModuleId {
    ModuleId::new("checkpoint").then(EPOCH)
}

fn start_events() -> Vec<Event> {
    let params = CheckpointInstance {
        epoch: EPOCH,
        first_sn: FIRST_SN,
        membership: membership(),
        recovered_agreement: Vec::new(),
    };
    let new = NewSubmodule { id: instance(), params: params.into(), retention_index: EPOCH };
    let mut progress = ClientProgress::default();
    progress.add(&"alice".into(), 0);
    vec![
        Event::new("app", "checkpoint", new),
        Event::new("app", instance(), AppSnapshot { epoch: EPOCH, data: b"the state".to_vec() }),
        Event::new(
            "app",
            instance(),
            ClientProgressSnapshot { epoch: EPOCH, client_progress: progress },
        ),
    ]
}

/// Runs until every node of `nodes` has a stable checkpoint; checks that they all have the same
/// one, once, with a strong quorum of signers; returns it.
fn run_until_stable(sim: &mut Simulation, out: &Outcome, nodes: &[NodeId]) -> StableCheckpoint {
    run_until_stable_with(sim, out, nodes, CertQuorum::Strong)
}

fn run_until_stable_with(
    sim: &mut Simulation,
    out: &Outcome,
    nodes: &[NodeId],
    quorum: CertQuorum,
) -> StableCheckpoint {
    let done = sim
        .run_until(Duration::from_secs(60), |_| {
            let seen = out.lock().unwrap();
            nodes.iter().all(|n| seen.stable.contains_key(n))
        })
        .unwrap();
    let seen = out.lock().unwrap();
    assert!(done, "not every node got a stable checkpoint: {:?}", seen.stable);
    let first = seen.stable[&nodes[0]][0].clone();
    for n in nodes {
        assert_eq!(seen.stable[n], vec![first.clone()], "node {n}");
    }
    let voters = Voters::new(membership());
    first.check_structure(EPOCH, FIRST_SN, &voters, quorum).unwrap();
    first
}

#[test]
fn every_member_hands_the_application_the_same_strong_certificate() {
    for seed in 0..20 {
        let (mut sim, out) = build(seed, CertQuorum::Strong, true);
        run_until_stable(&mut sim, &out, &ids(4));
        // Run on: each member delivers once; nothing ever reached the node outside the
        // membership.
        sim.run_for(Duration::from_secs(5)).unwrap();
        let seen = out.lock().unwrap();
        assert!(seen.stable.values().all(|v| v.len() == 1));
        assert!(seen.foreign.is_empty(), "{:?}", seen.foreign);
    }
}

#[test]
fn a_crashed_member_does_not_stop_the_checkpoint() {
    let (mut sim, out) = build(1, CertQuorum::Strong, false);
    sim.apply_fault(Fault::Crash(ids(4)[3].clone())).unwrap();
    let cert = run_until_stable(&mut sim, &out, &ids(3));
    assert_eq!(cert.signers, ids(3));
}

#[test]
fn a_member_partitioned_at_first_gets_the_checkpoint_by_retransmission() {
    let (mut sim, out) = build(2, CertQuorum::Strong, false);
    let all = ids(4);
    sim.apply_fault(Fault::Partition(vec![vec![all[3].clone()], all[..3].to_vec()])).unwrap();
    sim.run_for(Duration::from_secs(5)).unwrap();
    assert!(!out.lock().unwrap().stable.contains_key(&all[3]));
    sim.apply_fault(Fault::Heal).unwrap();
    run_until_stable(&mut sim, &out, &all);
}

/// Asks node 0's checkpoint instance to validate `value`; returns its answer.
fn validate(sim: &mut Simulation, out: &Outcome, value: Vec<u8>) -> Option<String> {
    let before = out.lock().unwrap().validated.get(&ids(1)[0]).map_or(0, Vec::len);
    let origin = Origin { module: ModuleId::new("app"), id: before as u64 };
    let ev = Event::new("app", instance(), ValidateProposal { sn: FIRST_SN, value, origin });
    sim.inject(&ids(1)[0], vec![ev]).unwrap();
    sim.run_for(Duration::from_millis(100)).unwrap();
    let seen = out.lock().unwrap();
    let answers = &seen.validated[&ids(1)[0]];
    assert_eq!(answers.len(), before + 1);
    answers[before].error.clone()
}

#[test]
fn forged_weak_and_foreign_certificates_are_rejected() {
    let (mut sim, out) = build(3, CertQuorum::Strong, false);
    let good = run_until_stable(&mut sim, &out, &ids(4));
    assert_eq!(validate(&mut sim, &out, good.to_bytes()), None);
    // A weak quorum (2 of 4).
    let mut weak = good.clone();
    weak.signers.truncate(2);
    weak.signatures.truncate(2);
    let e = validate(&mut sim, &out, weak.to_bytes()).unwrap();
    assert!(e.contains("quorum"), "{e}");
    // A forged signature.
    let mut forged = good.clone();
    forged.signatures[0][3] ^= 1;
    let e = validate(&mut sim, &out, forged.to_bytes()).unwrap();
    assert!(e.contains("signature"), "{e}");
    // Another snapshot hash under the same signatures.
    let mut other = good.clone();
    other.snapshot_hash[0] ^= 1;
    assert!(validate(&mut sim, &out, other.to_bytes()).is_some());
    // A repeated signer to make up the weight.
    let mut repeated = good.clone();
    repeated.signers[2] = repeated.signers[0].clone();
    repeated.signatures[2] = repeated.signatures[0].clone();
    assert!(validate(&mut sim, &out, repeated.to_bytes()).is_some());
    // Another epoch; not a certificate at all.
    let mut foreign = good.clone();
    foreign.epoch = 2;
    assert!(validate(&mut sim, &out, foreign.to_bytes()).unwrap().contains("epoch"));
    assert!(validate(&mut sim, &out, b"garbage".to_vec()).is_some());
}

#[test]
fn a_weak_quorum_suffices_only_when_configured() {
    let (mut sim, out) = build(4, CertQuorum::Weak, false);
    let good = run_until_stable_with(&mut sim, &out, &ids(4), CertQuorum::Weak);
    let mut weak = good.clone();
    weak.signers.truncate(2);
    weak.signatures.truncate(2);
    assert_eq!(validate(&mut sim, &out, weak.to_bytes()), None);
}

#[test]
fn a_byzantine_signer_and_a_byzantine_agreement_leader_change_nothing() {
    for seed in 0..50 {
        // Node 1 leads the agreement of epoch 1: it sends some members a certificate cut to a
        // weak quorum, and signs another snapshot hash for everyone.
        let (mut sim, out) = build(seed, CertQuorum::Strong, false);
        let lie = Equivocate::typed(Targets::Half, |pp: &Preprepare, _: &NodeId| {
            let mut cert = StableCheckpoint::from_bytes(pp.value.as_deref().unwrap_or_default())
                .expect("the leader proposes certificates");
            cert.signers.truncate(2);
            cert.signatures.truncate(2);
            Preprepare { value: Some(cert.to_bytes()), ..pp.clone() }
        });
        let other_hash = Mutate::typed(1.0, |c: &mut Checkpoint, _| c.snapshot_hash = vec![9; 32]);
        sim.make_byzantine(&ids(4)[1], Adversary::new(lie.then(other_hash))).unwrap();
        let correct = [ids(4)[0].clone(), ids(4)[2].clone(), ids(4)[3].clone()];
        let cert = run_until_stable(&mut sim, &out, &correct);
        assert!(!cert.signers.contains(&ids(4)[1]), "seed {seed}: {cert:?}");
    }
}
