//! The adversary on the production executor: [`ByzantineTransport`] wraps a real transport (gRPC,
//! in-process) so that a node runs Byzantine over a real network, for chaos testing.

use std::collections::BTreeMap;

use super::Adversary;
use crate::event::Event;
use crate::id::NodeId;
use crate::module::{ActiveModule, AlarmId, Batch, Context, Cursor, ModuleError, ModuleResult};
use crate::stdevents::SendMessage;

/// A transport whose node is Byzantine: every `SendMessage` passes through the [`Adversary`]
/// (per destination, as in the simulator), then goes to the wrapped transport; delayed messages
/// wait for an alarm. Messages to the node itself stay honest. Register it under the transport's
/// name in place of the transport.
///
/// ```
/// use mir_runtime::adversary::{Adversary, ByzantineTransport, Silence};
/// use mir_runtime::transport::inprocess::InProcessNetwork;
/// use mir_runtime::{Node, NodeId, stdmodules::NullModule};
/// let ids: Vec<NodeId> = (0..2).map(NodeId::from_index).collect();
/// let net = InProcessNetwork::new();
/// let quiet = ByzantineTransport::new(net.transport(ids[0].clone()), Adversary::new(Silence), ids[0].clone(), ids.clone(), 7);
/// let node = Node::builder(ids[0].clone()).passive("app", NullModule).active("net", quiet).build().unwrap();
/// # drop(node);
/// ```
pub struct ByzantineTransport<T> {
    inner: T,
    adversary: Adversary,
    me: NodeId,
    nodes: Vec<NodeId>,
    delayed: BTreeMap<AlarmId, Vec<Event>>,
    cursor: Cursor,
}

impl<T: ActiveModule> ByzantineTransport<T> {
    /// Node `me` (of `nodes`) sends through `inner` as `adversary` decides, drawing from `seed`.
    pub fn new(
        inner: T,
        mut adversary: Adversary,
        me: NodeId,
        mut nodes: Vec<NodeId>,
        seed: u64,
    ) -> Self {
        adversary.seed(seed);
        nodes.sort();
        ByzantineTransport {
            inner,
            adversary,
            me,
            nodes,
            delayed: BTreeMap::new(),
            cursor: Cursor::default(),
        }
    }

    fn pass(&mut self, mut events: Vec<Event>, cx: &mut Context<'_>) -> ModuleResult {
        if events.is_empty() {
            return Ok(());
        }
        let batch = Batch::new(&mut events, &mut self.cursor);
        self.inner.apply_events(batch, cx)
    }
}

impl<T: ActiveModule> ActiveModule for ByzantineTransport<T> {
    fn apply_events(&mut self, events: Batch<'_>, cx: &mut Context<'_>) -> ModuleResult {
        let mut now = Vec::new();
        for ev in events {
            if !ev.is::<SendMessage>() {
                now.push(ev);
                continue;
            }
            let (src, dest) = (ev.src.clone(), ev.dest.clone());
            let send = ev.into_payload::<SendMessage>().map_err(ModuleError::new)?;
            if send.destinations.contains(&self.me) {
                let own = SendMessage {
                    destinations: vec![self.me.clone()],
                    message: send.message.clone(),
                };
                now.push(Event::new(src.clone(), dest.clone(), own));
            }
            for o in self.adversary.rewrite(&self.me, &self.nodes, &send) {
                let one = SendMessage { destinations: vec![o.to], message: o.message };
                let ev = Event::new(src.clone(), dest.clone(), one);
                if o.delay.is_zero() {
                    now.push(ev);
                } else {
                    let alarm = cx.set_alarm_after(o.delay);
                    self.delayed.insert(alarm, vec![ev]);
                }
            }
        }
        self.pass(now, cx)
    }

    fn on_alarm(&mut self, alarm: AlarmId, cx: &mut Context<'_>) -> ModuleResult {
        match self.delayed.remove(&alarm) {
            Some(events) => self.pass(events, cx),
            None => self.inner.on_alarm(alarm, cx),
        }
    }

    fn accepts_messages(&self) -> bool {
        self.inner.accepts_messages()
    }
}
