//! PBFT against Byzantine nodes made with the adversary layer (`mir_runtime::adversary`), no
//! hand-written evil module: a primary that equivocates, withholds or proposes invalid values; a
//! primary of view 1 that sends bad NEW-VIEWs; followers that send conflicting PREPAREs and
//! COMMITs, forge view changes (signed with their own key) and mutate what they send. Every
//! scenario also replays, duplicates and delays the Byzantine node's messages.
//!
//! For every seed: safety (no two correct nodes deliver different values for one sn, none
//! delivers one twice) and liveness (every correct node delivers every sn). 1,000 seeds per
//! scenario in the default suite; more with
//! `PBFT_BYZANTINE_SEEDS=10000 cargo test --release -p protocols --test pbft_byzantine`.

mod pbft_support;
use mir_runtime::adversary::{
    Adversary, AdversaryCtx, Delay, Duplicate, Equivocate, Mutate, Omit, Outgoing, Replay,
    StrategyExt, Targets,
};
use pbft_support::*;
use protocols::ordering::pbft::{
    view_change_statement, Commit, NewView, PEntry, Prepare, Preprepare, SignedViewChange,
};

const COMMAND: &str = "cargo test -p protocols --test pbft_byzantine";

/// Noise every Byzantine node adds: replays (into other instances too), duplicates, delays.
fn noise() -> impl mir_runtime::adversary::Strategy {
    let other_instance = |m: &ModuleId, _: &mut mir_runtime::sim::SimRng| {
        ModuleId::try_new(&format!("{m}x")).unwrap()
    };
    Replay::new(0.2)
        .then(Replay::new(0.05).retarget(other_instance))
        .then(Duplicate { p: 0.2 })
        .then(Delay { p: 0.3, max: Duration::from_millis(300) })
}

/// Runs `setup` with node `bad` Byzantine (`adversary`) and `crashed` down from the start;
/// checks safety and liveness among the others.
fn run(
    setup: &Setup,
    bad: usize,
    crashed: &[usize],
    adversary: Adversary,
) -> Result<BTreeMap<Sn, Option<Vec<u8>>>, String> {
    let ids = setup.ids();
    let correct: Vec<NodeId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != bad && !crashed.contains(i))
        .map(|(_, n)| n.clone())
        .collect();
    let (mut sim, out) = setup.build();
    sim.add_monitor(SbMonitor::default().ignoring([ids[bad].clone()]));
    for c in crashed {
        sim.apply_fault(Fault::Crash(ids[*c].clone())).map_err(|e| e.to_string())?;
    }
    sim.make_byzantine(&ids[bad], adversary).map_err(|e| e.to_string())?;
    let done = sim
        .run_until(Duration::from_secs(300), |_| all_delivered(&out, &correct, &setup.sns))
        .map_err(|e| e.to_string())?;
    let decided = check_safety(&out, &correct)?;
    if !done {
        return Err(format!("not live: {:?}", out.lock().unwrap()));
    }
    Ok(decided)
}

/// A value the leader proposed, or ⊥.
fn honest_or_bottom(decided: &BTreeMap<Sn, Option<Vec<u8>>>) -> Result<(), String> {
    match decided.iter().find(|(sn, v)| v.is_some() && **v != Some(value_for(**sn))) {
        Some((sn, v)) => Err(format!("sn {sn} decided as {v:?}")),
        None => Ok(()),
    }
}

fn signer(setup: &Setup, bad: usize) -> impl Fn(&ModuleId, &[Vec<u8>]) -> Vec<u8> + Send + 'static {
    let me = setup.ids()[bad].clone();
    let crypto = TestCrypto::new(me.clone(), 1);
    move |d, data| crypto.sign_as(&me, d, data)
}

#[test]
fn an_equivocating_primary_cannot_make_correct_nodes_disagree() {
    sweep(0..seeds("PBFT_BYZANTINE_SEEDS", 1000), COMMAND, |seed| {
        let setup = Setup::new(seed, 4);
        let targets = match seed % 3 {
            0 => Targets::Nodes([NodeId::from_index(3)].into()),
            1 => Targets::Half,
            _ => Targets::All,
        };
        let lie = Equivocate::typed(targets, |pp: &Preprepare, to: &NodeId| Preprepare {
            value: Some(format!("a lie for {to}").into_bytes()),
            ..pp.clone()
        });
        // Whatever was decided is one of the primary's versions or ⊥, the same everywhere (the
        // check is in `run`).
        run(&setup, 0, &[], Adversary::new(lie.then(noise()))).map(|_| ())
    });
}

