//! PBFT alone on one segment, in the simulator: the good case, a crashed leader (⊥ after a view
//! change), view changes in a row, invalid proposals, signed commits, fixed proposals, catch-up
//! of a node cut off during the whole segment, the monitors used offline over recorded logs.

mod pbft_support;
use pbft_support::*;

#[test]
fn four_nodes_deliver_every_sn_with_the_leaders_values() {
    let setup = Setup::new(1, 4);
    let (mut sim, out) = setup.build();
    sim.add_monitor(SbMonitor::default());
    let ids = setup.ids();
    assert!(sim
        .run_until(Duration::from_secs(10), |_| all_delivered(&out, &ids, &setup.sns))
        .unwrap());
    let decided = check_safety(&out, &ids).unwrap();
    for sn in &setup.sns {
        assert_eq!(decided[sn], Some(value_for(*sn)), "sn {sn}");
    }
    // Nothing suspected, and no view change happened: everything in view 0 within the first
    // second.
    assert!(out.lock().unwrap().values().all(|s| s.suspects.is_empty()));
    assert!(sim.now().since_start() < Duration::from_secs(1), "took {}", sim.now());
}

/// Runs `setup` until `must` delivered every sn (or 120 s of simulated time); checks agreement
/// among `must` and returns what was decided.
fn run_to_end(
    setup: &Setup,
    must: &[NodeId],
    before: impl FnOnce(&mut Simulation),
) -> (BTreeMap<Sn, Option<Vec<u8>>>, Outcome, Simulation) {
    let (mut sim, out) = setup.build();
    sim.add_monitor(
        SbMonitor::default().ignoring(setup.ids().into_iter().filter(|n| !must.contains(n))),
    );
    before(&mut sim);
    let done =
        sim.run_until(Duration::from_secs(120), |_| all_delivered(&out, must, &setup.sns)).unwrap();
    assert!(done, "not everything delivered by {:?}: {:?}", must, out.lock().unwrap());
    let decided = check_safety(&out, must).unwrap();
    (decided, out, sim)
}

#[test]
fn a_leader_crashed_from_the_start_gives_bottom_everywhere_after_one_view_change() {
    let setup = Setup::new(2, 4);
    let ids = setup.ids();
    let (decided, out, _) = run_to_end(&setup, &ids[1..], |sim| {
        sim.apply_fault(Fault::Crash(ids[0].clone())).unwrap();
    });
    assert!(decided.values().all(Option::is_none), "{decided:?}");
    // Nobody suspects here: ⊥ itself is the evidence ISS acts on.
    assert!(out.lock().unwrap().values().all(|s| s.suspects.is_empty()));
}

#[test]
fn a_leader_crashing_midway_leaves_values_before_and_bottom_after() {
    for seed in 0..20 {
        let setup = Setup {
            config: PbftConfig { propose_delay: Duration::from_millis(20), ..fast_config() },
            ..Setup::new(seed, 4)
        };
        let ids = setup.ids();
        let (decided, _, _) = run_to_end(&setup, &ids[1..], |sim| {
            sim.schedule_fault(Duration::from_millis(70), Fault::Crash(ids[0].clone()));
        });
        // Proposals leave every 20 ms: the first slots are decided with values, the last ones
        // (never proposed) as ⊥, and a value is always the leader's.
        assert_eq!(decided[&0], Some(value_for(0)), "seed {seed}");
        assert_eq!(decided[&7], None, "seed {seed}");
        for (sn, v) in &decided {
            assert!(v.is_none() || *v == Some(value_for(*sn)), "seed {seed}: sn {sn}: {v:?}");
        }
    }
}

#[test]
fn two_faulty_primaries_in_a_row_then_progress_with_seven_nodes() {
    let setup = Setup::new(3, 7);
    let ids = setup.ids();
    let (decided, _, sim) = run_to_end(&setup, &ids[2..], |sim| {
        sim.apply_fault(Fault::Crash(ids[0].clone())).unwrap();
        sim.apply_fault(Fault::Crash(ids[1].clone())).unwrap();
    });
    assert!(decided.values().all(Option::is_none));
    // View 1's primary (node 1) is down too: its view change times out (2 s · 2) before view 2.
    assert!(sim.now().since_start() > Duration::from_secs(4), "{}", sim.now());
}

