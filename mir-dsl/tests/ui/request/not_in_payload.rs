#![allow(unused_imports, dead_code)]

use mir_dsl::{protocol, Ctx, Handled};

struct P;

/// Has the derives of an event type but was never listed in `payload!`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Forgotten(u64);

#[protocol]
impl P {
    #[upon(event)]
    fn on(&mut self, _ctx: &mut Ctx<Self>, _v: Forgotten) -> Handled { Ok(()) }
}

fn main() {}
