//! # mir-runtime: the node
//!
//! A Mir node is a set of named **modules** that talk only through **events**. This crate holds
//! everything a node is made of and the two executors that run it:
//!
//! | part | where | feature |
//! |---|---|---|
//! | identifiers (`ordering/3/1`) | [`ModuleId`], [`NodeId`] | core |
//! | typed, open events and their one canonical encoding | [`Event`], [`EventPayload`], [`Payload`], [`codec`] | core |
//! | module kinds | [`PassiveModule`], [`ActiveModule`] | core |
//! | describing a node; the node core both executors drive | [`NodeBuilder`], [`NodeConfig`] (`src/core/`) | core |
//! | the production executor (tokio) | [`Node`], [`NodeHandle`], [`EventSink`] (`src/node.rs`) | core |
//! | the deterministic simulator | [`sim::Simulation`] | core |
//! | Byzantine nodes for any protocol (equivocation, omission, mutation, replay, forgery) | [`adversary`] | core |
//! | standard events and modules | [`stdevents`], [`stdmodules`] (timer, factory, test crypto, hasher, null) | core |
//! | ECDSA signatures | [`stdmodules::EcdsaCrypto`] | `ecdsa` |
//! | transports | [`transport`]: in-process (core); gRPC over mutually authenticated TLS 1.3 | `grpc` |
//! | recording event logs, reading them back, monitors, replay | [`eventlog`] | core (compressed: `gzip`) |
//! | the HTML trace viewer | `eventlog::viewer` | `viewer` |
//! | the write-ahead log: record format, recovery scan, storage (a directory, a simulated disk), the WAL module | [`wal`] | core |
//! | membership files (TOML/JSON: IDs, addresses, signing and transport keys, weights) | `membership` | `grpc` |
//! | a node's secret keys and key files (`mir keygen`, `mir membership`) | `keys` | `grpc` |
//! | the `mircat` and `mir` tools (`mircat` also as a library function for a crate's own binary: `eventlog::cli::run`) | `src/bin/`, `src/eventlog/cli.rs` | `cli` |
//! | rate-limited, escaped warnings for what peers cause | [`ratelog`] | core |
//! | statistics | [`NodeStats`] | core |
//!
//! ## Features
//!
//! All are on by default, so `cargo run` and `cargo test` work as the README says. A protocol
//! crate that needs only the node, the events and the simulator depends on
//! `mir-runtime = { …, default-features = false }` and compiles about a quarter of the crates
//! (`docs/runtime.md`, "Features", has the counts). `grpc` carries the membership and key
//! files it is configured from and turns on `ecdsa` (the files hold those keys); `cli` turns on
//! `grpc`, `gzip` and `viewer`.
//!
//! ## Layers
//!
//! The core (IDs, events, standard events, modules, `src/core/`: builder, queues, dispatch, sinks, the
//! interceptor hook) imports nothing above it. The executors ([`Node`] in `src/node.rs`,
//! [`sim`]), the standard modules, transports, the event log and the tools build on the core.

