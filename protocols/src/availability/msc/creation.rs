//! Certificate creation (part of [`Msc`]).
//!
//! ```text
//! source side:
//! upon ⟨RequestCert⟩ do queue it; if idle: ask the mempool for a batch
//! upon ⟨NewBatch | ids, txs⟩ do
//!     if empty: answer every queued request with the empty certificate
//!     else: id := hash(ids); send [REQUEST-SIG, r, txs] to all members
//! upon [SIG, r, σ] from p such that p is a member, r is current, p not counted do
//!     (a SIG for an earlier, complete certificate is expected: it is dropped quietly)
//!     if verifysig(p, (instance, BATCH_STORED, id), σ) then sigs[p] := σ
//! upon sig_timeout passes with sigs not yet a weak quorum do
//!     send [REQUEST-SIG, r, txs] again to the members that have not answered
//! upon weight(sigs) ≥ f + 1 do
//!     answer the oldest queued request with ⟨id, sigs⟩; if more are queued: ask for a batch
//!
//! signer side:
//! upon [REQUEST-SIG, r, txs] from member q do
//!     if r was signed for q already: send [SIG, r, σ] to q again (the first may have been lost)
//!     else if q asked fewer than max_requests times (refused requests count):
//!     if a transaction lies outside its client's window (the mempool's): refuse
//!     id := hash(hash(txs)); store (id, txs) in the batch DB, kept for this epoch
//!     σ := sign(instance, BATCH_STORED, id); send [SIG, r, σ] to q
//! ```

use mir_dsl::{ensure, fatal, ignore, protocol, Ctx, Handled};
use mir_runtime::stdevents::crypto::{HashResult, SigVerified, SignRequest, SignResult, VerifySig};
use mir_runtime::NodeId;

use super::super::batchdb::{BatchStored, StoreBatch};
use super::super::mempool::{CheckWindow, NewBatch, RequestBatch, WindowChecked};
use super::super::{batch_id_request, stored_statement, BatchId, Buckets, Cert, Tx, TxId};
use super::{
    batch_cert, AfterHash, Collecting, Msc, NewCert, RequestCert, RequestSigMessage, SigMessage,
    SigTimeout, SignFor, SignerWindow,
};

/// Waiting for the mempool's batch.
#[derive(Debug)]
pub struct BatchForCert;

/// Hashing the batch ID of a batch to certify.
#[derive(Debug)]
pub struct CertBatchId {
    txs: Vec<Tx>,
    buckets: Option<Buckets>,
}

/// Checking `from`'s signature for certificate `req_id`.
#[derive(Debug)]
pub struct SigChecked {
    from: NodeId,
    req_id: u64,
    signature: Vec<u8>,
}

/// Signer: storing the batch.
#[derive(Debug)]
pub struct SignerStored {
    from: NodeId,
    req_id: u64,
    batch_id: Vec<u8>,
    buckets: Option<Buckets>,
    /// The batch's bytes, counted against its source's budget (given back if not stored).
    bytes: usize,
}

/// Signer: signing the statement.
#[derive(Debug)]
pub struct SignerSigned {
    from: NodeId,
    req_id: u64,
}

impl Msc {
    /// Asks the mempool for the next batch, unless a batch is already asked for, being hashed or
    /// being certified, or nobody waits for a certificate.
    ///
    /// After `max_requests` certificates in this instance, signers refuse to sign more for this
    /// node: further requests get the empty certificate at once (with a warning).
    fn ask_mempool(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        if self.asked_mempool || self.collecting.is_some() || self.requests.is_empty() {
            return Ok(());
        }
        if self.next_req_id >= self.params.max_requests {
            tracing::warn!(
                epoch = self.epoch,
                max_requests = self.params.max_requests,
                "certificate limit of this epoch reached; answering with the empty certificate"
            );
            while !self.requests.is_empty() {
                self.answer(ctx, Cert::default())?;
            }
            return Ok(());
        }
        self.asked_mempool = true;
        let buckets = self.requests.front().and_then(|(_, b)| b.clone());
        let req = RequestBatch::new(self.epoch).in_buckets(buckets);
        ctx.request(&self.modules.mempool, req, BatchForCert);
        Ok(())
    }

