//! # Signed Echo Broadcast (BCB)
//!
//! Byzantine consistent broadcast with a designated sender `s` (the *leader*), for `n ≥ 3f + 1`
//! nodes by weight. Reiter, "Secure agreement protocols", CCS '94; the "Signed Echo Broadcast" of
//! Cachin, Guerraoui and Rodrigues, *Introduction to Reliable and Secure Distributed
//! Programming*, 2nd ed.; Mir's `pkg/bcb`.
//!
//! **Guarantees.** *Validity*: if the leader is correct, every correct node delivers its message.
//! *Consistency*: no two correct nodes deliver different messages. *Integrity*: a node delivers at
//! most once, and only what the leader broadcast if the leader is correct.
//!
//! **Phases.**
//! 1. SEND: the leader sends its message `m` to all.
//! 2. ECHO: each node signs `(instance, ECHO, m)` for the first `m` it gets from the leader and
//!    sends the signature back to the leader.
//! 3. FINAL: once the leader holds valid echo signatures of a strong quorum (weight >
//!    (n + f) / 2), it sends `m` with those signatures to all.
//! 4. DELIVER: a node that gets a FINAL with valid signatures of a strong quorum of **distinct**
//!    members delivers `m`.
//!
//! Two strong quorums intersect in a correct node, which signs only one `m` per instance: hence
//! consistency.
//!
//! **Differences from Mir.** A FINAL whose signer list repeats a signer, names a non-member, or
//! lacks weight is rejected before any signature is checked (Mir counted `len(signers)`, so one
//! valid echo repeated `(n+f)/2 + 1` times was accepted). A bad ECHO from `p` no longer blocks a
//! later good one from `p`. A broadcast request to a node that is not the leader (or a second
//! one) is refused with [`BroadcastRefused`] to the requester instead of crashing the node. Signed
//! data is framed unambiguously by the crypto module.
//!
//! **Pseudocode** (each handler below carries its lines; messages are named as in the paper:
//! [`Send`], [`Echo`], [`Final`]):
//!
//! ```text
//! upon ⟨bcb, Broadcast | m⟩ do                                      // only s
//!     send [SEND, m] to all
//! upon [SEND, m] from s such that ¬sentecho do
//!     sentecho := true; σ := sign(bcb‖ECHO‖m); send [ECHO, m, σ] to s
//! upon [ECHO, m, σ] from p do                                        // only s
//!     if echos[p] = ⊥ ∧ verifysig(p, bcb‖ECHO‖m, σ) then echos[p] := σ
//! upon exists m ≠ ⊥ such that #echos > (N + f)/2 ∧ ¬sentfinal do     // only s
//!     sentfinal := true; send [FINAL, m, Σ] to all
//! upon [FINAL, m, Σ] from p do
//!     if #{p | Σ[p] ≠ ⊥ ∧ verifysig(p, bcb‖ECHO‖m, Σ[p])} > (N + f)/2 ∧ ¬delivered then
//!         delivered := true; trigger ⟨bcb, Deliver | s, m⟩
//! ```

use std::collections::{BTreeMap, BTreeSet};

use mir_dsl::prelude::*;
use mir_runtime::stdevents::crypto::{
    SigCheck, SigVerified, SignRequest, SignResult, SigsVerified, VerifySig, VerifySigs,
};
use serde::{Deserialize, Serialize};

// ---- Events (local) ----

/// ⟨bcb, Broadcast | m⟩: asks the leader to broadcast `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRequest {
    /// The message.
    pub data: Vec<u8>,
}

/// ⟨bcb, Deliver | s, m⟩: `data` is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliver {
    /// The instance.
    pub instance: Vec<u8>,
    /// The delivered message.
    pub data: Vec<u8>,
}

/// Answer to a [`BroadcastRequest`] this node cannot serve (it is not the leader, or it already
/// broadcast in this instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastRefused {
    /// Why.
    pub reason: String,
}

// ---- Messages (between nodes), named as in the paper ----

/// [SEND, m].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// The message.
    pub data: Vec<u8>,
}

/// [ECHO, m, σ] (m is implied: the leader checks σ against its own m).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The echo signature.
    pub signature: Vec<u8>,
}

/// [FINAL, m, Σ].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Final {
    /// The message.
    pub data: Vec<u8>,
    /// The signers, one per signature.
    pub signers: Vec<NodeId>,
    /// Their echo signatures.
    pub signatures: Vec<Vec<u8>>,
}

/// Parameters of one BCB instance made by a [`factory`]: who leads it and its number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BcbInstance {
    /// The instance's leader.
    pub leader: NodeId,
    /// The instance number (its signatures are bound to it).
    pub instance: u64,
}

