#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// One error, although the main block calls the part in several places.
#[protocol(parts(numbers, missing))]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }
}

#[protocol(part = numbers)]
impl P {
    #[upon(event)]
    fn number(&mut self, _ctx: &mut Ctx<Self>, _v: TestUint64) -> Handled { Ok(()) }
}

fn main() {}
