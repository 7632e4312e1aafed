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
//! **Pseudocode** (each handler below carries its lines):
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

use mir_dsl::mir_runtime::stdevents::crypto::{
    SigCheck, SigVerified, SignRequest, SignResult, SigsVerified, VerifySig, VerifySigs,
};
use mir_dsl::mir_runtime::{payload, ModuleId, NodeId};
use mir_dsl::{ensure, fatal, ignore, protocol, Ctx, Handled, Voters};
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

// ---- Messages (between nodes) ----

/// [SEND, m].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartMessage {
    /// The message.
    pub data: Vec<u8>,
}

/// [ECHO, m, σ] (m is implied: the leader checks σ against its own m).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoMessage {
    /// The echo signature.
    pub signature: Vec<u8>,
}

/// [FINAL, m, Σ].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalMessage {
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
    StartMessage = "bcb.StartMessage",
    EchoMessage = "bcb.EchoMessage",
    FinalMessage = "bcb.FinalMessage",
);

// ---- Continuations (what a handler remembers while crypto works) ----

/// Signing the echo of `data`.
#[derive(Debug, Clone)]
pub struct EchoSigned;

/// Checking `from`'s echo signature.
#[derive(Debug, Clone)]
pub struct EchoChecked {
    from: NodeId,
    signature: Vec<u8>,
}

