//! Helpers for testing modules directly, without a node.

use crate::event::Event;
use crate::id::ModuleId;
use crate::module::{Batch, Cursor, ModuleError, Outbox, PassiveModule};

/// Calls `module` once with `events` as one batch, as module `me`, and returns what it emitted.
///
/// ```
/// use mir_runtime::{testing::apply, stdmodules::NullModule, Event, ModuleId, stdevents::TestString};
/// let out = apply(&mut NullModule, ModuleId::new("null"), vec![Event::new("a", "null", TestString("x".into()))]);
/// assert!(out.unwrap().is_empty());
/// ```
pub fn apply(
    module: &mut dyn PassiveModule,
    me: ModuleId,
    mut events: Vec<Event>,
) -> Result<Vec<Event>, ModuleError> {
    let mut cursor = Cursor::default();
    let mut out = Outbox::new(me);
    module.apply_events(Batch::new(&mut events, &mut cursor), &mut out)?;
    Ok(out.take())
}
