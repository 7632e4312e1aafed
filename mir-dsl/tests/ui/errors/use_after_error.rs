#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::crypto::{SignRequest, SignResult};
use mir_dsl::mir_runtime::stdevents::TestString;
use mir_dsl::mir_runtime::ModuleId;
use mir_dsl::{protocol, Ctx, DslModule, Handled};

struct P;

struct Signed;

// One mistake (a reference parameter) gives one error: the protocol is still usable below, so
// `ctx.request` and `DslModule::new` do not add errors of their own.
#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, ctx: &mut Ctx<Self>, _v: &TestString) -> Handled {
        ctx.request(&ModuleId::new("crypto"), SignRequest::new(vec![]), Signed);
        Ok(())
    }

    #[upon(response)]
    fn signed(&mut self, _ctx: &mut Ctx<Self>, _r: SignResult, _c: Signed) -> Handled { Ok(()) }
}

fn main() {
    let _m = DslModule::new(P);
}
