//! Offline monitors: invariants checked over recorded logs, with the violating events reported.
//!
//! ```
//! use mir_runtime::eventlog::{check, Entry, Monitor, Observed, Violation};
//! use mir_runtime::{Event, stdevents::TestUint64};
//! /// "No number above 10 is ever handled."
//! struct Small;
//! impl Monitor for Small {
//!     fn observe(&mut self, o: &Observed) -> Result<(), Violation> {
//!         match o.event.payload.decode::<TestUint64>() {
//!             Ok(Some(TestUint64(n))) if n > 10 => Err(Violation::new(format!("{n} is too big"), vec![o.clone()])),
//!             _ => Ok(()),
//!         }
//!     }
//! }
//! let entry = Entry { node: "0".into(), module: "m".into(), time_ns: 5, index: 0,
//!                     events: vec![Event::new("a", "m", TestUint64(3)), Event::new("a", "m", TestUint64(11))] };
//! let v = check(&[entry], &mut Small).unwrap_err();
//! assert_eq!(v.message, "11 is too big");
//! assert_eq!(v.events[0].index, 1);
//! ```

use std::fmt;

use crate::event::Event;
use crate::eventlog::Entry;
use crate::id::{ModuleId, NodeId};

/// One recorded event with where and when it was handled.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The node.
    pub node: NodeId,
    /// The module that handled it.
    pub module: ModuleId,
    /// When (ns since the executor started).
    pub time_ns: u64,
    /// Its position among the node's events.
    pub index: u64,
    /// The event.
    pub event: Event,
}

/// An invariant that does not hold, and the events that show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// What is wrong.
    pub message: String,
    /// The events involved.
    pub events: Vec<Observed>,
}

impl Violation {
    /// A violation.
    pub fn new(message: impl Into<String>, events: Vec<Observed>) -> Self {
        Violation { message: message.into(), events }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "violation: {}", self.message)?;
        for o in &self.events {
            writeln!(
                f,
                "  node {} #{} at {:.3} ms, handled by {}: {:?}",
                o.node,
                o.index,
                o.time_ns as f64 / 1e6,
                o.module,
                o.event
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// An invariant over the events of a run, seen in time order (all nodes merged).
pub trait Monitor {
    /// Looks at the next event.
    fn observe(&mut self, event: &Observed) -> Result<(), Violation>;

    /// Called after the last event (for invariants about the whole run).
    fn finish(&mut self) -> Result<(), Violation> {
        Ok(())
    }
}

/// Every event of `entries`, merged by time (then node, then position).
pub fn observed(entries: &[Entry]) -> Vec<Observed> {
    let mut all: Vec<Observed> = entries
        .iter()
        .flat_map(|e| {
            e.events.iter().enumerate().map(move |(i, ev)| Observed {
                node: e.node.clone(),
                module: e.module.clone(),
                time_ns: e.time_ns,
                index: e.index + i as u64,
                event: ev.clone(),
            })
        })
        .collect();
    all.sort_by(|a, b| (a.time_ns, &a.node, a.index).cmp(&(b.time_ns, &b.node, b.index)));
    all
}

/// Runs `monitor` over the events of `entries`; the first violation, if any.
pub fn check(entries: &[Entry], monitor: &mut impl Monitor) -> Result<(), Violation> {
    for o in observed(entries) {
        monitor.observe(&o)?;
    }
    monitor.finish()
}
