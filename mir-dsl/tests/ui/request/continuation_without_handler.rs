#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

use mir_dsl::mir_runtime::stdevents::crypto::{Origin, SignRequest, SignResult};
use mir_dsl::mir_runtime::ModuleId;

struct Signed;
struct SignedAgain;
struct Forgotten;

#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, ctx: &mut Ctx<Self>, v: TestString) -> Handled {
        let req = SignRequest { data: vec![v.0.into_bytes()], domain: None, origin: Origin { module: ModuleId::node(), id: 0 } };
        ctx.request(&ModuleId::new("crypto"), req, Forgotten);
        Ok(())
    }

    #[upon(response)]
    fn signed(&mut self, _ctx: &mut Ctx<Self>, _r: SignResult, _c: Signed) -> Handled { Ok(()) }

    #[upon(response)]
    fn signed_again(&mut self, _ctx: &mut Ctx<Self>, _r: SignResult, _c: SignedAgain) -> Handled { Ok(()) }
}

fn main() {}
