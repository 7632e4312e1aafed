//! Monitors: invariants checked over recorded event logs ([`eventlog::check`], offline) or
//! during a simulation (`Simulation::add_monitor`, online), kept apart from the protocols they
//! watch.

use std::collections::BTreeMap;

use mir_runtime::eventlog::{self, Observed, Violation};
use mir_runtime::NodeId;

use crate::bcb::Deliver;
use crate::ordering::{SbDeliver, Sn};

/// BCB's agreement: no two nodes deliver different data in one instance, and no node delivers
/// twice in one instance.
#[derive(Debug, Default)]
pub struct AgreementMonitor {
    /// instance → (first delivery seen, per node).
    seen: BTreeMap<Vec<u8>, (Observed, BTreeMap<NodeId, Observed>)>,
    across_restarts: bool,
}

impl AgreementMonitor {
    /// Agreement only: a node may deliver the **same** data again. For runs where nodes crash and
    /// restart without a write-ahead log: a restarted node forgets that it delivered (with one it
    /// resumes from its checkpoint: `docs/recovery.md`); delivering different data is still a
    /// violation.
    pub fn across_restarts() -> Self {
        AgreementMonitor { across_restarts: true, ..AgreementMonitor::default() }
    }
}

impl eventlog::Monitor for AgreementMonitor {
    fn observe(&mut self, o: &Observed) -> Result<(), Violation> {
        let Ok(Some(d)) = o.event.payload.decode::<Deliver>() else {
            return Ok(());
        };
        let Some((first, per_node)) = self.seen.get_mut(&d.instance) else {
            self.seen.insert(
                d.instance.clone(),
                (o.clone(), BTreeMap::from([(o.node.clone(), o.clone())])),
            );
            return Ok(());
        };
        if let Some(earlier) = per_node.get(&o.node).filter(|_| !self.across_restarts) {
            return Err(Violation::new(
                format!("node {} delivered twice in instance {:?}", o.node, d.instance),
                vec![earlier.clone(), o.clone()],
            ));
        }
        let first_data = first.event.payload.decode::<Deliver>().ok().flatten().map(|f| f.data);
        if first_data.as_ref() != Some(&d.data) {
            return Err(Violation::new(
                format!(
                    "nodes {} and {} delivered different data in instance {:?}",
                    first.node, o.node, d.instance
                ),
                vec![first.clone(), o.clone()],
            ));
        }
        per_node.insert(o.node.clone(), o.clone());
        Ok(())
    }
}

/// Sequenced broadcast's agreement and integrity, over [`SbDeliver`] events: no two nodes deliver
/// different values for one `sn` of one instance (the emitting module, e.g. `pbft` or
/// `ordering/3/1`), and no node delivers one `sn` twice. Nodes listed with
/// [`SbMonitor::ignoring`] (Byzantine ones) are not checked.
///
/// ```
/// use mir_runtime::eventlog::{Monitor, Observed};
/// use mir_runtime::{Event, NodeId};
/// use protocols::monitors::SbMonitor;
/// use protocols::ordering::SbDeliver;
/// let deliver = |node: usize, value: &[u8]| Observed {
///     node: NodeId::from_index(node), module: "app".into(), time_ns: 0, index: 0,
///     event: Event::new("pbft", "app", SbDeliver { sn: 4, value: Some(value.to_vec()), leader: NodeId::from_index(0) }),
/// };
/// let mut m = SbMonitor::default();
/// assert!(m.observe(&deliver(0, b"x")).is_ok());
/// assert!(m.observe(&deliver(1, b"x")).is_ok());
/// assert!(m.observe(&deliver(2, b"y")).is_err()); // agreement
/// assert!(m.observe(&deliver(1, b"x")).is_err()); // delivered twice
/// ```
#[derive(Debug, Default)]
pub struct SbMonitor {
    /// (instance, sn) → the first delivery, and who delivered.
    seen: BTreeMap<(String, Sn), (Observed, BTreeMap<NodeId, Observed>)>,
    ignoring: Vec<NodeId>,
    across_restarts: bool,
}

impl SbMonitor {
    /// Does not check deliveries of `nodes` (the Byzantine ones).
    pub fn ignoring(mut self, nodes: impl IntoIterator<Item = NodeId>) -> Self {
        self.ignoring.extend(nodes);
        self
    }

    /// Agreement only: a node may deliver the same value again (it restarted without a
    /// write-ahead log and forgot).
    pub fn across_restarts(mut self) -> Self {
        self.across_restarts = true;
        self
    }

    /// The `(instance, sn)`s delivered so far, with the value and how many nodes delivered it.
    pub fn delivered(&self) -> impl Iterator<Item = (&(String, Sn), usize)> {
        self.seen.iter().map(|(k, (_, per))| (k, per.len()))
    }
}

impl eventlog::Monitor for SbMonitor {
    fn observe(&mut self, o: &Observed) -> Result<(), Violation> {
        if self.ignoring.contains(&o.node) {
            return Ok(());
        }
        let Ok(Some(d)) = o.event.payload.decode::<SbDeliver>() else {
            return Ok(());
        };
        let key = (o.event.src.to_string(), d.sn);
        let Some((first, per_node)) = self.seen.get_mut(&key) else {
            self.seen.insert(key, (o.clone(), BTreeMap::from([(o.node.clone(), o.clone())])));
            return Ok(());
        };
        if let Some(earlier) = per_node.get(&o.node).filter(|_| !self.across_restarts) {
            return Err(Violation::new(
                format!("node {} delivered sn {} of {} twice", o.node, d.sn, key.0),
                vec![earlier.clone(), o.clone()],
            ));
        }
        let first_value = first.event.payload.decode::<SbDeliver>().ok().flatten().map(|f| f.value);
        if first_value.as_ref() != Some(&d.value) {
            return Err(Violation::new(
                format!(
                    "nodes {} and {} delivered different values for sn {} of {}",
                    first.node, o.node, d.sn, key.0
                ),
                vec![first.clone(), o.clone()],
            ));
        }
        per_node.insert(o.node.clone(), o.clone());
        Ok(())
    }
}
