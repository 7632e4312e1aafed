#![allow(unused_imports, dead_code)]

use mir_dsl::mir_runtime::stdevents::{self, TestString, TestUint64};
use mir_dsl::mir_runtime::NodeId;
use mir_dsl::{protocol, Ctx, Handled};

struct P;

#[protocol("bcb")]
impl P {}

fn main() {}
