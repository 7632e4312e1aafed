//! PBFT with Twins: the leader's identity runs twice (`0` and its twin `0b`: same ID, same keys),
//! each instance honest and proposing its own values, while generated partitions decide who
//! hears which twin. In every scenario the correct nodes (1, 2, 3) deliver the same value for
//! each sn, each once, and after the partitions heal they deliver every sn.
//!
//! 3 rounds of 15 ms over 5 instances, symmetric duplicates removed; up to 300 scenarios by
//! default, all of them with `TWINS_BUDGET=100000 cargo test --release -p protocols --test pbft_twins`.

mod pbft_support;
use mir_runtime::sim::twins::scenarios;
use pbft_support::*;

const ROUND: Duration = Duration::from_millis(15);

#[test]
fn pbft_keeps_agreement_under_twins() {
    let budget = seeds("TWINS_BUDGET", 300) as usize;
    let instances: Vec<NodeId> =
        ["0", "0b", "1", "2", "3"].iter().map(|s| NodeId::new(s)).collect();
    let all = scenarios(&instances, &[(instances[0].clone(), instances[1].clone())], 3, budget);
    let (mut twin_won, mut leader_won) = (0, 0);
    for (k, scenario) in all.iter().enumerate() {
        let setup = Setup::new(k as u64, 4);
        let ids = setup.ids();
        let (mut sim, out) = setup.build();
        sim.add_twin(setup.node(0, &out, true), NodeId::new("0b")).unwrap();
        sim.add_monitor(SbMonitor::default().ignoring([NodeId::new("0")]));
        for (r, round) in scenario.iter().enumerate() {
            let fault = match round {
                Some([a, b]) => Fault::Partition(vec![a.clone(), b.clone()]),
                None => Fault::EndPartition,
            };
            sim.schedule_fault(ROUND * r as u32, fault);
        }
        sim.schedule_fault(ROUND * scenario.len() as u32, Fault::Heal);
        let correct = &ids[1..];
        let done = sim
            .run_until(Duration::from_secs(120), |_| all_delivered(&out, correct, &setup.sns))
            .unwrap_or_else(|e| panic!("scenario {k} {scenario:?}: {e}"));
        assert!(done, "scenario {k} {scenario:?}: not live: {:?}", out.lock().unwrap());
        let decided = check_safety(&out, correct)
            .unwrap_or_else(|e| panic!("scenario {k} {scenario:?}: {e}"));
        for (sn, v) in &decided {
            match v {
                Some(v) if *v == value_for(*sn) => leader_won += 1,
                Some(v) if *v == twin_value_for(*sn) => twin_won += 1,
                Some(v) => panic!("scenario {k}: sn {sn} decided as {v:?}"),
                None => {}
            }
        }
    }
    eprintln!(
        "{} scenarios; values decided: {leader_won} of the leader, {twin_won} of its twin",
        all.len()
    );
    // Not vacuous: each twin gets values decided, in some scenarios.
    assert!(twin_won > 0 && leader_won > 0);
}
