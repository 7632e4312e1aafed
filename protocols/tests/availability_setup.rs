//! Setting the layer up: bad configuration is a clear error; peers' messages to local services are
//! refused and counted, never fatal.

mod common;

#[allow(unused_imports)]
use common::*;

#[test]
fn bad_configuration_gets_a_clear_error() {
    let b = || Node::builder(nodes()[0].clone());
    let mut cfg = config();
    cfg.mempool.capacity_txs = 10;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("mempool: capacity_txs (10) must hold at least one full batch"), "{e}");
    let mut cfg = config();
    cfg.msc.max_txs_in_batch = 10;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("signers would refuse the mempool's full batches"), "{e}");
    let mut cfg = config();
    cfg.msc.fetch_timeout = Duration::ZERO;
    let e = availability::add_to(b(), nodes()[0].clone(), &cfg).err().unwrap();
    assert!(e.contains("fetch_timeout"), "{e}");
}

#[test]
fn peer_messages_to_local_services_are_refused_and_counted_not_fatal() {
    use mir_dsl::mir_runtime::stdevents::crypto::HashRequest;
    let mut c = cluster(10, config());
    // A peer names the hasher, the crypto module, the timer and the factory itself.
    let evil = ["hasher", "crypto", "timer", "availability"]
        .map(|m| received(1, m, HashRequest::new(vec![vec![b"x".to_vec()]])));
    c.sim.inject(&nodes()[0], evil.to_vec()).unwrap();
    c.run();
    let stats = c.sim.stats(&nodes()[0]).unwrap();
    for m in ["hasher", "crypto", "timer"] {
        assert_eq!(stats.module(m).unwrap().messages_refused, 1, "{m}");
    }
    // The node still works.
    let batch = txs("quinn", 0..3);
    let cert = make_cert(&mut c, 0, batch);
    assert_eq!(cert.batches.len(), 1);
}
