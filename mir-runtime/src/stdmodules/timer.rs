//! The timer: emits events later, once ([`TimerDelay`]) or periodically ([`TimerRepeat`]).
//!
//! It is an active module built on the executor's alarms, so the same code runs on the production
//! executor's monotonic clock and on the simulator's simulated clock, with the same semantics:
//!
//! 1. A delay emits its events once, `delay` after the request.
//! 2. A repeat emits its events every `period`, **the first time one period after the request**
//!    (Mir's real timer fired at once and its simulated timer after one period; here both wait).
//!    Repeats do not drift: the k-th emission is due at `request + k·period`.
//! 3. A requester may name a timer with a [`TimerId`]; IDs are scoped by the requesting module.
//!    [`TimerCancel`] removes it; a new request with the same ID replaces the old timer.
//! 4. [`TimerGarbageCollect`] removes every timer whose retention index is below the given one;
//!    later requests below the highest collected index are ignored (logged).
//! 5. [`TimerCancelModules`] removes every timer of the given modules and their submodules, which
//!    must be the requester's submodules (a factory sends it for what it garbage-collects; a
//!    module cannot cancel another's timers).
//! 6. Emitted events keep the source and destination the requester gave them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::event::Event;
use crate::id::ModuleId;
use crate::module::{ActiveModule, AlarmId, Batch, Context, ModuleError, ModuleResult, Outbox};
use crate::stdevents::{
    Init, TimerCancel, TimerCancelModules, TimerDelay, TimerGarbageCollect, TimerId, TimerRepeat,
};
use crate::time::Time;

struct Entry {
    owner: ModuleId,
    id: Option<TimerId>,
    period: Option<Duration>,
    due: Time,
    retention: u64,
    events: Vec<Event>,
}

/// The timer module. See the [module docs](self).
#[derive(Default)]
pub struct Timer {
    /// Live timers by the alarm that will fire them.
    timers: BTreeMap<AlarmId, Entry>,
    /// Named timers: (requester, ID) → alarm.
    named: BTreeMap<(ModuleId, TimerId), AlarmId>,
    gc_index: u64,
}

impl Timer {
    /// A timer with no pending timers.
    pub fn new() -> Self {
        Timer::default()
    }

    fn cancel_named(&mut self, owner: &ModuleId, id: TimerId, cx: &mut Context<'_>) {
        if let Some(alarm) = self.named.remove(&(owner.clone(), id)) {
            self.timers.remove(&alarm);
            cx.cancel_alarm(alarm);
        }
    }

    fn add(&mut self, entry: Entry, cx: &mut Context<'_>) {
        if entry.retention < self.gc_index {
            tracing::warn!(owner = %entry.owner, retention = entry.retention, gc_index = self.gc_index, "timer request below the garbage-collection index; ignored");
            return;
        }
        if let Some(id) = entry.id {
            self.cancel_named(&entry.owner, id, cx);
        }
        let alarm = cx.set_alarm(entry.due);
        if let Some(id) = entry.id {
            self.named.insert((entry.owner.clone(), id), alarm);
        }
        self.timers.insert(alarm, entry);
    }
}

