//! Offline monitors: invariants checked over recorded event logs
//! ([`eventlog::check`]), kept apart from the protocols they watch.

use std::collections::BTreeMap;

use mir_runtime::eventlog::{self, Observed, Violation};
use mir_runtime::NodeId;

use crate::bcb::Deliver;

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
    /// restart without a write-ahead log: a restarted node forgets that it delivered (issue 16
    /// brings the WAL); delivering different data is still a violation.
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