    /// Sends the batch being certified to every member whose signature is not in (or being
    /// checked), and arms the retry.
    fn ask_for_sigs(&mut self, ctx: &mut Ctx<Self>) {
        let members = self.members();
        let Some(c) = self.collecting.as_mut() else {
            return;
        };
        c.attempt += 1;
        let silent: Vec<NodeId> = members
            .into_iter()
            .filter(|m| !c.sigs.contains_key(m) && !c.checking.contains(m))
            .collect();
        let (req_id, attempt) = (c.req_id, c.attempt);
        if attempt > 1 {
            tracing::debug!(req_id, attempt, silent = silent.len(), "asking again for signatures");
        }
        let msg = RequestSigMessage { req_id, txs: c.txs.clone(), buckets: c.buckets.clone() };
        ctx.send(&self.modules.net, &silent, msg);
        ctx.after(&self.modules.timer, self.params.sig_timeout, SigTimeout { req_id, attempt });
    }

    fn answer(&mut self, ctx: &mut Ctx<Self>, cert: Cert) -> Handled {
        let Some((origin, _)) = self.requests.pop_front() else {
            fatal!("a certificate was made with no request waiting for it");
        };
        let to = origin.module.clone();
        ctx.emit(&to, NewCert { cert, origin });
        Ok(())
    }
}

impl Msc {
    /// Gives `bytes` back to `from`'s budget (a batch counted but not stored).
    fn give_back(&mut self, from: &NodeId, bytes: usize) {
        if let Some(b) = self.stored_bytes.get_mut(from) {
            *b = b.saturating_sub(bytes);
        }
    }

    /// signer: … id := hash(hash(txs)) (see [`Msc::batch_hashed`]); store (id, txs) in the
    /// batch DB, kept for this epoch
    pub(super) fn signer_hashed(
        &mut self,
        ctx: &mut Ctx<Self>,
        to: SignFor,
        batch_id: BatchId,
        tx_ids: Vec<TxId>,
        txs: Vec<Tx>,
    ) -> Handled {
        let bytes = super::super::total_bytes(&txs);
        let store = StoreBatch::new(batch_id.clone(), tx_ids, txs, self.epoch);
        let SignFor { from, req_id, buckets } = to;
        let stored = SignerStored { from, req_id, batch_id, buckets, bytes };
        ctx.request(&self.modules.batchdb, store, stored);
        Ok(())
    }
}

#[protocol(part = creation)]
impl Msc {
    /// upon ⟨RequestCert⟩ do queue it; if idle: ask the mempool for a batch
    #[upon(event)]
    fn request_cert(&mut self, ctx: &mut Ctx<Self>, req: RequestCert) -> Handled {
        self.requests.push_back((req.origin, req.buckets));
        self.ask_mempool(ctx)?;
        Ok(())
    }

    /// upon ⟨NewBatch | ids, txs⟩ do …
    #[upon(response)]
    fn new_batch(&mut self, ctx: &mut Ctx<Self>, batch: NewBatch, _c: BatchForCert) -> Handled {
        if batch.txs.is_empty() {
            self.asked_mempool = false;
            // … if empty: answer every queued request with the empty certificate
            while !self.requests.is_empty() {
                self.answer(ctx, Cert::default())?;
            }
            return Ok(());
        }
        // … else: id := hash(ids)
        ctx.request(
            &self.modules.hasher,
            batch_id_request(&batch.tx_ids),
            CertBatchId {
                txs: batch.txs,
                buckets: self.requests.front().and_then(|(_, b)| b.clone()),
            },
        );
        Ok(())
    }

