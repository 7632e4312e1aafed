#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

#[protocol(parts(extra))]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }
}

mod more {
    use super::*;

    // The part has a mistake; the main block, which calls into it, gives no error of its own.
    #[protocol(part = extra)]
    impl P {
        #[upon(event)]
        fn on_number(&self, _ctx: &mut Ctx<Self>, _v: TestUint64) -> Handled { Ok(()) }
    }
}

fn main() {}
