//! The batch database: its byte capacity, and retention until garbage collection.

mod common;

#[allow(unused_imports)]
use common::*;

#[test]
fn the_batch_db_holds_at_most_its_capacity() {
    use mir_dsl::mir_runtime::stdevents::GarbageCollect;
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchdb::{BatchDb, BatchStored, StoreBatch};
    let mut db = mir_dsl::DslModule::new(BatchDb::new().with_capacity_bytes(100));
    let me = ModuleId::new("batchdb");
    type Db = mir_dsl::DslModule<BatchDb>;
    let store = |db: &mut Db, i: u8, n: u64, r: u64| {
        // n transactions of 1 + 8 + 30 = 39 bytes.
        let txs = (0..n).map(|k| Tx::new("c", k, vec![0u8; 30])).collect();
        let out = apply(
            db,
            me.clone(),
            vec![Event::new("x", "batchdb", asked(StoreBatch::new(vec![i; 32], vec![], txs, r)))],
        )
        .unwrap();
        out[0].get::<BatchStored>().unwrap().error.clone()
    };
    assert_eq!(store(&mut db, 1, 2, 1), None, "78 bytes");
    let full = store(&mut db, 2, 1, 1).expect("117 > 100");
    assert!(full.contains("the batch DB is full (78 of 100 bytes held"), "{full}");
    assert_eq!(store(&mut db, 1, 2, 2), None, "stored again: no new bytes");
    apply(
        &mut db,
        me.clone(),
        vec![Event::new("x", "batchdb", GarbageCollect { retention_index: 3 })],
    )
    .unwrap();
    assert_eq!(db.protocol().bytes(), 0);
    assert_eq!(store(&mut db, 2, 1, 3), None, "room again after garbage collection");
}

#[test]
fn the_batch_db_keeps_batches_until_their_retention_index_is_collected() {
    use mir_dsl::mir_runtime::stdevents::GarbageCollect;
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchdb::{
        BatchDb, BatchStored, LookupBatch, LookupBatchResponse, StoreBatch,
    };
    let mut db = mir_dsl::DslModule::new(BatchDb::new());
    let me = ModuleId::new("batchdb");
    let mut call = |p: mir_dsl::mir_runtime::Payload| {
        apply(&mut db, me.clone(), vec![Event::new("x", "batchdb", p)]).unwrap()
    };
    let id = |i: u8| vec![i; 32];
    let store =
        |i: u8, r: u64| asked(StoreBatch::new(id(i), vec![], txs("db", 0..i as u64), r)).into();
    let found = |out: Vec<Event>| out[0].get::<LookupBatchResponse>().unwrap().txs.is_some();
    call(store(1, 1));
    call(store(2, 2));
    call(store(3, 3));
    call(store(1, 5)); // stored again for longer: kept until 5
    call(GarbageCollect { retention_index: 3 }.into());
    assert!(found(call(LookupBatch::new(id(1)).into())), "re-stored with index 5");
    assert!(!found(call(LookupBatch::new(id(2)).into())), "collected");
    assert!(found(call(LookupBatch::new(id(3)).into())), "index 3 is kept by a collection at 3");
    // Below the collected index: not kept, and the answer says so.
    let out = call(store(4, 2));
    let e = out[0].get::<BatchStored>().unwrap().error.clone().unwrap();
    assert!(e.contains("below the garbage-collection index"), "{e}");
    assert!(!found(call(LookupBatch::new(id(4)).into())));
    call(GarbageCollect { retention_index: 6 }.into());
    assert!(!found(call(LookupBatch::new(id(1)).into())));
}

/// A batch logged before a restart is stored again even over the capacity: the node vouched for
/// it (the WAL holds what was admitted under the capacity, and more only until garbage
/// collection).
#[test]
fn logged_batches_come_back_even_over_the_capacity() {
    use mir_dsl::mir_runtime::testing::apply;
    use protocols::availability::batchdb::{
        BatchDb, BatchRecord, LookupBatch, LookupBatchResponse,
    };
    let mut db = mir_dsl::DslModule::new(BatchDb::new().with_capacity_bytes(100));
    let me = ModuleId::new("batchdb");
    let mut call = |p: mir_dsl::mir_runtime::Payload| {
        apply(&mut db, me.clone(), vec![Event::new("iss", "batchdb", p)]).unwrap()
    };
    for i in 1..=3u8 {
        // 2 transactions of 39 bytes each: 234 bytes in all, over the 100 of the capacity.
        let txs = (0..2).map(|k| Tx::new("c", k, vec![i; 30])).collect();
        call(BatchRecord { batch_id: vec![i; 32], txs, retention_index: 1 }.into());
    }
    for i in 1..=3u8 {
        let out = call(LookupBatch::new(vec![i; 32]).into());
        assert!(out[0].get::<LookupBatchResponse>().unwrap().txs.is_some(), "batch {i}");
    }
}
