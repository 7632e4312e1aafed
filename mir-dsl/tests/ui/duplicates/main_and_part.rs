#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

// A message handled in the main block and again in a part: the part would never get it.
#[protocol(parts(more))]
impl P {
    #[upon(message)]
    fn in_main(&mut self, _ctx: &mut Ctx<Self>, _from: NodeId, _v: TestString) -> Handled { Ok(()) }
}

mod more {
    use super::*;

    #[protocol(part = more)]
    impl P {
        #[upon(message)]
        fn in_part(&mut self, _ctx: &mut Ctx<Self>, _from: NodeId, _v: TestString) -> Handled { Ok(()) }
    }
}

fn main() {}
