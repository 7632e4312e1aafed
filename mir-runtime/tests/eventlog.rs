//! Event logs: every standard event type round-trips through a recorded log; files split by event
//! count; a truncated file gives its complete entries and an error; filters; both executors.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::Collector as Sink;
use mir_runtime::eventlog::{read_log, Entry, LogError, Recorder, RecorderConfig};
use mir_runtime::sim::{SimConfig, Simulation};
use mir_runtime::stdevents::*;
use mir_runtime::{Event, ModuleId, Node, NodeId, Payload};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mir-eventlog-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn all_entries(files: &[PathBuf]) -> Vec<Entry> {
    files.iter().flat_map(|f| read_log(f).unwrap()).collect()
}

fn standard_events() -> Vec<Event> {
    let msg = Message::new("sink", TestString("m".into()));
    let inner = vec![Event::new("a", "sink", TestUint64(1))];
    let payloads: Vec<Payload> = vec![
        Init.into(),
        SendMessage { destinations: vec!["0".into()], message: msg.clone() }.into(),
        MessageReceived { from: "1".into(), message: msg }.into(),
        TimerDelay {
            id: Some(TimerId(1)),
            delay: Duration::from_millis(5),
            retention_index: 2,
            events: inner.clone(),
        }
        .into(),
        TimerRepeat { id: None, period: Duration::from_secs(1), retention_index: 0, events: inner }
            .into(),
        TimerCancel { id: TimerId(3) }.into(),
        TimerGarbageCollect { retention_index: 4 }.into(),
        NewSubmodule {
            id: ModuleId::new("sink/1"),
            params: Payload::new(TestUint64(9)),
            retention_index: 1,
        }
        .into(),
        GarbageCollect { retention_index: 5 }.into(),
        TestString("s".into()).into(),
        TestUint64(u64::MAX).into(),
        crypto::SignRequest {
            data: vec![vec![1]],
            domain: None,
            origin: crypto::Origin { module: ModuleId::new("x"), id: 7 },
        }
        .into(),
        crypto::HashResult {
            digests: vec![vec![2; 32]],
            origin: crypto::Origin { module: ModuleId::new("x"), id: 8 },
        }
        .into(),
    ];
    payloads
        .into_iter()
        .map(|p| Event { src: ModuleId::node(), dest: ModuleId::new("sink"), payload: p })
        .collect()
}

