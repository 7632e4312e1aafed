//! The standard events every node understands.
//!
//! | event | to | meaning |
//! |---|---|---|
//! | [`Init`] | every module, once, first | the node has started |
//! | [`SendMessage`] | the transport | send a [`Message`] to some nodes |
//! | [`MessageReceived`] | the message's destination module | a message arrived from a peer |
//! | [`TimerDelay`], [`TimerRepeat`], [`TimerCancel`], [`TimerGarbageCollect`] | the [timer](crate::stdmodules::timer) | emit events later / periodically; cancel |
//! | [`NewSubmodule`], [`GarbageCollect`] | a [factory](crate::stdmodules::factory) | create / drop sub-instances |
//! | [`TestString`], [`TestUint64`] | anyone | for tests and benchmarks |
//!
//! | [`crypto`] requests and responses | a crypto module, and back | sign, verify |
//!
//! All of them are plain serde types; their stable names start with `mir.`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Payload};
use crate::id::{ModuleId, NodeId};
use crate::payload;

pub mod crypto;

/// The first event every module receives (source: [`ModuleId::node`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init;

/// A message between nodes: the module it is for on the receiving node, and its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The destination module on the receiving node.
    pub dest_module: ModuleId,
    /// The content.
    pub payload: Payload,
}

impl Message {
    /// A message for `dest_module` with a typed payload.
    pub fn new(dest_module: impl Into<ModuleId>, payload: impl Into<Payload>) -> Self {
        Message { dest_module: dest_module.into(), payload: payload.into() }
    }
}

/// Asks the transport to send `message` to each of `destinations` (which may include this node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The receiving nodes.
    pub destinations: Vec<NodeId>,
    /// What to send.
    pub message: Message,
}

/// A message arrived from node `from`. The payload is usually in encoded form: decode it with
/// [`Payload::into_typed`] and treat a decoding failure as bad input from `from` (drop and count).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageReceived {
    /// The sending node (authenticated by the transport).
    pub from: NodeId,
    /// The message.
    pub message: Message,
}

/// The ID a requester gives a timer so it can cancel it. Scoped by the requesting module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerId(pub u64);

/// Emit `events` once, `delay` from now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerDelay {
    /// Cancels it (scoped by the requesting module), if given.
    pub id: Option<TimerId>,
    /// How long to wait.
    pub delay: Duration,
    /// Removed by a [`TimerGarbageCollect`] with a higher retention index.
    pub retention_index: u64,
    /// What to emit (as given: source and destination are kept).
    pub events: Vec<Event>,
}

/// Emit `events` every `period`; the first time one period from now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerRepeat {
    /// Cancels it (scoped by the requesting module), if given.
    pub id: Option<TimerId>,
    /// The period (must be > 0).
    pub period: Duration,
    /// Removed by a [`TimerGarbageCollect`] with a higher retention index.
    pub retention_index: u64,
    /// What to emit each time.
    pub events: Vec<Event>,
}

/// Cancels the requesting module's timer `id` (no effect if it already fired or does not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerCancel {
    /// The timer.
    pub id: TimerId,
}

/// Cancels every timer requested by `modules` or by their submodules; each must be a submodule of
/// the requester (a [factory](crate::stdmodules::factory) sends it for the submodules it
/// garbage-collects, so that their periodic timers stop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerCancelModules {
    /// The modules whose timers go.
    pub modules: Vec<ModuleId>,
}

/// Cancels every timer with a retention index below `retention_index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerGarbageCollect {
    /// The lowest retention index kept.
    pub retention_index: u64,
}

/// Asks a factory to create submodule `id` with `params` (the factory's generator decodes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSubmodule {
    /// The new submodule's ID: the factory's ID plus one segment.
    pub id: ModuleId,
    /// Parameters for the generator.
    pub params: Payload,
    /// Removed by a [`GarbageCollect`] with a higher retention index.
    pub retention_index: u64,
}

/// Asks a factory to remove every submodule with a retention index below `retention_index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageCollect {
    /// The lowest retention index kept.
    pub retention_index: u64,
}

/// Reconfiguration (feature `grpc`, which has membership files): these nodes are (or will be)
/// members. The transport connects to the ones it
/// did not know (and accepts their connections), the crypto module learns their keys. Nodes are
/// added or updated, never removed: a node that leaves a membership stops itself, and the
/// protocols count only their own memberships' votes.
#[cfg(feature = "grpc")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipUpdate {
    /// The members, with addresses and keys.
    pub members: Vec<crate::membership::Member>,
}

/// A string, for tests and examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestString(pub String);

/// A number, for tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestUint64(pub u64);

