//! [`NodeBuilder`]: the description of a node (its ID, configuration and modules) that both
//! executors run.

use std::collections::BTreeMap;

use crate::config::NodeConfig;
use crate::error::BuildError;
use crate::id::{ModuleId, NodeId};
use crate::module::{ActiveModule, PassiveModule};

/// How a module is hosted.
pub(crate) enum ModuleKind {
    Passive(Box<dyn PassiveModule>),
    /// A passive module that the production executor runs on its own thread.
    Worker(Box<dyn PassiveModule>),
    Active(Box<dyn ActiveModule>),
    /// Events for this module leave the node and are handled by the executor (the simulator's
    /// network).
    Port,
}

/// Describes a node: its ID, configuration and modules. Build it into a production
/// [`Node`](crate::Node) with [`NodeBuilder::build`] or hand it to the simulator with
/// [`Simulation::add_node`](crate::sim::Simulation::add_node).
///
/// ```
/// use mir_runtime::{Node, NodeConfig, stdmodules::{NullModule, Timer}};
/// let node = Node::builder("n0")
///     .config(NodeConfig { max_batch_size: 64, ..NodeConfig::default() })
///     .passive("null", NullModule)
///     .active("timer", Timer::new())
///     .build()
///     .unwrap();
/// assert_eq!(node.handle().modules().len(), 2);
///
/// let err = Node::builder("n0").passive("a", NullModule).passive("a", NullModule).build().unwrap_err();
/// assert_eq!(err.to_string(), "module a is registered twice");
/// ```
pub struct NodeBuilder {
    pub(crate) node: NodeId,
    pub(crate) config: NodeConfig,
    pub(crate) modules: Vec<(ModuleId, ModuleKind)>,
    pub(crate) error: Option<BuildError>,
    pub(crate) interceptor: Option<Box<dyn super::Interceptor>>,
}

impl NodeBuilder {
    /// A node with the given ID, the default configuration and no modules.
    pub fn new(node: impl Into<NodeId>) -> Self {
        NodeBuilder {
            node: node.into(),
            config: NodeConfig::default(),
            modules: Vec::new(),
            error: None,
            interceptor: None,
        }
    }

    /// Sets the configuration (validated by `build`).
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    fn add(mut self, id: &str, kind: ModuleKind) -> Self {
        if self.error.is_some() {
            return self;
        }
        match ModuleId::try_new(id) {
            Err(e) => self.error = Some(e.into()),
            Ok(id) if id.sub().is_some() => self.error = Some(BuildError::NotTopLevel(id)),
            Ok(id) if self.modules.iter().any(|(m, _)| *m == id) => {
                self.error = Some(BuildError::DuplicateModule(id))
            }
            Ok(id) => self.modules.push((id, kind)),
        }
        self
    }

    /// Adds a passive module, run on the event loop's thread.
    pub fn passive(self, id: &str, module: impl PassiveModule) -> Self {
        self.add(id, ModuleKind::Passive(Box::new(module)))
    }

    /// Adds a passive module that the production executor runs on a thread of its own, for heavy
    /// work (signature checks, hashing) that must not stall the other modules. Batches are handed
    /// over whole, one at a time. In the simulator it runs like any passive module.
    pub fn passive_on_worker(self, id: &str, module: impl PassiveModule) -> Self {
        self.add(id, ModuleKind::Worker(Box::new(module)))
    }

    /// Adds an active module.
    pub fn active(self, id: &str, module: impl ActiveModule) -> Self {
        self.add(id, ModuleKind::Active(Box::new(module)))
    }

    /// Shows every batch to `interceptor` just before a module handles it (e.g. a
    /// [`Recorder`](crate::eventlog::Recorder)). In both executors.
    pub fn interceptor(mut self, interceptor: impl super::Interceptor) -> Self {
        self.interceptor = Some(Box::new(interceptor));
        self
    }

    pub(crate) fn port(self, id: &str) -> Self {
        self.add(id, ModuleKind::Port)
    }

    /// The IDs registered so far.
    pub fn module_ids(&self) -> Vec<ModuleId> {
        self.modules.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The passive modules (on the event loop or on workers), by ID, leaving the rest: fresh
    /// modules for [`eventlog::replay`](fn@crate::eventlog::replay) from the code that builds a
    /// node.
    ///
    /// ```
    /// use mir_runtime::{Node, stdmodules::{NullModule, Timer}};
    /// let b = Node::builder("n0").passive("null", NullModule).active("timer", Timer::new());
    /// let modules = b.into_passive_modules();
    /// assert_eq!(modules.keys().map(|m| m.as_str()).collect::<Vec<_>>(), ["null"]);
    /// ```
    pub fn into_passive_modules(self) -> BTreeMap<ModuleId, Box<dyn PassiveModule>> {
        self.modules
            .into_iter()
            .filter_map(|(id, kind)| match kind {
                ModuleKind::Passive(m) | ModuleKind::Worker(m) => Some((id, m)),
                ModuleKind::Active(_) | ModuleKind::Port => None,
            })
            .collect()
    }
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("node", &self.node)
            .field("config", &self.config)
            .field("modules", &self.module_ids())
            .finish_non_exhaustive()
    }
}
