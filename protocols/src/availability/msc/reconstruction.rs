//! Batch reconstruction (part of [`Msc`]).
//!
//! ```text
//! upon ⟨RequestTransactions | cert⟩ do                     (cert was verified)
//!     unless its signers are distinct members of weak-quorum weight: answer that it is invalid
//!     for each batch ⟨id, signers⟩ of cert: look id up in the batch DB
//! upon the batch DB misses id do
//!     ask one signer: send [REQUEST-BATCH, id] to it; after fetch_timeout ask the next one
//! upon [PROVIDE-BATCH, id, txs] from p such that id is missing do
//!     if hash(hash(txs)) = id then store (id, txs); the batch is here
//!     (else p is faulty: drop it and keep waiting)
//! upon every batch of cert is here do
//!     trigger ⟨ProvideTransactions | the batches' transactions, in cert order⟩
//! upon [REQUEST-BATCH, id] from member q do
//!     if the batch DB has id: send [PROVIDE-BATCH, id, txs] to q
//! ```
//!
//! Signers are asked one at a time, starting at a position that depends on this node (so the
//! load spreads over the signers), moving to the next on every timeout, round and round until
//! the batch arrives or the instance is garbage-collected. A certificate has at least one correct
//! signer that stored the batch, so this ends as soon as the network lets one answer through.

use mir_dsl::{ensure, ignore, protocol, Ctx, Handled};
use mir_runtime::NodeId;

use super::super::batchdb::{LookupBatch, LookupBatchResponse, StoreBatch};
use super::super::{BatchId, Tx, TxId};
use super::{
    AfterHash, Fetch, FetchTimeout, Missing, Msc, ProvideBatchMessage, ProvideTransactions,
    RequestBatchMessage, RequestTransactions,
};

/// Looking up batch `index` of fetch `fetch` in the local batch DB.
#[derive(Debug)]
pub struct LocalLookup {
    fetch: u64,
    index: usize,
    signers: Vec<NodeId>,
}

/// Looking up a batch a peer asked for.
#[derive(Debug)]
pub struct ServeLookup {
    to: NodeId,
}

impl Msc {
    /// … if hash(hash(txs)) = id (see [`Msc::batch_hashed`]) then store (id, txs); the batch is
    /// here. Nothing waits for the store: the request goes with its origin unset, so the batch
    /// DB sends no answer (and logs a failure itself).
    pub(super) fn provided_hashed(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        batch_id: BatchId,
        id: BatchId,
        tx_ids: Vec<TxId>,
        txs: Vec<Tx>,
    ) -> Handled {
        ensure!(
            id == batch_id,
            "PROVIDE-BATCH from {from}: the transactions do not hash to the batch ID"
        );
        let Some(m) = self.missing.remove(&batch_id) else {
            return Ok(()); // another signer's copy arrived first
        };
        ctx.emit(&self.modules.batchdb, StoreBatch::new(batch_id, tx_ids, txs.clone(), self.epoch));
        for (fetch, index) in m.waiting {
            self.fill(ctx, fetch, index, txs.clone());
        }
        Ok(())
    }

    /// Batch `index` of fetch `fetch` is here; answers the fetch once all its batches are.
    fn fill(&mut self, ctx: &mut Ctx<Self>, fetch: u64, index: usize, txs: Vec<Tx>) {
        if let Some(f) = self.fetches.get_mut(&fetch) {
            f.batches[index] = Some(txs);
            self.answer_if_complete(ctx, fetch);
        }
    }

    /// Answers fetch `fetch` once all its batches are here (at once for the empty certificate).
    fn answer_if_complete(&mut self, ctx: &mut Ctx<Self>, fetch: u64) {
        if self.fetches.get(&fetch).is_some_and(|f| f.batches.iter().all(Option::is_some)) {
            let f = self.fetches.remove(&fetch).expect("present");
            let txs = f.batches.into_iter().flatten().flatten().collect();
            let to = f.origin.module.clone();
            ctx.emit(&to, ProvideTransactions { txs, error: None, origin: f.origin });
        }
    }

    /// Asks the next signer of missing batch `batch_id` and arms the timeout.
    fn ask_signer(&mut self, ctx: &mut Ctx<Self>, batch_id: &BatchId) {
        let Some(m) = self.missing.get_mut(batch_id) else {
            return;
        };
        self.next_attempt += 1;
        m.attempt = self.next_attempt;
        m.asked = (m.asked + 1) % m.signers.len();
        let signer = m.signers[m.asked].clone();
        let attempt = m.attempt;
        tracing::debug!(%signer, attempt, "asking a signer for a missing batch");
        ctx.send(&self.modules.net, [&signer], RequestBatchMessage { batch_id: batch_id.clone() });
        ctx.after(
            &self.modules.timer,
            self.params.fetch_timeout,
            FetchTimeout { batch_id: batch_id.clone(), attempt },
        );
    }
}

