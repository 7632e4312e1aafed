#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// The macro cannot know what a type alias stands for; the compiler checks the return type and
// reports it on the signature.
#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Result<(), String> { Ok(()) }
}

fn main() {}
