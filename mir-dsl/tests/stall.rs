//! A simulation that runs out of things to do while a module still waits for an answer ends with
//! a "stalled" error naming the node, the module and the request, instead of looking finished.

use std::time::Duration;

use mir_dsl::prelude::*;
use mir_runtime::sim::{SimConfig, SimError, Simulation};
use mir_runtime::stdevents::crypto::{SignRequest, SignResult};
use mir_runtime::stdmodules::{Factory, NullModule};
use mir_runtime::Node;

/// Asks `crypto` to sign at start.
struct Asker;

#[derive(Debug)]
struct Waiting;

#[protocol]
impl Asker {
    #[upon(event)]
    fn init(&mut self, ctx: &mut Ctx<Self>, _i: Init) -> Handled {
        ctx.request(&ModuleId::new("crypto"), SignRequest::new(vec![b"x".to_vec()]), Waiting);
        Ok(())
    }

    #[upon(response)]
    fn signed(&mut self, _ctx: &mut Ctx<Self>, _r: SignResult, _c: Waiting) -> Handled {
        Ok(())
    }
}

#[test]
fn a_request_nobody_answers_is_reported_as_a_stall() {
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    // "crypto" drops everything: the request is never answered.
    sim.add_node(
        Node::builder("0").passive("asker", DslModule::new(Asker)).passive("crypto", NullModule),
    )
    .unwrap();
    let err = sim.run_until_idle(Duration::from_secs(10)).unwrap_err();
    let SimError::Stalled { waiting, .. } = &err else { panic!("{err}") };
    assert_eq!(waiting.len(), 1);
    assert_eq!((waiting[0].0.as_str(), waiting[0].1.as_str()), ("0", "asker"));
    assert!(
        err.to_string()
            .contains("node 0 module asker: mir.crypto.SignRequest #0 has no response yet"),
        "{err}"
    );
}

#[test]
fn a_stall_inside_a_factory_names_the_submodule() {
    let mut sim = Simulation::new(SimConfig::with_seed(1));
    let factory =
        Factory::of(|_id, _p: mir_runtime::stdevents::TestUint64| Ok(DslModule::new(Asker)));
    sim.add_node(Node::builder("0").passive("f", factory).passive("crypto", NullModule)).unwrap();
    let new = mir_runtime::stdevents::NewSubmodule {
        id: ModuleId::new("f/7"),
        params: mir_runtime::stdevents::TestUint64(0).into(),
        retention_index: 0,
    };
    sim.inject(&NodeId::new("0"), vec![mir_runtime::Event::new("@node", "f", new)]).unwrap();
    let err = sim.run_until_idle(Duration::from_secs(10)).unwrap_err().to_string();
    assert!(err.contains("module f: f/7: mir.crypto.SignRequest #0 has no response yet"), "{err}");
}
