#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::TestString;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

#[protocol]
impl P {
    #[upon(event)]
    fn on() -> Handled { Ok(()) }
}

fn main() {}
