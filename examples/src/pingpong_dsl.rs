//! Ping-pong again, written in the `#[protocol]` DSL: compare with [`crate::pingpong`], which
//! does the same by hand. The DSL version needs no event loop, no type tests, no decoding of
//! received messages and no error plumbing: each handler is one upon-rule.

use std::sync::mpsc;
use std::time::Duration;

use mir_dsl::mir_runtime::stdevents::Init;
use mir_dsl::mir_runtime::stdmodules::TimerHandle;
use mir_dsl::mir_runtime::{Event, ModuleId, NodeId};
use mir_dsl::{protocol, Ctx, Handled};

use crate::pingpong::{Ping, Pong, Tick};

/// Sends `Ping(n)` every `period` to `peer`'s `pong` module; reports each `Pong(n)`.
pub struct Pinger {
    /// The other node.
    pub peer: NodeId,
    /// This node's transport.
    pub net: ModuleId,
    /// The timer.
    pub timer: TimerHandle,
    /// Ping period.
    pub period: Duration,
    /// How many pings.
    pub count: u64,
    /// Where to report pongs.
    pub report: mpsc::Sender<String>,
    /// Pings sent.
    pub sent: u64,
}

#[protocol]
impl Pinger {
    /// upon Init do start a periodic tick
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _init: Init) -> Handled {
        let tick = Event::new(ctx.me().clone(), ctx.me().clone(), Tick);
        ctx.emit(
            &self.timer.id().clone(),
            mir_dsl::mir_runtime::stdevents::TimerRepeat {
                id: None,
                period: self.period,
                retention_index: 0,
                events: vec![tick],
            },
        );
        Ok(())
    }

    /// upon Tick such that sent < count do send PING(sent + 1) to the peer
    #[upon(event)]
    fn tick(&mut self, ctx: &mut Ctx<Self>, _tick: Tick) -> Handled {
        if self.sent < self.count {
            self.sent += 1;
            ctx.send_to_module(&self.net, [&self.peer], &ModuleId::new("pong"), Ping(self.sent));
        }
        Ok(())
    }

    /// upon PONG(n) from q do report
    #[upon(message)]
    fn pong(&mut self, _ctx: &mut Ctx<Self>, from: NodeId, pong: Pong) -> Handled {
        let _ = self.report.send(format!("pong {} from node {from}", pong.0));
        Ok(())
    }
}

/// Answers every `Ping(n)` with `Pong(n)` to the sender's `ping` module.
pub struct Ponger {
    /// This node's transport.
    pub net: ModuleId,
}

#[protocol]
impl Ponger {
    /// upon PING(n) from q do send PONG(n) to q
    #[upon(message)]
    fn ping(&mut self, ctx: &mut Ctx<Self>, from: NodeId, ping: Ping) -> Handled {
        ctx.send_to_module(&self.net, [&from], &ModuleId::new("ping"), Pong(ping.0));
        Ok(())
    }
}
