//! # mir-dsl: run-time support for protocols written with `#[protocol]`
//!
//! A protocol is a state struct plus upon-handlers, written as methods of one (or several)
//! `#[protocol]` impl blocks:
//!
//! ```
//! use mir_dsl::{protocol, Ctx, Handled, DslModule, ignore};
//! use mir_dsl::mir_runtime::{stdevents::{Init, TestString, TestUint64}, ModuleId, NodeId};
//!
//! struct Counter { total: u64, reported: bool, report_to: ModuleId }
//!
//! #[protocol]
//! impl Counter {
//!     /// upon event ⟨TestUint64 | n⟩ do total := total + n
//!     #[upon(event)]
//!     fn on_number(&mut self, _ctx: &mut Ctx<Self>, n: TestUint64) -> Handled {
//!         if n.0 == 0 { ignore!("zero is not a number we count"); }
//!         self.total += n.0;
//!         Ok(())
//!     }
//!
//!     /// upon total ≥ 10 ∧ ¬reported do report
//!     #[upon(condition)]
//!     fn enough(&mut self, ctx: &mut Ctx<Self>) -> Handled {
//!         if self.total >= 10 && !self.reported {
//!             self.reported = true;
//!             ctx.emit(&self.report_to.clone(), TestString(format!("total {}", self.total)));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut m = DslModule::new(Counter { total: 0, reported: false, report_to: ModuleId::new("app") });
//! let evs = [0, 4, 7, 1].map(|n| mir_dsl::mir_runtime::Event::new("app", "counter", TestUint64(n))).to_vec();
//! let out = mir_dsl::mir_runtime::testing::apply(&mut m, ModuleId::new("counter"), evs).unwrap();
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].get::<TestString>().unwrap().0, "total 11");
//! assert_eq!(m.stats().ignored(), 1);
//! ```
//!
//! ## Handlers
//!
//! | attribute | signature | runs |
//! |---|---|---|
//! | `#[upon(event)]` | `fn(&mut self, ctx: &mut Ctx<Self>, ev: T) -> Handled` | for each local event of type `T` |
//! | `#[upon(message)]` | `fn(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: M) -> Handled` | for each message of type `M` received from a peer |
//! | `#[upon(response)]` | `fn(&mut self, ctx: &mut Ctx<Self>, res: R, cont: C) -> Handled` | for each response `R` to a request made with continuation `C` |
//! | `#[upon(condition)]` | `fn(&mut self, ctx: &mut Ctx<Self>) -> Handled` | after every event |
//! | `#[upon(condition, per_batch)]` | `fn(&mut self, ctx: &mut Ctx<Self>) -> Handled` | after every batch |
//!
//! Several handlers of one event run in declaration order (all but the last get a clone).
//! Conditions run **after each event** by default: a condition then sees every intermediate state,
//! exactly like the textbook's "upon exists m such that …" rules, and the order of outputs is a
//! function of the input order. `per_batch` conditions run once after the batch, for work that
//! only needs the final state (cheaper; Mir's `UponStateUpdates`).
//!
//! ## Two kinds of failure
//!
//! A handler returns [`Handled`]. `Err(Reject::Ignore(reason))` (the [`ignore!`] and [`ensure!`]
//! macros) means "this input is bad — from a Byzantine or confused peer — drop it": it is logged
//! and counted ([`DslStats`]) and the node goes on. `Err(Reject::Fatal(..))` ([`fatal!`]) means
//! "this node has a bug": the node stops with the error. Unknown *local* events are fatal; unknown
//! or malformed *messages* are ignored and counted. A protocol with no `#[upon(message)]` handler
//! (in its main block or any part) takes no peers' messages at all: the node refuses them before
//! they reach it ([`PassiveModule::accepts_messages`](mir_runtime::PassiveModule::accepts_messages)).
//!
//! ## Requests, responses and typed continuations
//!
//! [`Ctx::request`] sends a request (any [`Request`](mir_runtime::stdevents::crypto::Request) type, such as
//! [`SignRequest`](mir_runtime::stdevents::crypto::SignRequest)) and stores a continuation value
//! `C`. When the response arrives, the `#[upon(response)]` handler whose parameters are the
//! response type and `C` gets the response and the stored value back. A request whose
//! (response, continuation) pair no handler takes does not compile. A response that matches no
//! pending request stops the node (it is a bug, never silently dropped).
//!
//! **The lifecycle of a continuation.** It is stored by [`Ctx::request`] (which returns a
//! [`RequestId`]) and released by whichever comes first: its response is handled (it is moved
//! into the handler); the protocol gives up with [`Ctx::cancel_request`] (a timeout, a view
//! change; a response that still comes is then dropped and counted as ignored); or the module
//! instance is dropped (a [factory](mir_runtime::stdmodules::Factory) instance garbage-collected
//! with its epoch), which drops every pending continuation with it. [`Ctx::pending_requests`]
//! and [`DslModule::pending_requests`] show how many wait. Requests to this node's own services
//! (crypto, hasher) are always answered; a protocol that asks something that may never answer
//! pairs the request with a timer ([`Ctx::after`]) and cancels on timeout.
//!
//! ## Time
//!
//! A protocol never reads a clock. [`Ctx::after`] asks the timer module to send an event back to
//! the protocol after a delay (a timeout, a retry), [`Ctx::every`] every period (a heartbeat), and
//! [`Ctx::cancel`] stops either; in the simulator the delays are simulated time, in production the
//! executor's clock.
//!
//! ## Parts
//!
//! A protocol can be split over several impl blocks (in several files) that share its state:
//! mark each with `#[protocol(part = name)]` and list them on the main block,
//! `#[protocol(parts(name, …))]`. Events go to the main block's handlers first, then to each part
//! in the listed order, and are handled by the first block that has a handler for them (for a
//! response: a handler for its continuation type). A part that is not listed, or listed and not
//! defined, does not compile.
//!
//! ## Handlers that would never run do not compile
//!
//! Handlers of one type in one block, with the type written the same way, form a *group* and run
//! in declaration order. An event reaches only the first group that takes its type, so a second
//! group of the same type would never run. The compiler refuses it, whichever way it comes about:
//!
//! * two spellings of one type in a block (`TestString`, `stdevents::TestString`): the macro's
//!   error asks to write the type the same way. The macro cannot resolve paths, so it refuses any
//!   two types of one kind whose paths end in the same name; if they really are two types
//!   (`a::Msg`, `b::Msg`), import one under another name;
//! * an alias, or one type handled in the main block and in a part, or in two parts: each group
//!   implements a marker trait for its type (`HandlesEvent<T>`, `HandlesMessage<M>`,
//!   [`HandlesResponse<R, C>`]), and the compiler reports the two impls as conflicting (E0119),
//!   on both handlers' types. It resolves the types, so this check is exact.
//!
//! ## What the macro generates
//!
//! Little: a dispatch function per block that tests the event's type against each group's and
//! calls the handlers through ordinary functions of this crate ([`__private`]) that decode values
//! and recover continuations; the conditions; one-line marker impls per group (above); and, for
//! parts, an impl of `__private::Part` that the main block calls and a check that the main block
//! lists it. When a block has a mistake the macro emits its errors and stand-ins for everything
//! other code uses (the `Protocol` or part impl, the `HandlesResponse` impls), so one mistake gives
//! one error. The output for a small protocol is checked into the repository,
//! `mir-dsl-macros/tests/expand/small.expanded.rs`, and the compile errors are pinned by the
//! cases in `mir-dsl/tests/ui/`.