//! ## The model
//!
//! * Every event names its source and destination module. The node keeps one FIFO queue per
//!   top-level module and routes on the first segment of the destination; modules that own
//!   sub-instances (the [factory](stdmodules::factory)) route on the rest.
//! * **Passive** modules (protocol logic) get a batch of events and return events; they are
//!   deterministic and never read clocks: time and randomness arrive as events. **Active**
//!   modules (timer, network, clients) also make events on their own, through alarms on the
//!   executor's clock and, in production, through [`EventSink`]s.
//! * Event types are plain serde types that implement [`EventPayload`] (a stable name). Any crate
//!   adds its own; nothing central is edited. Their canonical encoding (postcard) serves the wire,
//!   the event log and hashing.
//!
//! ```
//! use mir_runtime::{Batch, Event, ModuleResult, Node, Outbox, PassiveModule, ModuleId, Exit};
//! use mir_runtime::stdevents::{Init, TestUint64};
//!
//! /// Counts down: each number n > 0 makes it send n-1 to itself.
//! struct Countdown { me: ModuleId, done: std::sync::mpsc::Sender<()> }
//! impl PassiveModule for Countdown {
//!     fn apply_events(&mut self, events: Batch<'_>, out: &mut Outbox) -> ModuleResult {
//!         for ev in events {
//!             if ev.is::<Init>() {
//!                 out.send(&self.me, TestUint64(3));
//!             } else if let Some(TestUint64(n)) = ev.get::<TestUint64>() {
//!                 if *n == 0 { let _ = self.done.send(()); } else { out.send(&self.me, TestUint64(n - 1)); }
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, rx) = std::sync::mpsc::channel();
//! let node = Node::builder("n0")
//!     .passive("count", Countdown { me: ModuleId::new("count"), done: tx })
//!     .build()
//!     .unwrap();
//! let handle = node.handle();
//! let run = tokio::spawn(node.run());
//! while rx.try_recv().is_err() { tokio::task::yield_now().await; }
//! handle.stop();
//! assert_eq!(run.await.unwrap(), Ok(Exit::Stopped));
//! assert_eq!(handle.stats().module("count").unwrap().events_handled, 5); // Init + 3, 2, 1, 0
//! # }
//! ```
//!
//! ## Choosing an executor
//!
//! * [`Node::run`] (production, tokio): modules run inline on the loop's task, so a hop between
//!   modules costs a queue push; modules registered with
//!   [`NodeBuilder::passive_on_worker`] get a thread of their own and are handed whole batches,
//!   so heavy work uses other cores without stalling the protocol. See [`node`](Node).
//! * [`sim::Simulation`]: many nodes in one thread, a seeded scheduler, a simulated clock and
//!   network; the same seed gives the same run bit for bit, checked through a digest of every
//!   event. See [`sim`].
//!
//! ## Ordering and delivery guarantees
//!
//! At the time of writing, in both executors:
//!
//! 1. Events from one module to another arrive in the order they were emitted.
//! 2. Each module first receives its `Init`; modules are initialised in registration order.
//! 3. A module gets at most `max_batch_size` events per call and is never called concurrently
//!    with itself.
//! 4. Nothing is promised about the order between events from different sources; the simulator
//!    deliberately varies it with the seed.
//! 5. An event for a module the node does not have stops the node with an error naming it
//!    (Mir dropped these silently); events for `@node` (replies to events injected from outside)
//!    are dropped and counted. A module error or panic stops the node with an error naming the
//!    node, the module and the event.
//! 6. Peers' messages reach only modules that declare they take them
//!    ([`PassiveModule::accepts_messages`]); a node's messages to itself take a local, lossless
//!    loopback ([`transport`]).
//!
//! ## Back-pressure
//!
//! Input from outside the node (injected events, active modules' sinks, alarms) is admitted only
//! while at most `pause_threshold` events are buffered, and again from `resume_threshold` down;
//! injection channels are bounded, so injectors wait. Passive output is never throttled; it is
//! bounded by what the protocol emits per input. Injected events buffered in the node (queued or
//! waiting in the channel) stay at most `pause_threshold + (inject_capacity + 1) × max_batch_size`:
//! the batch admitted just below the threshold may cross it by one batch. The test
//! `backpressure_bounds_injected_events` checks
//! `submitted − consumed ≤ pause_threshold + (inject_capacity + 2) × max_batch_size`, one batch
//! more because a worker module's batch in progress is neither buffered nor consumed.

#![warn(missing_docs)]

pub mod adversary;
pub mod codec;
mod config;
mod core;
mod error;
mod event;
pub mod eventlog;
mod id;
#[cfg(feature = "grpc")]
pub mod keys;
#[cfg(feature = "grpc")]
pub mod membership;
mod module;
mod node;
pub mod ratelog;
pub mod sim;
mod stats;
pub mod stdevents;
pub mod stdmodules;
pub mod testing;
mod time;
pub mod transport;
pub mod wal;

pub use crate::core::{EventSink, InjectError, NodeBuilder};
pub use config::{ConfigError, NodeConfig};
pub use error::{Activity, BuildError, EventRef, Exit, NodeError};
#[doc(hidden)]
pub use event::__inventory;
pub use event::{Encoded, Event, EventPayload, Payload, PayloadError, PayloadType};
pub use id::{IdError, ModuleId, NodeId, SEPARATOR};
pub use module::{
    ActiveModule, AlarmId, Batch, Context, ModuleError, ModuleResult, Outbox, PassiveModule,
};
pub use node::{Node, NodeHandle};
pub use stats::{ModuleStats, NodeStats};
pub use time::Time;