#[protocol(part = reconstruction)]
impl Msc {
    /// upon ⟨RequestTransactions | cert⟩ do look each batch up in the batch DB
    #[upon(event)]
    fn request_transactions(&mut self, ctx: &mut Ctx<Self>, req: RequestTransactions) -> Handled {
        if let Err(e) = self.check_structure(&req.cert) {
            // Certificates are to be verified before they are used; a bad one must not stop the
            // node (it may come from a faulty proposer), nor make it ask non-members, nor leave
            // the requester waiting: it is told.
            let to = req.origin.module.clone();
            ctx.emit(
                &to,
                ProvideTransactions {
                    txs: Vec::new(),
                    error: Some(format!("invalid certificate: {e}")),
                    origin: req.origin,
                },
            );
            ignore!("RequestTransactions with an invalid certificate: {e}");
        }
        let fetch = self.next_fetch;
        self.next_fetch += 1;
        self.fetches.insert(
            fetch,
            Fetch { origin: req.origin.clone(), batches: vec![None; req.cert.batches.len()] },
        );
        if req.cert.is_empty() {
            self.answer_if_complete(ctx, fetch);
            return Ok(());
        }
        for (index, b) in req.cert.batches.into_iter().enumerate() {
            ctx.request(
                &self.modules.batchdb,
                LookupBatch::new(b.batch_id),
                LocalLookup { fetch, index, signers: b.signers },
            );
        }
        Ok(())
    }

    /// … if found: the batch is here; else: fetch it from the signers
    #[upon(response)]
    fn local_lookup(
        &mut self,
        ctx: &mut Ctx<Self>,
        res: LookupBatchResponse,
        c: LocalLookup,
    ) -> Handled {
        if let Some(txs) = res.txs {
            self.fill(ctx, c.fetch, c.index, txs);
            return Ok(());
        }
        if let Some(m) = self.missing.get_mut(&res.batch_id) {
            m.waiting.push((c.fetch, c.index)); // already being fetched
            return Ok(());
        }
        let signers = c.signers;
        let start = self.members().iter().position(|n| *n == self.me).unwrap_or(0);
        self.missing.insert(
            res.batch_id.clone(),
            Missing {
                // `ask_signer` moves to the next before asking: start one before our position.
                asked: (start + signers.len() - 1) % signers.len(),
                signers,
                attempt: 0,
                waiting: vec![(c.fetch, c.index)],
            },
        );
        self.ask_signer(ctx, &res.batch_id);
        Ok(())
    }

    /// upon a fetch timed out with the batch still missing do ask the next signer
    #[upon(event)]
    fn fetch_timeout(&mut self, ctx: &mut Ctx<Self>, t: FetchTimeout) -> Handled {
        if self.missing.get(&t.batch_id).is_some_and(|m| m.attempt == t.attempt) {
            self.ask_signer(ctx, &t.batch_id);
        }
        Ok(())
    }

    /// upon [PROVIDE-BATCH, id, txs] from p such that id is missing do check it
    #[upon(message)]
    fn on_provide_batch(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        msg: ProvideBatchMessage,
    ) -> Handled {
        ensure!(self.membership.contains(&from), "PROVIDE-BATCH from non-member {from}");
        ensure!(
            self.missing.contains_key(&msg.batch_id),
            "PROVIDE-BATCH from {from} for a batch not (or no longer) missing"
        );
        if let Err(e) = self.batch_within_limits(&msg.txs) {
            ignore!("PROVIDE-BATCH from {from}: the batch has {e}");
        }
        self.hash_batch(ctx, msg.txs, AfterHash::Provided { from, batch_id: msg.batch_id });
        Ok(())
    }

    /// upon [REQUEST-BATCH, id] from member q do look it up …
    #[upon(message)]
    fn on_request_batch(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        msg: RequestBatchMessage,
    ) -> Handled {
        ensure!(self.membership.contains(&from), "REQUEST-BATCH from non-member {from}");
        ctx.request(
            &self.modules.batchdb,
            LookupBatch::new(msg.batch_id),
            ServeLookup { to: from },
        );
        Ok(())
    }

    /// … if the batch DB has it: send [PROVIDE-BATCH, id, txs] to q
    #[upon(response)]
    fn serve_lookup(
        &mut self,
        ctx: &mut Ctx<Self>,
        res: LookupBatchResponse,
        c: ServeLookup,
    ) -> Handled {
        let Some(txs) = res.txs else {
            tracing::debug!(to = %c.to, "asked for a batch this node does not have");
            return Ok(());
        };
        ctx.send(&self.modules.net, [&c.to], ProvideBatchMessage { batch_id: res.batch_id, txs });
        Ok(())
    }
}