payload!(
    BcbInstance = "bcb.Instance",
    BroadcastRequest = "bcb.BroadcastRequest",
    Deliver = "bcb.Deliver",
    BroadcastRefused = "bcb.BroadcastRefused",
    Send = "bcb.Send",
    Echo = "bcb.Echo",
    Final = "bcb.Final",
);

// ---- Continuations (what a handler remembers while crypto works) ----

/// Signing the echo.
#[derive(Debug)]
pub struct EchoSigned;

/// Checking `from`'s echo signature.
#[derive(Debug)]
pub struct EchoChecked {
    from: NodeId,
    signature: Vec<u8>,
}

/// Checking the signatures of a FINAL carrying `data`.
#[derive(Debug)]
pub struct FinalChecked {
    from: NodeId,
    data: Vec<u8>,
}

/// The modules an instance talks to.
#[derive(Debug, Clone)]
pub struct BcbModules {
    /// The transport.
    pub net: ModuleId,
    /// The crypto module.
    pub crypto: ModuleId,
    /// Where [`Deliver`] goes.
    pub consumer: ModuleId,
}

/// One BCB instance.
pub struct Bcb {
    // Parameters.
    modules: BcbModules,
    instance: Vec<u8>,
    voters: Voters,
    leader: NodeId,
    me: NodeId,
    // State, named as in the pseudocode.
    request: Option<Vec<u8>>,
    sent_echo: bool,
    sent_final: bool,
    delivered: bool,
    /// echos[p], valid ones only.
    echos: BTreeMap<NodeId, Vec<u8>>,
    /// Echoes being verified.
    checking: BTreeSet<NodeId>,
}

impl Bcb {
    /// Instance `instance` of BCB with leader `leader`, run by node `me`.
    pub fn new(
        modules: BcbModules,
        instance: Vec<u8>,
        voters: Voters,
        leader: NodeId,
        me: NodeId,
    ) -> Self {
        Bcb {
            modules,
            instance,
            voters,
            leader,
            me,
            request: None,
            sent_echo: false,
            sent_final: false,
            delivered: false,
            echos: BTreeMap::new(),
            checking: BTreeSet::new(),
        }
    }

    /// Whether this node delivered.
    pub fn delivered(&self) -> bool {
        self.delivered
    }

    /// bcb‖ECHO‖m: what an echo signs.
    fn echo_data(&self, m: &[u8]) -> Vec<Vec<u8>> {
        vec![self.instance.clone(), b"ECHO".to_vec(), m.to_vec()]
    }

    /// Why this node cannot broadcast now, if it cannot.
    fn cannot_broadcast(&self) -> Option<String> {
        if self.me != self.leader {
            Some(format!("node {} is not the leader ({}) of this instance", self.me, self.leader))
        } else if self.request.is_some() {
            Some("this instance already broadcast a message".into())
        } else {
            None
        }
    }
}

/// Answers the requester with [`BroadcastRefused`] and drops the request as bad input.
fn refuse(ctx: &mut Ctx<Bcb>, reason: String) -> Handled {
    let requester = ctx.source().clone();
    ctx.emit(&requester, BroadcastRefused { reason: reason.clone() });
    ignore!("{reason}")
}

/// A [factory](mir_runtime::stdmodules::Factory) of BCB instances: a
/// `NewSubmodule { id: <factory>/<k>, params: BcbInstance { leader, instance: k } }` creates
/// instance `k` (its instance bytes are `k` in little-endian). Messages for instances not created
/// yet are kept (bounded per sender) until they are.
pub fn factory(modules: BcbModules, voters: Voters, me: NodeId) -> Factory {
    Factory::of(move |_id, p: BcbInstance| {
        let instance = p.instance.to_le_bytes().to_vec();
        Ok(DslModule::new(Bcb::new(
            modules.clone(),
            instance,
            voters.clone(),
            p.leader,
            me.clone(),
        )))
    })
}

#[protocol]
impl Bcb {
    /// upon ⟨bcb, Broadcast | m⟩ do                                  (only s)
    #[upon(event)]
    fn broadcast(&mut self, ctx: &mut Ctx<Self>, req: BroadcastRequest) -> Handled {
        if let Some(reason) = self.cannot_broadcast() {
            return refuse(ctx, reason);
        }
        //     send [SEND, m] to all
        ctx.send(&self.modules.net, self.voters.nodes(), Send { data: req.data.clone() });
        self.request = Some(req.data);
        Ok(())
    }

