//! Fault plans drawn from the seed: a faulty phase (crashes and restarts, partitions of several
//! shapes, symmetric or one-way, lossy and duplicating links, drifting timers), then everything
//! healed, then a liveness phase in which the test checks progress.
//!
//! ```
//! use std::time::Duration;
//! use mir_runtime::sim::{FaultPlan, FaultProfile, SimConfig, Simulation};
//! use mir_runtime::{Node, NodeId, stdmodules::NullModule};
//! let ids: Vec<NodeId> = (0..4).map(NodeId::from_index).collect();
//! let profile = FaultProfile { protect: vec![ids[0].clone()], ..FaultProfile::default() };
//! let plan = FaultPlan::draw(7, &ids, &profile);
//! let mut sim = Simulation::new(SimConfig::with_seed(7));
//! for id in &ids {
//!     let id = id.clone();
//!     sim.add_restartable_node(move || Node::builder(id.clone()).passive("app", NullModule)).unwrap();
//! }
//! plan.schedule(&mut sim);
//! sim.run_for(plan.healed_at() + Duration::from_secs(1)).unwrap();
//! println!("{plan}"); // one line per fault, for the failure message
//! ```

use std::fmt;
use std::time::Duration;

use super::{Fault, LinkConfig, SimRng, Simulation};
use crate::id::NodeId;

/// How a partition splits the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionShape {
    /// One node against the rest.
    IsolateOne,
    /// Two halves.
    Split,
    /// A random subset against the rest.
    Random,
}

/// What a drawn [`FaultPlan`] may contain.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultProfile {
    /// How long faults last; everything is healed at its end. Default 5 s.
    pub faulty_phase: Duration,
    /// Crash episodes, each of a different node: it crashes and restarts later in the phase
    /// (nodes must be added with [`Simulation::add_restartable_node`]). Default 1.
    pub crashes: usize,
    /// Partition episodes. Default 2.
    pub partitions: usize,
    /// Shapes to draw partitions from. Default all.
    pub shapes: Vec<PartitionShape>,
    /// Whether partitions may be one-way (one side's messages lost, the other's delivered).
    /// Default `true`.
    pub asymmetric: bool,
    /// Highest loss probability of every link during the phase. Default 0.2.
    pub max_loss: f64,
    /// Highest duplication probability. Default 0.1.
    pub max_duplication: f64,
    /// Highest drift of a node's timers (0.1: between 10 % slow and 10 % fast). Default 0.1.
    pub max_drift: f64,
    /// Nodes never crashed (e.g. a leader whose restart the protocol cannot survive).
    pub protect: Vec<NodeId>,
}

impl Default for FaultProfile {
    fn default() -> Self {
        FaultProfile {
            faulty_phase: Duration::from_secs(5),
            crashes: 1,
            partitions: 2,
            shapes: vec![PartitionShape::IsolateOne, PartitionShape::Split, PartitionShape::Random],
            asymmetric: true,
            max_loss: 0.2,
            max_duplication: 0.1,
            max_drift: 0.1,
            protect: Vec::new(),
        }
    }
}

/// Faults at times, drawn from a seed within a [`FaultProfile`]; the last ones heal everything.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The faults, by time.
    pub faults: Vec<(Duration, Fault)>,
    healed: Duration,
}

