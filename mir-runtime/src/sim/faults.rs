//! Faults of the simulated network and nodes, driven by the seed and scriptable from a test.
//!
//! ```
//! use std::time::Duration;
//! use mir_runtime::sim::{Fault, LinkConfig, SimConfig, Simulation};
//! use mir_runtime::{Node, NodeId, stdmodules::NullModule};
//! let mut sim = Simulation::new(SimConfig::with_seed(1));
//! for i in 0..4 {
//!     sim.add_node(Node::builder(NodeId::from_index(i)).passive("app", NullModule)).unwrap();
//! }
//! let ids = |v: &[usize]| v.iter().map(|i| NodeId::from_index(*i)).collect::<Vec<_>>();
//! // Partition {0,1} from {2,3} at t=2s, heal at t=5s; a lossy, duplicating link from 0 to 3.
//! sim.schedule_fault(Duration::from_secs(2), Fault::Partition(vec![ids(&[0, 1]), ids(&[2, 3])]));
//! sim.schedule_fault(Duration::from_secs(5), Fault::Heal);
//! let lossy = LinkConfig { drop: 0.1, duplicate: 0.05, ..LinkConfig::default() };
//! sim.apply_fault(Fault::Link { from: NodeId::from_index(0), to: NodeId::from_index(3), config: lossy }).unwrap();
//! sim.run_for(Duration::from_secs(6)).unwrap();
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::id::NodeId;

/// How one direction of a link behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Latency, uniform in `[min, max]`. Messages on one link can overtake each other when their
    /// latencies differ (links are not FIFO), which is how reordering happens.
    pub latency: (Duration, Duration),
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice (with independent latencies).
    pub duplicate: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency: (Duration::from_millis(1), Duration::from_millis(10)),
            drop: 0.0,
            duplicate: 0.0,
        }
    }
}

/// Something that goes wrong, now ([`Simulation::apply_fault`](super::Simulation::apply_fault))
/// or at a chosen time ([`Simulation::schedule_fault`](super::Simulation::schedule_fault)).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cut every link between nodes of different groups (messages sent across are lost). Nodes in
    /// no group keep all their links. Replaces any earlier partition.
    Partition(Vec<Vec<NodeId>>),
    /// Ends the partition.
    Heal,
    /// Sets how messages from `from` to `to` travel.
    Link {
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
        /// The link's behaviour.
        config: LinkConfig,
    },
    /// Sets how every link without its own [`Fault::Link`] setting behaves.
    AllLinks(LinkConfig),
    /// The node stops: its queued events and pending alarms are lost, messages to it are lost.
    /// Messages it already sent are still delivered.
    Crash(NodeId),
    /// A crashed node starts again from scratch (fresh modules from the builder function given to
    /// [`Simulation::add_restartable_node`](super::Simulation::add_restartable_node), then `Init`).
    Restart(NodeId),
}

/// The state of the simulated network.
#[derive(Debug, Default)]
pub(crate) struct Network {
    pub(crate) default: LinkConfig,
    pub(crate) links: BTreeMap<(usize, usize), LinkConfig>,
    /// Node index → group, while partitioned.
    pub(crate) groups: Option<BTreeMap<usize, usize>>,
}

impl Network {
    pub(crate) fn link(&self, from: usize, to: usize) -> &LinkConfig {
        self.links.get(&(from, to)).unwrap_or(&self.default)
    }

    pub(crate) fn cut(&self, from: usize, to: usize) -> bool {
        match &self.groups {
            Some(g) => matches!((g.get(&from), g.get(&to)), (Some(a), Some(b)) if a != b),
            None => false,
        }
    }
}
