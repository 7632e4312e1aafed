#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// The main block has a mistake; its part, which needs to be listed by it, gives no error of its own.
#[protocol(parts(numbers))]
impl P {
    #[upon(event)]
    fn on(&self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }
}

#[protocol(part = numbers)]
impl P {
    #[upon(event)]
    fn number(&mut self, _ctx: &mut Ctx<Self>, _v: TestUint64) -> Handled { Ok(()) }
}

fn main() {}