payload!(
    Init = "mir.Init",
    SendMessage = "mir.SendMessage",
    MessageReceived = "mir.MessageReceived",
    TimerDelay = "mir.TimerDelay",
    TimerRepeat = "mir.TimerRepeat",
    TimerCancel = "mir.TimerCancel",
    TimerGarbageCollect = "mir.TimerGarbageCollect",
    TimerCancelModules = "mir.TimerCancelModules",
    NewSubmodule = "mir.NewSubmodule",
    GarbageCollect = "mir.GarbageCollect",
    TestString = "mir.TestString",
    TestUint64 = "mir.TestUint64",
);

#[cfg(feature = "grpc")]
payload!(MembershipUpdate = "mir.MembershipUpdate");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventPayload;

    /// Encodes `ev`, decodes it, and checks the decoded event encodes to the same bytes and that
    /// its payload decodes back to the original value.
    fn round_trip<T: EventPayload + PartialEq>(value: T) {
        let ev = Event::new(ModuleId::new("src/1"), ModuleId::new("dest"), value.clone());
        let bytes = ev.encode();
        let back = Event::decode(&bytes).expect("decodes");
        assert!(back.payload.is_encoded());
        assert_eq!(back.src, ev.src);
        assert_eq!(back.dest, ev.dest);
        assert_eq!(back.name(), T::NAME);
        assert_eq!(back.encode(), bytes, "re-encoding is identical");
        assert_eq!(back, ev, "typed and encoded forms compare equal");
        assert!(back.is::<T>());
        assert_eq!(back.into_payload::<T>().unwrap(), value);
    }

    fn inner() -> Vec<Event> {
        vec![
            Event::new(ModuleId::new("a"), ModuleId::new("b"), TestString("x".into())),
            Event::new(ModuleId::new("a"), ModuleId::new("c/2"), TestUint64(u64::MAX)),
        ]
    }

    #[test]
    fn every_standard_event_round_trips() {
        round_trip(Init);
        let msg = Message::new("bcb", TestString("payload".into()));
        round_trip(SendMessage {
            destinations: vec![NodeId::new("0"), NodeId::new("1")],
            message: msg.clone(),
        });
        round_trip(MessageReceived { from: NodeId::new("3"), message: msg });
        round_trip(TimerDelay {
            id: Some(TimerId(4)),
            delay: Duration::from_millis(1500),
            retention_index: 2,
            events: inner(),
        });
        round_trip(TimerRepeat {
            id: None,
            period: Duration::from_nanos(7),
            retention_index: 0,
            events: inner(),
        });
        round_trip(TimerCancel { id: TimerId(9) });
        round_trip(TimerGarbageCollect { retention_index: 12 });
        round_trip(TimerCancelModules { modules: vec![ModuleId::new("f/1")] });
        round_trip(NewSubmodule {
            id: ModuleId::new("f/3"),
            params: Payload::new(TestUint64(3)),
            retention_index: 3,
        });
        round_trip(GarbageCollect { retention_index: 5 });
        round_trip(TestString("héllo".into()));
        round_trip(TestUint64(0));
    }

    #[test]
    fn nested_events_decode_lazily() {
        let ev = Event::new(
            "a",
            "timer",
            TimerDelay { id: None, delay: Duration::ZERO, retention_index: 0, events: inner() },
        );
        let back = Event::decode(&ev.encode()).unwrap();
        let delay = back.into_payload::<TimerDelay>().unwrap();
        assert!(delay.events[0].payload.is_encoded());
        assert_eq!(
            delay.events[0].payload.decode::<TestString>().unwrap(),
            Some(TestString("x".into()))
        );
        assert_eq!(delay.events[1].payload.decode::<TestString>().unwrap(), None);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let ev = Event::new("a", "b", TestString("hello".into()));
        let bytes = ev.encode();
        for cut in 0..bytes.len() {
            assert!(Event::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(Event::decode(&extra).is_err(), "trailing byte");
        // A payload with the right name but wrong bytes: Malformed, not a panic.
        let bad = Payload::encoded(TestUint64::NAME, vec![0xff, 0xff]);
        assert!(matches!(
            bad.into_typed::<TestUint64>(),
            Err(crate::event::PayloadError::Malformed(_))
        ));
        // Another type's name: handed back.
        let other = Payload::encoded("x.Other", vec![]);
        assert!(matches!(
            other.into_typed::<TestUint64>(),
            Err(crate::event::PayloadError::OtherType(_))
        ));
    }

    #[test]
    fn encoding_is_canonical_and_framed() {
        // Same value, same bytes; different strings never share an encoding.
        let a = Event::new("a", "b", TestString("ab".into())).encode();
        let b = Event::new("a", "b", TestString("ab".into())).encode();
        assert_eq!(a, b);
        let c = Event::new("a", "b", TestString("a".into())).encode();
        assert_ne!(a, c);
    }
}