/// Checking the signatures of a FINAL carrying `data`.
#[derive(Debug, Clone)]
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
    membership: Voters,
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
        membership: Voters,
        leader: NodeId,
        me: NodeId,
    ) -> Self {
        Bcb {
            modules,
            instance,
            membership,
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

    fn all(&self) -> Vec<NodeId> {
        self.membership.nodes().cloned().collect()
    }
}

/// A [factory](mir_dsl::mir_runtime::stdmodules::Factory) of BCB instances: a
/// `NewSubmodule { id: <factory>/<k>, params: BcbInstance { leader, instance: k } }` creates
/// instance `k` (its instance bytes are `k` in little-endian). Messages for instances not created
/// yet are kept (bounded per sender) until they are.
pub fn factory(
    modules: BcbModules,
    membership: Voters,
    me: NodeId,
) -> mir_dsl::mir_runtime::stdmodules::Factory {
    mir_dsl::mir_runtime::stdmodules::Factory::new(move |_id, params| {
        let p = params
            .decode::<BcbInstance>()
            .map_err(mir_dsl::mir_runtime::ModuleError::new)?
            .ok_or_else(|| {
                mir_dsl::mir_runtime::ModuleError::new(format!(
                    "BCB factory: expected bcb.Instance parameters, got {}",
                    params.name()
                ))
            })?;
        let bcb = Bcb::new(
            modules.clone(),
            p.instance.to_le_bytes().to_vec(),
            membership.clone(),
            p.leader,
            me.clone(),
        );
        Ok(Box::new(mir_dsl::DslModule::new(bcb)) as Box<dyn mir_dsl::mir_runtime::PassiveModule>)
    })
}

#[protocol]
impl Bcb {
    /// upon ⟨bcb, Broadcast | m⟩ do                                  (only s)
    #[upon(event)]
    fn broadcast(&mut self, ctx: &mut Ctx<Self>, req: BroadcastRequest) -> Handled {
        let refuse = |ctx: &mut Ctx<Self>, reason: String| {
            let src = ctx.source().clone();
            ctx.emit(&src, BroadcastRefused { reason: reason.clone() });
            reason
        };
        if self.me != self.leader {
            let r = refuse(
                ctx,
                format!("node {} is not the leader ({}) of this instance", self.me, self.leader),
            );
            ignore!("{r}");
        }
        if self.request.is_some() {
            let r = refuse(ctx, "this instance already broadcast a message".to_owned());
            ignore!("{r}");
        }
        self.request = Some(req.data.clone());
        //     send [SEND, m] to all
        let all = self.all();
        ctx.send(&self.modules.net, &all, StartMessage { data: req.data });
        Ok(())
    }

    /// upon [SEND, m] from s such that ¬sentecho do
    #[upon(message)]
    fn on_send(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: StartMessage) -> Handled {
        ensure!(from == self.leader, "SEND from {from}, who is not the leader");
        ensure!(!self.sent_echo, "second SEND from the leader");
        //     sentecho := true; σ := sign(bcb‖ECHO‖m)
        self.sent_echo = true;
        let data = self.echo_data(&msg.data);
        ctx.request(&self.modules.crypto, SignRequest::new(data), EchoSigned);
        Ok(())
    }

    /// … send [ECHO, m, σ] to s
    #[upon(response)]
    fn echo_signed(&mut self, ctx: &mut Ctx<Self>, res: SignResult, _cont: EchoSigned) -> Handled {
        let leader = self.leader.clone();
        ctx.send(&self.modules.net, [&leader], EchoMessage { signature: res.signature });
        Ok(())
    }

    /// upon [ECHO, m, σ] from p do                                    (only s)
    #[upon(message)]
    fn on_echo(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: EchoMessage) -> Handled {
        ensure!(self.me == self.leader, "ECHO from {from}, but this node is not the leader");
        ensure!(self.membership.contains(&from), "ECHO from non-member {from}");
        let Some(m) = &self.request else { ignore!("ECHO from {from} before this node broadcast") };
        //     if echos[p] = ⊥ ∧ verifysig(p, bcb‖ECHO‖m, σ)
        ensure!(
            !self.echos.contains_key(&from) && !self.checking.contains(&from),
            "repeated ECHO from {from}"
        );
        self.checking.insert(from.clone());
        let data = self.echo_data(m);
        let check = VerifySig::new(data, msg.signature.clone(), from.clone());
        ctx.request(&self.modules.crypto, check, EchoChecked { from, signature: msg.signature });
        Ok(())
    }

    /// … then echos[p] := σ
    #[upon(response)]
    fn echo_checked(
        &mut self,
        _ctx: &mut Ctx<Self>,
        res: SigVerified,
        cont: EchoChecked,
    ) -> Handled {
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
        if self.sent_final || self.echos.is_empty() {
            return Ok(());
        }
        let Ok(strong) = self.membership.is_strong_quorum(self.echos.keys()) else {
            fatal!("echos holds a non-member")
        };
        if !strong {
            return Ok(());
        }
        let Some(m) = self.request.clone() else { fatal!("echoes recorded without a request") };
        //     sentfinal := true; send [FINAL, m, Σ] to all
        self.sent_final = true;
        let (signers, signatures) = self.echos.iter().map(|(n, s)| (n.clone(), s.clone())).unzip();
        let all = self.all();
        ctx.send(&self.modules.net, &all, FinalMessage { data: m, signers, signatures });
        Ok(())
    }

    /// upon [FINAL, m, Σ] from p do
    #[upon(message)]
    fn on_final(&mut self, ctx: &mut Ctx<Self>, from: NodeId, msg: FinalMessage) -> Handled {
        if self.delivered {
            return Ok(()); // a late FINAL: nothing to do
        }
        ensure!(
            msg.signers.len() == msg.signatures.len(),
            "FINAL from {from}: {} signers but {} signatures",
            msg.signers.len(),
            msg.signatures.len()
        );
        //     if #{p | Σ[p] ≠ ⊥ ∧ verifysig(p, bcb‖ECHO‖m, Σ[p])} > (N + f)/2 — distinct members only
        match self.membership.is_strong_quorum(&msg.signers) {
            Err(e) => ignore!("FINAL from {from}: {e}"),
            Ok(false) => ignore!("FINAL from {from}: the signers are not a strong quorum"),
            Ok(true) => {}
        }
        let data = self.echo_data(&msg.data);
        let items = msg
            .signers
            .into_iter()
            .zip(msg.signatures)
            .map(|(node, signature)| SigCheck { data: data.clone(), signature, node })
            .collect();
        ctx.request(
            &self.modules.crypto,
            VerifySigs::new(items),
            FinalChecked { from, data: msg.data },
        );
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
        if self.delivered {
            return Ok(());
        }
        self.delivered = true;
        let consumer = self.modules.consumer.clone();
        ctx.emit(&consumer, Deliver { instance: self.instance.clone(), data: cont.data });
        Ok(())
    }
}

/// An offline monitor for recorded runs: no two nodes deliver different data in one instance,
/// and no node delivers twice in one instance. Use with
/// [`eventlog::check`](mir_dsl::mir_runtime::eventlog::check).
#[derive(Debug, Default)]
pub struct AgreementMonitor {
    /// instance → (first delivery seen, per node).
    seen: BTreeMap<
        Vec<u8>,
        (
            mir_dsl::mir_runtime::eventlog::Observed,
            BTreeMap<NodeId, mir_dsl::mir_runtime::eventlog::Observed>,
        ),
    >,
}

impl mir_dsl::mir_runtime::eventlog::Monitor for AgreementMonitor {
    fn observe(
        &mut self,
        o: &mir_dsl::mir_runtime::eventlog::Observed,
    ) -> Result<(), mir_dsl::mir_runtime::eventlog::Violation> {
        use mir_dsl::mir_runtime::eventlog::Violation;
        let Ok(Some(d)) = o.event.payload.decode::<Deliver>() else {
            return Ok(());
        };
        let Some((first, per_node)) = self.seen.get_mut(&d.instance) else {
            self.seen.insert(
                d.instance.clone(),
                (o.clone(), BTreeMap::from([(o.node.clone(), o.clone())])),
            );
            return Ok(());
        };
        if let Some(earlier) = per_node.get(&o.node) {
            return Err(Violation::new(
                format!("node {} delivered twice in instance {:?}", o.node, d.instance),
                vec![earlier.clone(), o.clone()],
            ));
        }
        let first_data = first.event.payload.decode::<Deliver>().ok().flatten().map(|f| f.data);
        if first_data.as_ref() != Some(&d.data) {
            return Err(Violation::new(
                format!(
                    "nodes {} and {} delivered different data in instance {:?}",
                    first.node, o.node, d.instance
                ),
                vec![first.clone(), o.clone()],
            ));
        }
        per_node.insert(o.node.clone(), o.clone());
        Ok(())
    }
}
