//! ISS with Twins: node 0's identity runs twice (`0` and its twin `0b`: same ID, same keys), each
//! instance honest and proposing its own values in node 0's segments, while generated partitions
//! decide who hears which twin. In every scenario the correct nodes (1, 2, 3) keep one log (the
//! same entry at every sn), and after the partitions heal they go on ordering: two more epochs.
//! Values of both twins get ordered across the scenarios (the test is not vacuous).
//!
//! 3 rounds of 100 ms over 5 instances, symmetric duplicates removed; up to 100 scenarios by
//! default, more with `ISS_TWINS_BUDGET=100000 cargo test --release -p protocols --test iss_twins`.

mod iss_support;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use iss_support::*;
use mir_runtime::sim::twins::scenarios;
use mir_runtime::sim::{Fault, SimConfig, Simulation};
use protocols::ordering::iss::IssConfig;

const ROUND: Duration = Duration::from_millis(100);

#[test]
fn iss_keeps_one_log_under_twins() {
    let budget = std::env::var("ISS_TWINS_BUDGET").ok().and_then(|s| s.parse().ok()).unwrap_or(100);
    let instances: Vec<NodeId> =
        ["0", "0b", "1", "2", "3"].iter().map(|s| NodeId::new(s)).collect();
    let all = scenarios(&instances, &[(instances[0].clone(), instances[1].clone())], 3, budget);
    let (mut leader_won, mut twin_won) = (0, 0);
    let correct: Vec<NodeId> = (1..4).map(NodeId::from_index).collect();
    for (k, scenario) in all.iter().enumerate() {
        let outcome: Outcome = Arc::default();
        let mut sim =
            Simulation::new(SimConfig { digest: false, ..SimConfig::with_seed(k as u64) });
        for me in ids() {
            sim.add_node(node_with(&me, IssConfig::default(), &outcome)).unwrap();
        }
        let twin = node_as(&ids()[0], IssConfig::default(), &outcome, &NodeId::new("0b"));
        sim.add_twin(twin, NodeId::new("0b")).unwrap();
        for (r, round) in scenario.iter().enumerate() {
            let fault = match round {
                Some([a, b]) => Fault::Partition(vec![a.clone(), b.clone()]),
                None => Fault::EndPartition,
            };
            sim.schedule_fault(ROUND * r as u32, fault);
        }
        sim.schedule_fault(ROUND * scenario.len() as u32, Fault::Heal);
        let next = |s: &Seen| s.log.last().map_or(0, |e| e.sn + 1);
        // Two epochs (16 entries each) after the partitions heal.
        sim.run_for(ROUND * scenario.len() as u32).unwrap();
        let target = {
            let all = outcome.lock().unwrap();
            correct.iter().map(|n| all.get(n).map_or(0, next)).max().unwrap_or(0) + 32
        };
        let done = sim
            .run_until(Duration::from_secs(300), |_| {
                let all = outcome.lock().unwrap();
                correct.iter().all(|n| all.get(n).is_some_and(|s| next(s) >= target))
            })
            .unwrap_or_else(|e| panic!("scenario {k} {scenario:?}: {e}"));
        let all = outcome.lock().unwrap().clone();
        assert!(done, "scenario {k} {scenario:?}: not live");
        let mine: BTreeMap<NodeId, Seen> =
            all.into_iter().filter(|(n, _)| correct.contains(n)).collect();
        check_logs(&mine).unwrap_or_else(|e| panic!("scenario {k} {scenario:?}: {e}"));
        for e in &mine[&correct[0]].log {
            match e.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()) {
                Some(v) if v.ends_with(" by 0") => leader_won += 1,
                Some(v) if v.ends_with(" by 0b") => twin_won += 1,
                _ => {}
            }
        }
    }
    eprintln!(
        "{} scenarios; entries ordered: {leader_won} of node 0, {twin_won} of its twin",
        all.len()
    );
    assert!(leader_won > 0 && twin_won > 0, "{leader_won} {twin_won}");
}
