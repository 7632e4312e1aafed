#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

use mir_dsl::mir_runtime::stdevents::crypto::{self, SignRequest, SignResult};
use mir_dsl::mir_runtime::ModuleId;

struct Signed;

// One error: the stand-in impls do not add a conflict of their own, and the request compiles.
#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, ctx: &mut Ctx<Self>, _v: TestString) -> Handled {
        ctx.request(&ModuleId::new("crypto"), SignRequest::new(vec![]), Signed);
        Ok(())
    }

    #[upon(response)]
    fn first(&mut self, _ctx: &mut Ctx<Self>, _r: SignResult, _c: Signed) -> Handled { Ok(()) }

    #[upon(response)]
    fn second(&mut self, _ctx: &mut Ctx<Self>, _r: crypto::SignResult, _c: Signed) -> Handled { Ok(()) }
}

fn main() {}