    /// … send [REQUEST-SIG, r, txs] to all members
    #[upon(response)]
    fn cert_batch_id(&mut self, ctx: &mut Ctx<Self>, h: HashResult, c: CertBatchId) -> Handled {
        let Some(batch_id) = h.digests.into_iter().next() else {
            fatal!("the hasher returned no digest")
        };
        let req_id = self.next_req_id;
        self.next_req_id += 1;
        // The batch is now being collected: only now may the next one be asked for (asking in
        // between would start a second collection over this one).
        self.asked_mempool = false;
        self.collecting = Some(Collecting {
            req_id,
            batch_id,
            txs: c.txs,
            buckets: c.buckets,
            attempt: 0,
            sigs: Default::default(),
            checking: Default::default(),
        });
        self.ask_for_sigs(ctx);
        Ok(())
    }

    /// upon sig_timeout passes with sigs not yet a weak quorum do ask the silent members again
    #[upon(event)]
    fn sig_timeout(&mut self, ctx: &mut Ctx<Self>, t: SigTimeout) -> Handled {
        if self.collecting.as_ref().is_some_and(|c| c.req_id == t.req_id && c.attempt == t.attempt)
        {
            self.ask_for_sigs(ctx);
        }
        Ok(())
    }

    /// upon [SIG, r, σ] from p such that p is a member, r is current, p not counted do verify
    #[upon(message)]
    fn on_sig(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: SigMessage) -> Handled {
        ensure!(self.membership.contains(&from), "SIG from non-member {from}");
        let current = self.collecting.as_ref().map(|c| c.req_id);
        if current != Some(msg.req_id) {
            ensure!(
                msg.req_id < self.next_req_id,
                "SIG from {from} for request {}, which this node never made",
                msg.req_id
            );
            // A signature that came after the certificate was complete: only f + 1 are needed,
            // the others arrive late in every run. Expected, not bad input.
            tracing::trace!(%from, req_id = msg.req_id, "late SIG for a complete certificate");
            return Ok(());
        }
        let Some(c) = self.collecting.as_mut() else { fatal!("checked above") };
        ensure!(
            !c.sigs.contains_key(&from) && c.checking.insert(from.clone()),
            "repeated SIG from {from}"
        );
        let statement = stored_statement(&self.instance, &c.batch_id, c.buckets.as_ref());
        ctx.request(
            &self.modules.crypto,
            VerifySig::new(statement, msg.signature.clone(), from.clone()),
            SigChecked { from, req_id: msg.req_id, signature: msg.signature },
        );
        Ok(())
    }

    /// … then sigs[p] := σ
    #[upon(response)]
    fn sig_checked(&mut self, _ctx: &mut Ctx<Self>, v: SigVerified, c: SigChecked) -> Handled {
        let Some(col) = self.collecting.as_mut().filter(|col| col.req_id == c.req_id) else {
            return Ok(()); // the certificate was completed meanwhile
        };
        col.checking.remove(&c.from);
        if let Some(e) = v.error {
            ignore!("invalid SIG from {}: {e}", c.from);
        }
        col.sigs.insert(c.from, c.signature);
        Ok(())
    }

