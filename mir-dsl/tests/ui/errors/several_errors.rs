#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// Every mistake is reported in one compilation, each at its own tokens.
#[protocol]
impl P {
    #[upon(event)]
    async fn one(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }

    #[upon(message)]
    fn two(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }

    #[upon(condition)]
    fn three(&mut self, _ctx: &mut Ctx<Self>) {}

    #[upon(teleport)]
    fn four(&mut self, _ctx: &mut Ctx<Self>) -> Handled { Ok(()) }
}

fn main() {}
