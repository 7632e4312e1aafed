#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// Parameter types are checked by the compiler, on the parameter.
#[protocol]
impl P {
    #[upon(message)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _from: u64, _v: TestString) -> Handled { Ok(()) }
}

fn main() {}
