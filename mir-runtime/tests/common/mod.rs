//! Modules shared by the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use mir_runtime::{Batch, Event, ModuleId, ModuleResult, Outbox, PassiveModule};

/// Records every event and the size of every batch it receives.
#[derive(Clone, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<Event>>>,
    pub batches: Arc<Mutex<Vec<usize>>>,
}

impl Recorder {
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

impl PassiveModule for Recorder {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        self.batches.lock().unwrap().push(events.len());
        self.events.lock().unwrap().extend(events);
        Ok(())
    }
}

/// Calls a closure for each event.
pub struct FnModule<F>(pub F);

impl<F: FnMut(Event, &mut Outbox) -> ModuleResult + Send + 'static> PassiveModule for FnModule<F> {
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