    /// upon weight(sigs) ≥ f + 1 do answer the oldest request; if more are queued: next batch
    #[upon(condition)]
    fn enough_sigs(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        let Some(col) = &self.collecting else {
            return Ok(());
        };
        match self.membership.is_weak_quorum(col.sigs.keys()) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => fatal!("collected signatures: {e}"),
        }
        let col = self.collecting.take().expect("checked above");
        let cert = Cert { batches: vec![batch_cert(col.batch_id, col.buckets, &col.sigs)] };
        self.answer(ctx, cert)?;
        self.ask_mempool(ctx)?;
        Ok(())
    }

    /// signer: upon [REQUEST-SIG, r, txs] from member q … do hash the batch
    #[upon(message)]
    fn on_request_sig(
        &mut self,
        ctx: &mut Ctx<Self>,
        from: NodeId,
        msg: RequestSigMessage,
    ) -> Handled {
        ensure!(self.membership.contains(&from), "REQUEST-SIG from non-member {from}");
        if let Err(e) = self.batch_within_limits(&msg.txs) {
            ignore!("REQUEST-SIG from {from}: the batch has {e}");
        }
        if let Some(b) = &msg.buckets {
            if let Err(e) = b.validate() {
                ignore!("REQUEST-SIG from {from}: {e}");
            }
            ensure!(
                b.holds_all(&msg.txs),
                "REQUEST-SIG from {from}: a transaction outside the batch's buckets"
            );
        }
        let mine = self.signed.entry(from.clone()).or_default();
        match mine.get(&msg.req_id) {
            Some(Some(signature)) => {
                // Asked again: our SIG may have been lost. Same answer, no new work.
                let signature = signature.clone();
                ctx.send(&self.modules.net, [&from], SigMessage { req_id: msg.req_id, signature });
                return Ok(());
            }
            Some(None) => return Ok(()), // being signed; the answer will go out
            None => {}
        }
        let refused = self.refused.get(&from).copied().unwrap_or(0);
        ensure!(
            (mine.len() as u64 + refused) < self.params.max_requests,
            "REQUEST-SIG from {from}: it already asked {} times in this epoch",
            self.params.max_requests
        );
        let bytes = super::super::total_bytes(&msg.txs);
        let stored = self.stored_bytes.entry(from.clone()).or_default();
        ensure!(
            *stored + bytes <= self.params.max_bytes_per_source,
            "REQUEST-SIG from {from}: {} more bytes would pass its {}-byte budget for this epoch",
            bytes,
            self.params.max_bytes_per_source
        );
        *stored += bytes;
        mine.insert(msg.req_id, None);
        // Every transaction in its client's window, as this node's mempool knows them?
        let check = CheckWindow::new(self.epoch, &msg.txs);
        let next = SignerWindow { from, req_id: msg.req_id, buckets: msg.buckets, txs: msg.txs };
        ctx.request(&self.modules.mempool, check, next);
        Ok(())
    }

    /// signer: … if every transaction lies in its client's window: hash the batch; else refuse
    /// (the request may come again: the window moves at the next epoch)
    #[upon(response)]
    fn signer_window(&mut self, ctx: &mut Ctx<Self>, w: WindowChecked, c: SignerWindow) -> Handled {
        if let Some((client, n)) = w.outside {
            if let Some(m) = self.signed.get_mut(&c.from) {
                m.remove(&c.req_id);
            }
            self.give_back(&c.from, super::super::total_bytes(&c.txs));
            *self.refused.entry(c.from.clone()).or_default() += 1;
            ignore!(
                "REQUEST-SIG from {}: transaction {n} of client {} is outside its window",
                c.from,
                client.0
            );
        }
        let then = AfterHash::Sign(SignFor { from: c.from, req_id: c.req_id, buckets: c.buckets });
        self.hash_batch(ctx, c.txs, then);
        Ok(())
    }

    /// signer: … if stored then σ := sign(instance, BATCH_STORED, id)
    #[upon(response)]
    fn signer_stored(&mut self, ctx: &mut Ctx<Self>, s: BatchStored, c: SignerStored) -> Handled {
        if let Some(e) = s.error {
            // Never vouch for a batch we do not hold; forget the request so it may be retried,
            // and give its bytes back to the source's budget (a retry counts them again).
            if let Some(m) = self.signed.get_mut(&c.from) {
                m.remove(&c.req_id);
            }
            self.give_back(&c.from, c.bytes);
            ignore!("REQUEST-SIG from {}: the batch was not stored: {e}", c.from);
        }
        let statement = stored_statement(&self.instance, &c.batch_id, c.buckets.as_ref());
        ctx.request(
            &self.modules.crypto,
            SignRequest::new(statement),
            SignerSigned { from: c.from, req_id: c.req_id },
        );
        Ok(())
    }

    /// signer: … send [SIG, r, σ] to q
    #[upon(response)]
    fn signer_signed(&mut self, ctx: &mut Ctx<Self>, s: SignResult, c: SignerSigned) -> Handled {
        if let Some(slot) = self.signed.get_mut(&c.from).and_then(|m| m.get_mut(&c.req_id)) {
            *slot = Some(s.signature.clone());
        }
        ctx.send(
            &self.modules.net,
            [&c.from],
            SigMessage { req_id: c.req_id, signature: s.signature },
        );
        Ok(())
    }
}