#[test]
fn every_standard_event_round_trips_through_a_log() {
    let d = dir("roundtrip");
    let rec = Recorder::new(RecorderConfig::new(&d), &NodeId::new("0")).unwrap();
    let files = rec.files();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(Node::builder("0").passive("sink", Sink::default()).interceptor(rec)).unwrap();
    let sent = standard_events();
    sim.inject(&"0".into(), sent.clone()).unwrap();
    let summary = sim.run_until_idle(Duration::from_secs(1)).unwrap();
    drop(sim);
    let entries = all_entries(&files.lock().unwrap());
    let logged: Vec<Event> = entries.iter().flat_map(|e| e.events.clone()).collect();
    assert_eq!(logged.len() as u64, summary.events, "every event handed to a module is in the log");
    let to_sink: Vec<Event> = entries
        .iter()
        .filter(|e| e.module.as_str() == "sink")
        .flat_map(|e| e.events.clone())
        .collect();
    assert_eq!(to_sink[1..], sent[..], "same canonical encodings (after the Init)");
    assert!(to_sink[1..].iter().all(|e| e.payload.is_encoded()));
    assert_eq!(
        to_sink[5].clone().into_payload::<TimerRepeat>().unwrap().period,
        Duration::from_secs(1)
    );
    // Positions count events in dispatch order.
    let mut expect = 0;
    for e in &entries {
        assert_eq!(e.index, expect);
        expect += e.events.len() as u64;
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn logs_split_by_event_count_and_filter() {
    let d = dir("split");
    let cfg = RecorderConfig { max_file_events: 5, chunk_bytes: 1, ..RecorderConfig::new(&d) };
    let rec = Recorder::new(cfg, &NodeId::new("0")).unwrap();
    let files = rec.files();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(Node::builder("0").passive("sink", Sink::default()).interceptor(rec)).unwrap();
    for i in 0..20 {
        sim.inject(&"0".into(), vec![Event::new("@node", "sink", TestUint64(i))]).unwrap();
        sim.run_until_idle(Duration::from_secs(1)).unwrap();
    }
    drop(sim);
    let files = files.lock().unwrap().clone();
    assert!(files.len() >= 4, "{} files", files.len());
    assert!(files.iter().all(|f| read_log(f)
        .unwrap()
        .iter()
        .map(|e| e.events.len())
        .sum::<usize>()
        <= 5));
    assert_eq!(all_entries(&files).iter().map(|e| e.events.len()).sum::<usize>(), 22);

    // A filter keeping only numbers above 15.
    let d2 = dir("filter");
    let keep = Arc::new(|_: &ModuleId, e: &Event| e.get::<TestUint64>().is_some_and(|n| n.0 > 15));
    let rec = Recorder::new(
        RecorderConfig { filter: Some(keep), ..RecorderConfig::new(&d2) },
        &NodeId::new("0"),
    )
    .unwrap();
    let files2 = rec.files();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(Node::builder("0").passive("sink", Sink::default()).interceptor(rec)).unwrap();
    sim.inject(&"0".into(), (0..20).map(|i| Event::new("@node", "sink", TestUint64(i))).collect())
        .unwrap();
    sim.run_until_idle(Duration::from_secs(1)).unwrap();
    drop(sim);
    let kept: Vec<u64> = all_entries(&files2.lock().unwrap())
        .iter()
        .flat_map(|e| {
            e.events.iter().map(|ev| ev.payload.decode::<TestUint64>().unwrap().unwrap().0)
        })
        .collect();
    assert_eq!(kept, vec![16, 17, 18, 19]);
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::remove_dir_all(&d2).unwrap();
}

#[test]
fn a_truncated_log_gives_its_complete_entries_and_an_error() {
    let d = dir("truncated");
    let cfg = RecorderConfig { chunk_bytes: 1, ..RecorderConfig::new(&d) };
    let rec = Recorder::new(cfg, &NodeId::new("0")).unwrap();
    let files = rec.files();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(Node::builder("0").passive("sink", Sink::default()).interceptor(rec)).unwrap();
    for i in 0..50 {
        sim.inject(
            &"0".into(),
            vec![Event::new(
                "@node",
                "sink",
                TestString(format!("event number {i} with some text")),
            )],
        )
        .unwrap();
        sim.run_until_idle(Duration::from_secs(1)).unwrap();
    }
    drop(sim);
    let file = files.lock().unwrap()[0].clone();
    let whole = read_log(&file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
    match read_log(&file) {
        Err(LogError::Truncated { entries, .. }) => {
            assert!(!entries.is_empty() && entries.len() < whole.len());
            assert_eq!(entries[..], whole[..entries.len()], "what was before the cut is intact");
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }
    assert!(matches!(read_log(d.join("missing.gz")), Err(LogError::Io { .. })));
    std::fs::write(d.join("garbage.gz"), b"not gzip at all").unwrap();
    assert!(read_log(d.join("garbage.gz")).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn recording_works_on_the_production_executor_too() {
    let d = dir("tokio");
    let rec = Recorder::new(RecorderConfig::new(&d), &NodeId::new("n")).unwrap();
    let files = rec.files();
    let node =
        Node::builder("n").passive("sink", Sink::default()).interceptor(rec).build().unwrap();
    let h = node.handle();
    let run = tokio::spawn(node.run());
    h.inject((0..100).map(|i| Event::new("@node", "sink", TestUint64(i))).collect()).await.unwrap();
    while h.stats().module("sink").unwrap().events_handled < 101 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.stop();
    run.await.unwrap().unwrap(); // the node, and with it the recorder, is dropped: files are complete
    let n: usize = all_entries(&files.lock().unwrap()).iter().map(|e| e.events.len()).sum();
    assert_eq!(n, 101);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Iterates a `HashSet` into its output: another instance emits another order.
fn hashset_module(
) -> common::FnModule<impl FnMut(Event, &mut mir_runtime::Outbox) -> mir_runtime::ModuleResult + Send>
{
    common::FnModule(|ev: Event, out: &mut mir_runtime::Outbox| {
        if ev.is::<TestUint64>() {
            let set: std::collections::HashSet<u64> = (0..32).collect();
            for n in set {
                out.send(&ModuleId::new("sink"), TestUint64(n));
            }
        }
        Ok(())
    })
}

fn record_hashset(name: &str) -> (PathBuf, Vec<Entry>) {
    let d = dir(name);
    let rec = Recorder::new(RecorderConfig::new(&d), &NodeId::new("0")).unwrap();
    let files = rec.files();
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    sim.add_node(
        Node::builder("0")
            .passive("bad", hashset_module())
            .passive("sink", Sink::default())
            .interceptor(rec),
    )
    .unwrap();
    sim.inject(&"0".into(), vec![Event::new("@node", "bad", TestUint64(0))]).unwrap();
    sim.run_until_idle(Duration::from_secs(1)).unwrap();
    drop(sim);
    let entries = all_entries(&files.lock().unwrap());
    (d, entries)
}

#[test]
fn replay_catches_a_nondeterministic_module_and_confirms_a_deterministic_one() {
    let (d, entries) = record_hashset("replay");
    let mut modules: std::collections::BTreeMap<ModuleId, Box<dyn mir_runtime::PassiveModule>> =
        Default::default();
    modules.insert(ModuleId::new("bad"), Box::new(hashset_module()));
    let err =
        mir_runtime::eventlog::replay(&entries, &NodeId::new("0"), modules, |_| {}).unwrap_err();
    assert!(matches!(err, mir_runtime::eventlog::ReplayError::Mismatch { .. }), "{err}");
    assert!(err.to_string().starts_with("module bad emitted, as its event #"), "{err}");

    // The sink emits nothing, deterministically: replaying it confirms the (empty) record; the
    // step callback sees every input, in the recorded batches.
    let mut modules: std::collections::BTreeMap<ModuleId, Box<dyn mir_runtime::PassiveModule>> =
        Default::default();
    modules.insert(ModuleId::new("sink"), Box::new(Sink::default()));
    let (mut steps, mut inputs) = (0, 0);
    let recorded: Vec<usize> =
        entries.iter().filter(|e| e.module.as_str() == "sink").map(|e| e.events.len()).collect();
    let report = mir_runtime::eventlog::replay(&entries, &NodeId::new("0"), modules, |s| {
        assert!(s.outputs.is_empty());
        assert_eq!(s.inputs.len(), recorded[steps], "batch {steps} as recorded");
        steps += 1;
        inputs += s.inputs.len();
    })
    .unwrap();
    assert_eq!((report.inputs, inputs), (33, 33), "Init and 32 numbers");
    assert_eq!((report.batches, steps), (recorded.len() as u64, recorded.len()));
    std::fs::remove_dir_all(&d).unwrap();
}

/// A gzip bomb (64 MiB of zeros in about 64 KiB) is refused at the limit, before it is held.
#[cfg(feature = "gzip")]
#[test]
fn a_log_that_decompresses_past_the_limit_is_refused() {
    use std::io::Write;
    let d = dir("bomb");
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join("eventlog-bomb.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::best(),
    );
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    match mir_runtime::eventlog::read_log_limited(&path, 1 << 20) {
        Err(e @ LogError::TooLarge { .. }) => {
            assert!(e.to_string().contains("decompresses to more than 1048576 bytes"))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// A log written without compression (a build without feature `gzip`) reads back the same.
#[cfg(feature = "gzip")]
#[test]
fn an_uncompressed_log_reads_like_a_compressed_one() {
    use std::io::Read;
    let d = dir("plain");
    common::record_exchange(&d);
    let gz = d.join("0").join("eventlog-000000.gz");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap())
        .read_to_end(&mut plain)
        .unwrap();
    let path = d.join("0").join("eventlog-000000.log");
    std::fs::write(&path, plain).unwrap();
    assert!(mir_runtime::eventlog::is_log_file_name("eventlog-000000.log"));
    let entries = read_log(&path).unwrap();
    assert!(!entries.is_empty());
    assert_eq!(entries, read_log(&gz).unwrap());
    std::fs::remove_dir_all(&d).unwrap();
}

#[cfg(feature = "gzip")]
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Any bytes, gzip-wrapped or not, read as a log: entries or an error, never a panic.
    #[test]
    fn any_file_reads_as_entries_or_an_error(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), wrap in 0u8..3) {
        use std::io::Write;
        let d = dir(&format!("prop-{}", std::thread::current().name().unwrap_or("t").len()));
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("eventlog-prop.gz");
        // 0: the bytes as they are; 1: gzip of the bytes; 2: gzip of one record holding them
        // (so the entry decoder itself gets the random bytes).
        if wrap == 0 {
            std::fs::write(&path, &raw).unwrap();
        } else {
            let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
            if wrap == 2 {
                gz.write_all(&(raw.len() as u32).to_le_bytes()).unwrap();
            }
            gz.write_all(&raw).unwrap();
            gz.finish().unwrap();
        }
        let _ = read_log(&path);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