impl ActiveModule for Timer {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        for ev in events {
            let owner = ev.src.clone();
            if ev.is::<Init>() {
                continue;
            }
            if ev.is::<TimerDelay>() {
                let d: TimerDelay = ev.into_payload().map_err(ModuleError::new)?;
                let due = cx.now() + d.delay;
                self.add(
                    Entry {
                        owner,
                        id: d.id,
                        period: None,
                        due,
                        retention: d.retention_index,
                        events: d.events,
                    },
                    cx,
                );
            } else if ev.is::<TimerRepeat>() {
                let r: TimerRepeat = ev.into_payload().map_err(ModuleError::new)?;
                if r.period.is_zero() {
                    return Err(ModuleError::new(format!(
                        "TimerRepeat from {owner} with a zero period"
                    )));
                }
                let due = cx.now() + r.period;
                self.add(
                    Entry {
                        owner,
                        id: r.id,
                        period: Some(r.period),
                        due,
                        retention: r.retention_index,
                        events: r.events,
                    },
                    cx,
                );
            } else if let Some(c) = ev.get::<TimerCancel>() {
                self.cancel_named(&owner, c.id, cx);
            } else if let Some(gc) = ev.get::<TimerGarbageCollect>() {
                self.gc_index = self.gc_index.max(gc.retention_index);
                let gc_index = self.gc_index;
                let dead: Vec<AlarmId> = self
                    .timers
                    .iter()
                    .filter(|(_, e)| e.retention < gc_index)
                    .map(|(a, _)| *a)
                    .collect();
                for alarm in dead {
                    let e = self.timers.remove(&alarm).expect("listed");
                    if let Some(id) = e.id {
                        self.named.remove(&(e.owner, id));
                    }
                    cx.cancel_alarm(alarm);
                }
            } else if ev.is::<TimerCancelModules>() {
                let c: TimerCancelModules = ev.into_payload().map_err(ModuleError::new)?;
                if let Some(m) = c.modules.iter().find(|m| !m.is_under(&owner) || **m == owner) {
                    return Err(ModuleError::new(format!(
                        "TimerCancelModules from {owner} names {m}, not one of its submodules"
                    )));
                }
                let under = |o: &ModuleId| c.modules.iter().any(|m| o.is_under(m));
                let dead: Vec<AlarmId> =
                    self.timers.iter().filter(|(_, e)| under(&e.owner)).map(|(a, _)| *a).collect();
                for alarm in dead {
                    let e = self.timers.remove(&alarm).expect("listed");
                    if let Some(id) = e.id {
                        self.named.remove(&(e.owner, id));
                    }
                    cx.cancel_alarm(alarm);
                }
            } else {
                return Err(ModuleError::unexpected_event(&ev));
            }
        }
        Ok(())
    }

    fn on_alarm(&mut self, alarm: AlarmId, cx: &mut Context<'_>) -> ModuleResult {
        let Some(mut entry) = self.timers.remove(&alarm) else {
            return Ok(());
        };
        match entry.period {
            None => {
                if let Some(id) = entry.id {
                    self.named.remove(&(entry.owner.clone(), id));
                }
                for ev in entry.events {
                    cx.emit(ev);
                }
            }
            Some(period) => {
                for ev in &entry.events {
                    cx.emit(ev.clone());
                }
                entry.due = entry.due + period;
                let next = cx.set_alarm(entry.due);
                if let Some(id) = entry.id {
                    self.named.insert((entry.owner.clone(), id), next);
                }
                self.timers.insert(next, entry);
            }
        }
        Ok(())
    }
}

/// A typed reference to a timer module, for building requests to it.
///
/// ```
/// use mir_runtime::{ModuleId, Outbox, stdmodules::TimerHandle, stdevents::{TestString, TimerId}};
/// use std::time::Duration;
/// let timer = TimerHandle::new(ModuleId::new("timer"));
/// let mut out = Outbox::new(ModuleId::new("app"));
/// let tick = out_event(&out, "app", TestString("tick".into()));
/// timer.repeat(&mut out, Some(TimerId(1)), Duration::from_secs(1), 0, vec![tick]);
/// timer.cancel(&mut out, TimerId(1));
/// assert_eq!(out.len(), 2);
/// # fn out_event(out: &Outbox, dest: &str, p: TestString) -> mir_runtime::Event {
/// #     mir_runtime::Event::new(out.me().clone(), dest, p) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerHandle(ModuleId);

impl TimerHandle {
    /// A reference to the timer module `id`.
    pub fn new(id: ModuleId) -> Self {
        TimerHandle(id)
    }

    /// The timer module's ID.
    pub fn id(&self) -> &ModuleId {
        &self.0
    }

    /// Asks for `events` to be emitted once after `delay`.
    pub fn delay(
        &self,
        out: &mut Outbox,
        id: Option<TimerId>,
        delay: Duration,
        retention_index: u64,
        events: Vec<Event>,
    ) {
        out.send(&self.0, TimerDelay { id, delay, retention_index, events });
    }

    /// Asks for `events` to be emitted every `period`, first after one period.
    pub fn repeat(
        &self,
        out: &mut Outbox,
        id: Option<TimerId>,
        period: Duration,
        retention_index: u64,
        events: Vec<Event>,
    ) {
        out.send(&self.0, TimerRepeat { id, period, retention_index, events });
    }

    /// Cancels this module's timer `id`.
    pub fn cancel(&self, out: &mut Outbox, id: TimerId) {
        out.send(&self.0, TimerCancel { id });
    }

    /// Removes timers below `retention_index`.
    pub fn garbage_collect(&self, out: &mut Outbox, retention_index: u64) {
        out.send(&self.0, TimerGarbageCollect { retention_index });
    }
}