impl FaultPlan {
    /// A plan for `nodes`, drawn from `seed` (its own generator: the simulation's draws are not
    /// disturbed).
    pub fn draw(seed: u64, nodes: &[NodeId], profile: &FaultProfile) -> FaultPlan {
        let mut rng = SimRng::new(seed ^ 0x5EED_FA17_0000_0000);
        let phase = profile.faulty_phase.as_nanos() as u64;
        let at = |rng: &mut SimRng, lo: u64| Duration::from_nanos(rng.between(lo, phase.max(lo)));
        let mut faults = Vec::new();
        // Lossy, duplicating links from the start of the phase.
        let drop = profile.max_loss * rng.below(1001) as f64 / 1000.0;
        let duplicate = profile.max_duplication * rng.below(1001) as f64 / 1000.0;
        if drop > 0.0 || duplicate > 0.0 {
            faults.push((
                Duration::ZERO,
                Fault::AllLinks(LinkConfig { drop, duplicate, ..LinkConfig::default() }),
            ));
        }
        // Drifting timers.
        if profile.max_drift > 0.0 {
            for n in nodes {
                let r = 1.0 + profile.max_drift * (rng.below(2001) as f64 / 1000.0 - 1.0);
                faults.push((
                    Duration::ZERO,
                    Fault::ClockRate { node: n.clone(), rate: r.max(0.01) },
                ));
            }
        }
        // Crash episodes: crash, then restart before the phase ends.
        let mut crashable: Vec<&NodeId> =
            nodes.iter().filter(|n| !profile.protect.contains(n)).collect();
        for _ in 0..profile.crashes {
            if crashable.is_empty() {
                break;
            }
            // Each episode crashes a different node.
            let n = crashable.swap_remove(rng.below(crashable.len() as u64) as usize).clone();
            let down = at(&mut rng, 0);
            let up = at(&mut rng, down.as_nanos() as u64);
            faults.push((down, Fault::Crash(n.clone())));
            faults.push((up, Fault::Restart(n)));
        }
        // Partition episodes, each ended by the next or by the final heal.
        if nodes.len() >= 2 && !profile.shapes.is_empty() {
            for _ in 0..profile.partitions {
                let shape = profile.shapes[rng.below(profile.shapes.len() as u64) as usize];
                let mut side: Vec<NodeId> = match shape {
                    PartitionShape::IsolateOne => {
                        vec![nodes[rng.below(nodes.len() as u64) as usize].clone()]
                    }
                    PartitionShape::Split => {
                        let mut all = nodes.to_vec();
                        let mut half = Vec::new();
                        while half.len() < nodes.len() / 2 {
                            half.push(all.swap_remove(rng.below(all.len() as u64) as usize));
                        }
                        half
                    }
                    PartitionShape::Random => {
                        nodes.iter().filter(|_| rng.chance(0.5)).cloned().collect()
                    }
                };
                side.sort();
                let rest: Vec<NodeId> =
                    nodes.iter().filter(|n| !side.contains(n)).cloned().collect();
                if side.is_empty() || rest.is_empty() {
                    continue;
                }
                let start = at(&mut rng, 0);
                let end = at(&mut rng, start.as_nanos() as u64);
                if profile.asymmetric && rng.chance(0.5) {
                    // One way: what `side` sends to the rest is lost, the rest still reaches it.
                    let cut = LinkConfig { drop: 1.0, ..LinkConfig::default() };
                    for a in &side {
                        for b in &rest {
                            faults.push((
                                start,
                                Fault::Link { from: a.clone(), to: b.clone(), config: cut.clone() },
                            ));
                            faults.push((end, Fault::ResetLink { from: a.clone(), to: b.clone() }));
                        }
                    }
                } else {
                    faults.push((start, Fault::Partition(vec![side, rest])));
                    faults.push((end, Fault::EndPartition));
                }
            }
        }
        // The end of the phase: everything healed, clocks exact again.
        faults.push((profile.faulty_phase, Fault::Heal));
        for n in nodes {
            faults.push((profile.faulty_phase, Fault::ClockRate { node: n.clone(), rate: 1.0 }));
        }
        faults.sort_by_key(|(t, _)| *t);
        FaultPlan { seed, faults, healed: profile.faulty_phase }
    }

    /// Schedules every fault in `sim` (times since the start of the simulation).
    pub fn schedule(&self, sim: &mut Simulation) {
        for (t, f) in &self.faults {
            sim.schedule_fault(*t, f.clone());
        }
    }

    /// When everything is healed: the liveness phase starts here.
    pub fn healed_at(&self) -> Duration {
        self.healed
    }

    /// The nodes that crash at some point.
    pub fn crashed_nodes(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .faults
            .iter()
            .filter_map(|(_, f)| if let Fault::Crash(n) = f { Some(n.clone()) } else { None })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fault plan of seed {} (healed at {:?}):", self.seed, self.healed)?;
        for (t, fault) in &self.faults {
            writeln!(f, "  at {t:?}: {fault:?}")?;
        }
        Ok(())
    }
}

/// Runs `run` for each seed of `seeds`, or only for the seed in the environment variable
/// `MIR_SEED` when it is set; the first failure panics with one line that reprints the command
/// reproducing it (`command` with `MIR_SEED=<seed>` in front).
///
/// ```
/// mir_runtime::sim::sweep(0..3, "cargo test -p mycrate --test t my_test", |seed| {
///     if seed < 3 { Ok(()) } else { Err(format!("seed {seed} broke")) }
/// });
/// ```
pub fn sweep(
    seeds: std::ops::Range<u64>,
    command: &str,
    mut run: impl FnMut(u64) -> Result<(), String>,
) {
    let only: Option<u64> = std::env::var("MIR_SEED").ok().and_then(|s| s.parse().ok());
    let seeds: Vec<u64> = match only {
        Some(s) => vec![s],
        None => seeds.collect(),
    };
    for seed in seeds {
        if let Err(e) = run(seed) {
            panic!("seed {seed} failed: {e}\nreproduce: MIR_SEED={seed} {command}");
        }
    }
}
