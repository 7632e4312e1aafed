#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

/// Another name for `TestString`: the macro cannot see through it, the compiler can.
type Text = TestString;

#[protocol]
impl P {
    #[upon(event)]
    fn by_name(&mut self, _ctx: &mut Ctx<Self>, _v: TestString) -> Handled { Ok(()) }

    #[upon(event)]
    fn by_alias(&mut self, _ctx: &mut Ctx<Self>, _v: Text) -> Handled { Ok(()) }
}

fn main() {}