#[test]
fn a_slow_leader_is_replaced_after_its_first_proposal() {
    // The leader proposes every 2 s, slower than the per-sn timeout (0.5 s): the view changes
    // after its first proposal; the other slots end as ⊥.
    let setup = Setup {
        config: PbftConfig { propose_delay: Duration::from_secs(2), ..fast_config() },
        ..Setup::new(4, 4)
    };
    let ids = setup.ids();
    let (decided, _, _) = run_to_end(&setup, &ids, |_| {});
    assert_eq!(decided[&0], Some(value_for(0)));
    assert!(decided.iter().filter(|(sn, _)| **sn > 0).all(|(_, v)| v.is_none()), "{decided:?}");
}

#[test]
fn a_value_the_source_hands_over_after_the_view_change_goes_back_to_the_application() {
    // Mir's "resurrection" TODO: the source answers after 1 s, the view changes at 0.5 s.
    let setup = Setup { source_delay: Some(Duration::from_secs(1)), ..Setup::new(8, 4) };
    let ids = setup.ids();
    let (decided, out, mut sim) = run_to_end(&setup, &ids, |_| {});
    assert!(decided.values().all(Option::is_none), "{decided:?}");
    sim.run_for(Duration::from_secs(2)).unwrap();
    let unused = &out.lock().unwrap()[&ids[0]].unused;
    assert_eq!(unused.len(), 1, "{unused:?}");
    assert_eq!((unused[0].sn, &unused[0].value), (0, &value_for(0)));
}

#[test]
fn an_invalid_proposal_is_not_prepared_its_leader_is_suspected_and_it_ends_as_bottom() {
    let mut setup = Setup::new(5, 4);
    setup.fixed.insert(0, BTreeMap::from([(3, b"bad value".to_vec())]));
    let ids = setup.ids();
    let (decided, out, _) = run_to_end(&setup, &ids, |_| {});
    assert_eq!(decided[&3], None);
    for sn in [0, 1, 2, 4, 5, 6, 7] {
        assert_eq!(decided[&sn], Some(value_for(sn)), "sn {sn}");
    }
    let all = out.lock().unwrap();
    for n in &ids {
        let s = &all[n].suspects;
        assert!(s.iter().any(|s| s.node == ids[0] && s.reason.contains("sn 3")), "{n}: {s:?}");
    }
}

#[test]
fn fixed_proposals_are_proposed_and_a_new_primary_proposes_its_own() {
    // Every node has its own fixed proposal for every sn (as in checkpoint agreement); the
    // leader is down, so view 1's primary (node 1) proposes its own.
    let mut setup = Setup::new(6, 4);
    for i in 0..4 {
        let mine =
            setup.sns.iter().map(|sn| (*sn, format!("{sn} from {i}").into_bytes())).collect();
        setup.fixed.insert(i, mine);
    }
    let ids = setup.ids();
    let (decided, _, _) = run_to_end(&setup, &ids[1..], |sim| {
        sim.apply_fault(Fault::Crash(ids[0].clone())).unwrap();
    });
    for (sn, v) in decided {
        assert_eq!(v, Some(format!("{sn} from 1").into_bytes()));
    }
}

#[test]
fn signed_commits_expose_an_equivocating_node_with_proof() {
    use mir_runtime::adversary::{Adversary, Forge, Outgoing};
    use protocols::ordering::pbft::{commit_statement, Commit};
    let setup =
        Setup { config: PbftConfig { sign_commits: true, ..fast_config() }, ..Setup::new(7, 4) };
    let ids = setup.ids();
    let bad = ids[3].clone();
    let (decided, out, _) = run_to_end(&setup, &ids[..3], |sim| {
        let crypto = TestCrypto::new(bad.clone(), 1);
        let me = bad.clone();
        // Node 3 sends each of its commits and a second one, signed, for another digest.
        let forge = Forge::new(1.0, |ctx, outgoing: &[Outgoing]| {
            let mut extra = Vec::new();
            for o in outgoing {
                if let Ok(Some(c)) = o.message.payload.decode::<Commit>() {
                    let digest = vec![0xEE; 32];
                    let pbft = ModuleId::new("pbft");
                    let signature =
                        ctx.sign(&pbft, &commit_statement(c.sn, c.view, &digest)).unwrap();
                    let mut o = o.clone();
                    o.message.payload = Commit { digest, signature, ..c }.into();
                    extra.push(o);
                }
            }
            extra
        });
        let adversary = Adversary::new(forge).signer(move |d, data| crypto.sign_as(&me, d, data));
        sim.make_byzantine(&bad, adversary).unwrap();
    });
    assert!(decided.iter().all(|(sn, v)| *v == Some(value_for(*sn))));
    let all = out.lock().unwrap();
    for n in &ids[..3] {
        let ev = &all[n].evidence;
        assert!(!ev.is_empty(), "{n} kept no evidence");
        for e in ev {
            assert_eq!(e.node, bad);
            assert_eq!((e.first.sn, e.first.view), (e.second.sn, e.second.view));
            assert_ne!(e.first.digest, e.second.digest);
            assert!(!e.first.signature.is_empty() && !e.second.signature.is_empty());
        }
    }
}

