//! Standard modules: the [`timer`], the [`factory`], the [ECDSA crypto module](ecdsa), the
//! [`hasher`], the [test crypto](crypto) and the [null module](NullModule).

pub mod crypto;
#[cfg(feature = "ecdsa")]
pub mod ecdsa;
pub mod factory;
pub mod hasher;
pub mod link;
pub mod timer;

pub use crypto::{CryptoCounters, CryptoStats, TestCrypto, DEFAULT_CACHE_ENTRIES};
#[cfg(feature = "ecdsa")]
pub use ecdsa::{EcdsaCrypto, KeyRegistry};
pub use factory::{Factory, FactoryStats};
pub use hasher::Hasher;
pub use link::{LinkStats, PerfectLink};
pub use timer::{Timer, TimerHandle};

use crate::module::{Batch, ModuleResult, Outbox, PassiveModule};

/// A passive module that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullModule;

impl PassiveModule for NullModule {
    fn apply_events(&mut self, events: Batch<'_>, _out: &mut Outbox) -> ModuleResult {
        events.for_each(drop);
        Ok(())
    }
}