mod ctx;
mod module;
mod quorum;

pub use ctx::{Ctx, HandlesResponse, Persist, Reject, RequestId};
pub use module::{DslModule, DslStats, Protocol};
pub use quorum::{Counted, QuorumError, Voters, Votes, Weight};

pub use mir_dsl_macros::protocol;
pub use mir_runtime;

/// What a protocol file needs: `use mir_dsl::prelude::*;`.
///
/// The DSL (the macro, [`Ctx`], [`Handled`], the failure macros, [`DslModule`], quorums) and the
/// runtime items every protocol names (IDs, [`payload!`](mir_runtime::payload), `Init`, timer IDs,
/// the factory). Anything else is imported from `mir_runtime` directly.
///
/// ```
/// use mir_dsl::prelude::*;
/// struct Hello { greeted: bool }
/// #[protocol]
/// impl Hello {
///     #[upon(event)]
///     fn init(&mut self, _ctx: &mut Ctx<Self>, _init: Init) -> Handled {
///         ensure!(!self.greeted, "a second Init");
///         self.greeted = true;
///         Ok(())
///     }
/// }
/// let _module = DslModule::new(Hello { greeted: false });
/// ```
pub mod prelude {
    pub use crate::{
        ensure, fatal, ignore, protocol, Counted, Ctx, DslModule, Handled, Reject, RequestId,
        Voters, Votes, Weight,
    };
    pub use mir_runtime::stdevents::{Init, TimerId};
    pub use mir_runtime::stdmodules::Factory;
    pub use mir_runtime::{payload, ModuleError, ModuleId, NodeId};
}

/// What a handler returns.
pub type Handled = Result<(), Reject>;

/// Drops the input being handled as bad (logged and counted; the node goes on).
///
/// ```
/// # use mir_dsl::{ignore, Handled};
/// fn check(n: u64) -> Handled {
///     if n > 10 { ignore!("{n} is out of range"); }
///     Ok(())
/// }
/// assert!(check(11).is_err());
/// ```
#[macro_export]
macro_rules! ignore {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Reject::Ignore(::std::format!($($arg)*)))
    };
}

/// Drops the input being handled unless `cond` holds.
///
/// ```
/// # use mir_dsl::{ensure, Handled};
/// fn check(n: u64) -> Handled {
///     ensure!(n <= 10, "{n} is out of range");
///     Ok(())
/// }
/// assert!(check(3).is_ok());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::ignore!($($arg)*);
        }
    };
}

/// Stops the node: this node has a bug.
///
/// ```
/// # use mir_dsl::{fatal, Handled};
/// fn invariant(ok: bool) -> Handled {
///     if !ok { fatal!("invariant broken"); }
///     Ok(())
/// }
/// assert!(invariant(false).is_err());
/// ```
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Reject::Fatal(
            $crate::mir_runtime::ModuleError::new(::std::format!($($arg)*)),
        ))
    };
}

/// Functions the generated code calls. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::ctx::private::*;
    pub use crate::module::private::*;
}
