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
//! sim.schedule_fault(Duration::from_secs(5), Fault::Heal); // ends the partition and link faults
//! let lossy = LinkConfig { drop: 0.1, duplicate: 0.05, ..LinkConfig::default() };
//! sim.apply_fault(Fault::Link { from: NodeId::from_index(0), to: NodeId::from_index(3), config: lossy }).unwrap();
//! sim.run_for(Duration::from_secs(6)).unwrap();
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::id::NodeId;

/// How one direction of a link behaves. `..LinkConfig::default()` keeps the simulation's latency
/// ([`SimConfig::latency`](super::SimConfig::latency)) and adds no loss or duplication.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkConfig {
    /// Latency, uniform in `[min, max]`; `None`: the simulation's ([`SimConfig::latency`](super::SimConfig::latency)).
    /// Messages on one link can overtake each other when their latencies differ (links are not
    /// FIFO), which is how reordering happens.
    pub latency: Option<(Duration, Duration)>,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice (with independent latencies).
    pub duplicate: f64,
}

/// Something that goes wrong, now ([`Simulation::apply_fault`](super::Simulation::apply_fault))
/// or at a chosen time ([`Simulation::schedule_fault`](super::Simulation::schedule_fault)).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Cut every link between nodes of different groups (messages sent across are lost). Nodes in
    /// no group keep all their links. Replaces any earlier partition.
    Partition(Vec<Vec<NodeId>>),
    /// Restores the whole network: ends the partition and every [`Fault::Link`] and
    /// [`Fault::AllLinks`] setting (links go back to the simulation's latency, without loss or
    /// duplication). Crashed nodes stay crashed.
    Heal,
    /// Ends the partition only; link settings stay.
    EndPartition,
    /// Removes the [`Fault::Link`] setting of the link from `from` to `to`: it behaves like every
    /// other link again.
    ResetLink {
        /// The sender.
        from: NodeId,
        /// The receiver.
        to: NodeId,
    },
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
    /// From now on the node's clock runs at `rate` times simulated time (1.0: exact; 1.1: 10 %
    /// fast, so its 100 ms timeouts and timer periods take about 91 ms). Its modules see their own
    /// time, and their alarms (hence the timer module's delays and repeats) follow it.
    ClockRate {
        /// The node.
        node: NodeId,
        /// The rate, > 0.
        rate: f64,
    },
    /// A crashed node starts again from scratch (fresh modules from the builder function given to
    /// [`Simulation::add_restartable_node`](super::Simulation::add_restartable_node), then `Init`).
    Restart(NodeId),
}

/// The state of the simulated network.
#[derive(Debug, Default)]
pub(crate) struct Network {
    /// The simulation's latency, for links whose setting leaves it `None`.
    pub(crate) latency: (Duration, Duration),
    pub(crate) default: LinkConfig,
    pub(crate) links: BTreeMap<(usize, usize), LinkConfig>,
    /// Node index → group, while partitioned.
    pub(crate) groups: Option<BTreeMap<usize, usize>>,
}

impl Network {
    /// The link's (latency, drop, duplicate).
    pub(crate) fn link(&self, from: usize, to: usize) -> ((Duration, Duration), f64, f64) {
        let l = self.links.get(&(from, to)).unwrap_or(&self.default);
        (l.latency.unwrap_or(self.latency), l.drop, l.duplicate)
    }

    pub(crate) fn cut(&self, from: usize, to: usize) -> bool {
        match &self.groups {
            Some(g) => matches!((g.get(&from), g.get(&to)), (Some(a), Some(b)) if a != b),
            None => false,
        }
    }
}
