#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{TestString, TestUint64};
use mir_dsl::{protocol, Ctx, DslModule, Handled};

struct P;

// A mistake in `#[protocol(…)]` gives one error: the block still stands in as the main block
// (`DslModule::new` compiles) that lists its part (the part compiles).
#[protocol(parts(numbers) extra)]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }
}

#[protocol(part = numbers)]
impl P {
    #[upon(event)]
    fn number(&mut self, _ctx: &mut Ctx<Self>, _v: TestUint64) -> Handled { Ok(()) }
}

fn main() {
    let _m = DslModule::new(P);
}