#[test]
fn a_withholding_primary_is_replaced() {
    sweep(0..seeds("PBFT_BYZANTINE_SEEDS", 1000), COMMAND, |seed| {
        let setup = Setup::new(seed, 4);
        // The primary's messages reach only one follower (or none).
        let omit = match seed % 2 {
            0 => Omit::to([NodeId::from_index(1), NodeId::from_index(2)]),
            _ => Omit::to([NodeId::from_index(1), NodeId::from_index(2), NodeId::from_index(3)]),
        };
        honest_or_bottom(&run(&setup, 0, &[], Adversary::new(omit.then(noise())))?)
    });
}

#[test]
fn a_primary_proposing_invalid_values_gets_bottom_for_them() {
    sweep(0..seeds("PBFT_BYZANTINE_SEEDS", 1000), COMMAND, |seed| {
        let setup = Setup::new(seed, 4);
        let bad =
            Mutate::typed(0.5, |pp: &mut Preprepare, _| pp.value = Some(b"bad value".to_vec()));
        honest_or_bottom(&run(&setup, 0, &[], Adversary::new(bad.then(noise())))?)
    });
}

#[test]
fn a_bad_new_view_is_rejected_and_the_next_primary_takes_over() {
    sweep(0..seeds("PBFT_BYZANTINE_SEEDS", 1000), COMMAND, |seed| {
        // n = 7 (f = 2): the leader is down, view 1's primary (node 1) sends bad NEW-VIEWs.
        let setup = Setup::new(seed, 7);
        let kind = seed % 4;
        let bad = Mutate::typed(1.0, move |nv: &mut NewView, rng| match kind {
            // A value nobody prepared instead of ⊥.
            0 => {
                let i = rng.below(nv.preprepares.len() as u64) as usize;
                nv.preprepares[i].value = Some(b"forged".to_vec());
            }
            // A view change dropped: not a strong quorum any more.
            1 => {
                nv.senders.pop();
                nv.view_changes.pop();
            }
            // A sender swapped: the signature no longer matches.
            2 => {
                let last = nv.senders.len() - 1;
                nv.senders.swap(0, last);
            }
            // A pre-prepare missing.
            _ => {
                nv.preprepares.pop();
            }
        });
        let decided = run(&setup, 1, &[0], Adversary::new(bad.then(noise())))?;
        match decided.values().find(|v| v.is_some()) {
            Some(v) => Err(format!("a value decided without a leader: {v:?}")),
            None => Ok(()),
        }
    });
}

#[test]
fn byzantine_followers_cannot_break_safety_or_liveness() {
    sweep(0..seeds("PBFT_BYZANTINE_SEEDS", 1000), COMMAND, |seed| {
        // Half the seeds also crash the leader (then n = 7, f = 2), so that view changes run
        // with the liar.
        let (n, crashed): (usize, &[usize]) = if seed % 4 < 2 { (4, &[]) } else { (7, &[0]) };
        let config = PbftConfig { sign_commits: seed % 2 == 0, ..fast_config() };
        let setup = Setup { config, ..Setup::new(seed, n) };
        let lie_digest = |_: &NodeId| vec![0xAB; 32];
        let prepares = Equivocate::typed(Targets::Half, move |p: &Prepare, to| Prepare {
            digest: lie_digest(to),
            ..p.clone()
        });
        let commits = Equivocate::typed(Targets::Half, move |c: &Commit, to| Commit {
            digest: lie_digest(to),
            ..c.clone()
        });
        // Its view changes claim it prepared a value nobody proposed, signed with its own key.
        let forge_vc = |ctx: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
            for o in out.iter_mut() {
                if let Ok(Some(mut svc)) = o.message.payload.decode::<SignedViewChange>() {
                    let vc = &mut svc.view_change;
                    vc.p_set = vec![PEntry { sn: 0, view: vc.view - 1, digest: vec![0xCD; 32] }];
                    vc.q_set = vc.p_set.clone();
                    svc.signature =
                        ctx.sign(&o.message.dest_module, &view_change_statement(vc)).unwrap();
                    o.message.payload = svc.into();
                }
            }
        };
        let flip = Mutate::flip_bits(0.05);
        let strategy = prepares.then(commits).then(forge_vc).then(flip).then(noise());
        let adversary = Adversary::new(strategy).signer(signer(&setup, 3));
        let decided = run(&setup, 3, crashed, adversary)?;
        honest_or_bottom(&decided)
    });
}