    /// upon [SEND, m] from s such that ¬sentecho do
    #[upon(message)]
    fn on_send(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: Send) -> Handled {
        ensure!(from == self.leader, "SEND from {from}, who is not the leader");
        ensure!(!self.sent_echo, "second SEND from the leader");
        //     sentecho := true; σ := sign(bcb‖ECHO‖m)
        self.sent_echo = true;
        ctx.request(&self.modules.crypto, SignRequest::new(self.echo_data(&msg.data)), EchoSigned);
        Ok(())
    }

    /// … send [ECHO, m, σ] to s
    #[upon(response)]
    fn echo_signed(&mut self, ctx: &mut Ctx<Self>, res: SignResult, _: EchoSigned) -> Handled {
        ctx.send(&self.modules.net, [&self.leader], Echo { signature: res.signature });
        Ok(())
    }

    /// upon [ECHO, m, σ] from p do                                    (only s)
    #[upon(message)]
    fn on_echo(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: Echo) -> Handled {
        ensure!(self.me == self.leader, "ECHO from {from}, but this node is not the leader");
        ensure!(self.voters.contains(&from), "ECHO from non-member {from}");
        let Some(m) = &self.request else { ignore!("ECHO from {from} before this node broadcast") };
        //     if echos[p] = ⊥ ∧ verifysig(p, bcb‖ECHO‖m, σ)
        let new = !self.echos.contains_key(&from) && self.checking.insert(from.clone());
        ensure!(new, "repeated ECHO from {from}");
        let check = VerifySig::new(self.echo_data(m), msg.signature.clone(), from.clone());
        ctx.request(&self.modules.crypto, check, EchoChecked { from, signature: msg.signature });
        Ok(())
    }

    /// … then echos[p] := σ
    #[upon(response)]
    fn echo_checked(&mut self, _: &mut Ctx<Self>, res: SigVerified, cont: EchoChecked) -> Handled {
        self.checking.remove(&cont.from);
        if let Some(e) = res.error {
            ignore!("invalid ECHO from {}: {e}", cont.from);
        }
        self.echos.insert(cont.from, cont.signature);
        Ok(())
    }

    /// upon exists m ≠ ⊥ such that #echos > (N + f)/2 ∧ ¬sentfinal do  (only s)
    #[upon(condition)]
    fn enough_echoes(&mut self, ctx: &mut Ctx<Self>) -> Handled {
        let Ok(strong) = self.voters.is_strong_quorum(self.echos.keys()) else {
            fatal!("echos holds a non-member")
        };
        if self.sent_final || !strong {
            return Ok(());
        }
        let Some(m) = self.request.clone() else { fatal!("echoes recorded without a request") };
        //     sentfinal := true; send [FINAL, m, Σ] to all
        self.sent_final = true;
        let (signers, signatures) = self.echos.iter().map(|(n, s)| (n.clone(), s.clone())).unzip();
        ctx.send(&self.modules.net, self.voters.nodes(), Final { data: m, signers, signatures });
        Ok(())
    }

    /// upon [FINAL, m, Σ] from p do
    #[upon(message)]
    fn on_final(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: Final) -> Handled {
        if self.delivered {
            return Ok(()); // a late FINAL: nothing to do
        }
        let (signers, sigs) = (msg.signers.len(), msg.signatures.len());
        ensure!(signers == sigs, "FINAL from {from}: {signers} signers but {sigs} signatures");
        //     if #{p | Σ[p] ≠ ⊥ ∧ verifysig(p, bcb‖ECHO‖m, Σ[p])} > (N + f)/2 — distinct members only
        match self.voters.is_strong_quorum(&msg.signers) {
            Err(e) => ignore!("FINAL from {from}: {e}"),
            Ok(false) => ignore!("FINAL from {from}: the signers are not a strong quorum"),
            Ok(true) => {}
        }
        let data = self.echo_data(&msg.data);
        let checks = msg.signers.into_iter().zip(msg.signatures);
        let checks =
            checks.map(|(node, signature)| SigCheck { data: data.clone(), signature, node });
        let cont = FinalChecked { from, data: msg.data };
        ctx.request(&self.modules.crypto, VerifySigs::new(checks.collect()), cont);
        Ok(())
    }

    /// … ∧ ¬delivered then delivered := true; trigger ⟨bcb, Deliver | s, m⟩
    #[upon(response)]
    fn final_checked(
        &mut self,
        ctx: &mut Ctx<Self>,
        res: SigsVerified,
        cont: FinalChecked,
    ) -> Handled {
        ensure!(res.all_ok, "FINAL from {} carries invalid signatures", cont.from);
        if !self.delivered {
            self.delivered = true;
            ctx.emit(
                &self.modules.consumer,
                Deliver { instance: self.instance.clone(), data: cont.data },
            );
        }
        Ok(())
    }
}