#[test]
fn a_node_cut_off_during_the_segment_catches_up_from_nodes_that_are_done() {
    let setup = Setup::new(9, 4);
    let ids = setup.ids();
    let (mut sim, out) = setup.build();
    sim.apply_fault(Fault::Partition(vec![vec![ids[3].clone()], ids[..3].to_vec()])).unwrap();
    assert!(sim
        .run_until(Duration::from_secs(5), |_| all_delivered(&out, &ids[..3], &setup.sns))
        .unwrap());
    assert!(out.lock().unwrap().get(&ids[3]).is_none_or(|s| s.delivered.is_empty()));
    // The others are done (a strong quorum: stable, no view change); after the partition heals
    // their DONE resends reach node 3, which asks them for the values.
    sim.apply_fault(Fault::Heal).unwrap();
    assert!(sim
        .run_until(Duration::from_secs(10), |_| all_delivered(&out, &ids, &setup.sns))
        .unwrap());
    let decided = check_safety(&out, &ids).unwrap();
    assert!(decided.iter().all(|(sn, v)| *v == Some(value_for(*sn))));
}

#[test]
fn the_monitors_check_recorded_logs_offline() {
    use mir_runtime::eventlog::{check, is_log_file_name, read_log};
    let dir = std::env::temp_dir().join(format!("pbft-offline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let setup = Setup { record: Some(dir.clone()), ..Setup::new(10, 4) };
    let ids = setup.ids();
    {
        let (mut sim, out) = setup.build();
        assert!(sim
            .run_until(Duration::from_secs(10), |_| all_delivered(&out, &ids, &setup.sns))
            .unwrap());
    } // dropping the simulation flushes the recorders
    let mut entries = Vec::new();
    for n in &ids {
        for f in std::fs::read_dir(dir.join(n.as_str())).unwrap() {
            let f = f.unwrap().path();
            if f.file_name().and_then(|n| n.to_str()).is_some_and(is_log_file_name) {
                entries.extend(read_log(&f).unwrap());
            }
        }
    }
    let mut monitor = SbMonitor::default();
    check(&entries, &mut monitor).unwrap();
    let delivered: Vec<usize> = monitor.delivered().map(|(_, nodes)| nodes).collect();
    assert_eq!(delivered, vec![4; setup.sns.len()]);
    // The same log with one node's delivery of sn 5 changed: the monitor names both events.
    let mut tampered = entries.clone();
    let ev = tampered
        .iter_mut()
        .filter(|e| e.node == ids[2])
        .flat_map(|e| e.events.iter_mut())
        .find(|ev| ev.payload.decode::<SbDeliver>().ok().flatten().is_some_and(|d| d.sn == 5))
        .unwrap();
    let d = ev.payload.decode::<SbDeliver>().unwrap().unwrap();
    ev.payload = SbDeliver { value: Some(b"another value".to_vec()), ..d }.into();
    let v = check(&tampered, &mut SbMonitor::default()).unwrap_err();
    assert!(v.to_string().contains("different values for sn 5"), "{v}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_primary_fetches_the_prepared_values_it_missed() {
    use mir_runtime::adversary::{Adversary, AdversaryCtx, Outgoing};
    use protocols::ordering::pbft::Commit;
    // Node 1 (view 1's primary) is cut off while the leader proposes: it never sees the
    // pre-prepares. The leader sends no COMMITs, so nodes 2 and 3 prepare every value but cannot
    // commit (two commits of the three needed). After the partition heals, the view changes to
    // view 1, whose primary must re-propose values it does not have: it fetches them from the
    // nodes whose Q sets hold them, and every value is delivered (not ⊥).
    let setup = Setup::new(11, 4);
    let ids = setup.ids();
    let (decided, _, sim) = run_to_end(&setup, &ids[1..], |sim| {
        let no_commits = |_: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
            out.retain(|o| o.message.payload.decode::<Commit>().ok().flatten().is_none());
        };
        sim.make_byzantine(&ids[0], Adversary::new(no_commits)).unwrap();
        let others = vec![ids[0].clone(), ids[2].clone(), ids[3].clone()];
        sim.apply_fault(Fault::Partition(vec![vec![ids[1].clone()], others])).unwrap();
        sim.schedule_fault(Duration::from_millis(300), Fault::Heal);
    });
    for (sn, v) in &decided {
        assert_eq!(*v, Some(value_for(*sn)), "sn {sn}");
    }
    // In view 1, before its segment timeout (2 s · 2): without the fetch, view 1 would time out
    // and view 2's primary (which has the values) would re-propose them.
    assert!(sim.now().since_start() < Duration::from_secs(2), "{}", sim.now());
}

#[test]
fn a_node_whose_done_messages_were_lost_still_gets_them_and_everything_goes_quiet() {
    use mir_runtime::adversary::{Adversary, AdversaryCtx, Outgoing};
    use protocols::ordering::pbft::Done;
    // Nodes 0 and 1 lose their first DONE to node 3 (the adversary layer as a lossy link). They
    // have everyone's DONE, so they resend nothing; node 3 resends its own to them, marked
    // `resent`, and they answer. Then every node has every DONE, all resends stop, and the
    // simulation goes idle long before its limit (no view change either).
    let setup = Setup::new(12, 4);
    let ids = setup.ids();
    let (mut sim, out) = setup.build();
    for lossy in &ids[..2] {
        let to = ids[3].clone();
        let mut lost = false;
        let lose_first = move |_: &mut AdversaryCtx<'_>, out: &mut Vec<Outgoing>| {
            out.retain(|o| {
                let done = o.message.payload.decode::<Done>().ok().flatten();
                let lose = !lost && o.to == to && done.is_some();
                lost |= lose;
                !lose
            });
        };
        sim.make_byzantine(lossy, Adversary::new(lose_first)).unwrap();
    }
    sim.run_until_idle(Duration::from_secs(60)).unwrap();
    assert!(sim.now().since_start() < Duration::from_secs(5), "still busy at {}", sim.now());
    let decided = check_safety(&out, &ids).unwrap();
    assert_eq!(decided.len(), setup.sns.len());
    assert!(decided.iter().all(|(sn, v)| *v == Some(value_for(*sn))));
}

#[test]
fn only_the_first_pre_prepare_of_a_view_counts_even_when_rejected() {
    use mir_runtime::adversary::{Adversary, Forge, Mutate, Outgoing, StrategyExt};
    use protocols::ordering::pbft::Preprepare;
    // The leader's pre-prepare for sn 3 is invalid, and it follows it with 20 more invalid
    // versions. A follower rejects the first (one suspect) and drops the others unexamined:
    // nothing of them is kept or validated.
    let setup = Setup::new(13, 4);
    let ids = setup.ids();
    let (decided, out, _) = run_to_end(&setup, &ids[1..], |sim| {
        let bad = |i: usize| Some(format!("bad value {i}").into_bytes());
        let first = Mutate::typed(1.0, move |pp: &mut Preprepare, _| {
            if pp.sn == 3 {
                pp.value = bad(0);
            }
        });
        let more = Forge::new(1.0, move |_, outgoing: &[Outgoing]| {
            let mut extra = Vec::new();
            for o in outgoing {
                if let Ok(Some(pp)) = o.message.payload.decode::<Preprepare>() {
                    if pp.sn == 3 {
                        for i in 1..=20 {
                            let mut o = o.clone();
                            o.message.payload = Preprepare { value: bad(i), ..pp.clone() }.into();
                            extra.push(o);
                        }
                    }
                }
            }
            extra
        });
        sim.make_byzantine(&ids[0], Adversary::new(first.then(more))).unwrap();
    });
    assert_eq!(decided[&3], None);
    let all = out.lock().unwrap();
    for n in &ids[1..] {
        assert_eq!(all[n].suspects.len(), 1, "{n}: {:?}", all[n].suspects);
    }
}
