#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// Two errors, both about the `_`: the macro's, and rustc's own about the signature (the macro
// leaves the user's signature as written).
#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: _) -> Handled { Ok(()) }
}

fn main() {}
