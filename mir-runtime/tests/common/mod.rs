//! Modules shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use mir_runtime::{Batch, Event, ModuleId, ModuleResult, Outbox, PassiveModule};

/// Records every event and the size of every batch it receives.
#[derive(Clone, Default)]
pub struct Collector {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
}

impl Collector {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
    pub fn names(&self) -> Vec<String> {
        self.events().iter().map(|e| e.name().to_owned()).collect()
    }
    pub fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl PassiveModule for Collector {
    fn accepts_messages(&self) -> bool {
        true
    }
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        self.batches.lock().unwrap().push(events.len());
        self.events.lock().unwrap().extend(events);
        Ok(())
    }
}

/// Calls a closure for each event.
pub struct FnModule<F>(pub F);

impl<F: FnMut(Event, &mut Outbox) -> ModuleResult + Send + 'static> PassiveModule for FnModule<F> {
    fn accepts_messages(&self) -> bool {
        true
    }
    fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
        for ev in events {
            (self.0)(ev, out)?;
        }
        Ok(())
    }
}

pub fn id(s: &str) -> ModuleId {
    ModuleId::new(s)
}

/// Records a two-node simulation under `dir`: each node sends three numbers to the other at
/// start (six messages; 16 events handed to modules in all).
pub fn record_exchange(dir: &std::path::Path) {
    use mir_runtime::eventlog::{Recorder, RecorderConfig};
    use mir_runtime::sim::{SimConfig, Simulation};
    use mir_runtime::stdevents::{Init, Message, SendMessage, TestUint64};
    use mir_runtime::{Node, NodeId};
    let mut sim = Simulation::new(SimConfig::with_seed(3));
    for me in 0..2usize {
        let other = NodeId::from_index(1 - me);
        let app = FnModule(move |ev: Event, out: &mut Outbox| {
            if ev.is::<Init>() {
                for n in 0..3 {
                    out.send(
                        &id("net"),
                        SendMessage {
                            destinations: vec![other.clone()],
                            message: Message::new("app", TestUint64(n)),
                        },
                    );
                }
            }
            Ok(())
        });
        let rec = Recorder::new(RecorderConfig::new(dir), &NodeId::from_index(me)).unwrap();
        sim.add_node(Node::builder(NodeId::from_index(me)).passive("app", app).interceptor(rec))
            .unwrap();
    }
    sim.run_until_idle(std::time::Duration::from_secs(1)).unwrap();
}

/// Every entry of the logs under `dir` (one subdirectory per node).
pub fn entries_under(dir: &std::path::Path) -> Vec<mir_runtime::eventlog::Entry> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().map(|f| f.unwrap().path()))
        .collect();
    files.sort();
    files.iter().flat_map(|f| mir_runtime::eventlog::read_log(f).unwrap()).collect()
}

/// A module `app` that, at `Init`, asks `net` to send `n` numbered messages to its own node
/// `me` (one `SendMessage` each, in one batch), and records the numbers it receives back.
pub fn self_sender(me: &str, n: u64) -> (impl PassiveModule, Arc<Mutex<Vec<u64>>>) {
    use mir_runtime::stdevents::{Init, Message, MessageReceived, SendMessage, TestUint64};
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let me = mir_runtime::NodeId::new(me);
    let module = FnModule(move |ev: Event, out: &mut Outbox| {
        if ev.is::<Init>() {
            for i in 0..n {
                out.send(
                    &id("net"),
                    SendMessage {
                        destinations: vec![me.clone()],
                        message: Message::new("app", TestUint64(i)),
                    },
                );
            }
        } else if let Some(m) = ev.get::<MessageReceived>() {
            assert_eq!(m.from, me);
            let v = m.message.payload.decode::<TestUint64>().unwrap().unwrap().0;
            g.lock().unwrap().push(v);
        }
        Ok(())
    });
    (module, got)
}
