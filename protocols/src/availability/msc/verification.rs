//! Certificate verification (part of [`Msc`]).
//!
//! ```text
//! upon ⟨VerifyCert | cert⟩ do
//!     if cert is empty: answer valid
//!     invalid if cert has more than one batch
//!     for each batch certificate ⟨id, signers, Σ⟩ of cert:
//!         invalid unless |signers| = |Σ|, the signers are distinct members, and they weigh ≥ f + 1
//!     answer verifysigs({(p, (instance, BATCH_STORED, id), Σ[p])})
//! ```

use mir_dsl::{protocol, Ctx, Handled};
use mir_runtime::stdevents::crypto::{SigCheck, SigsVerified, VerifySigs};

use super::super::{stored_statement, Cert};
use super::{CertVerified, Msc, VerifyCert};

/// Checking the signatures of a certificate.
#[derive(Debug)]
pub struct CertChecked {
    origin: mir_runtime::stdevents::crypto::Origin,
}

impl Msc {
    /// The structural checks of a certificate: `Err` says what is wrong.
    pub fn check_structure(&self, cert: &Cert) -> Result<(), String> {
        if cert.batches.len() > 1 {
            // Certificates are made one batch at a time; more would only let a proposer make
            // every node check the same signatures many times.
            return Err(format!("{} batches: a certificate holds at most one", cert.batches.len()));
        }
        for (i, b) in cert.batches.iter().enumerate() {
            if b.signers.len() != b.signatures.len() {
                return Err(format!(
                    "batch {i}: {} signers but {} signatures",
                    b.signers.len(),
                    b.signatures.len()
                ));
            }
            match self.membership.is_weak_quorum(&b.signers) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "batch {i}: the signers weigh less than a weak quorum ({})",
                        self.membership.weak_quorum()
                    ))
                }
                Err(e) => return Err(format!("batch {i}: {e}")),
            }
        }
        Ok(())
    }
}

#[protocol(part = verification)]
impl Msc {
    /// upon ⟨VerifyCert | cert⟩ do …
    #[upon(event)]
    fn verify_cert(&mut self, ctx: &mut Ctx<Self>, req: VerifyCert) -> Handled {
        let to = req.origin.module.clone();
        let error = if req.cert.is_empty() {
            Some(None)
        } else {
            self.check_structure(&req.cert).err().map(Some)
        };
        if let Some(error) = error {
            ctx.emit(&to, CertVerified { valid: error.is_none(), error, origin: req.origin });
            return Ok(());
        }
        let items = req
            .cert
            .batches
            .into_iter()
            .flat_map(|b| {
                let statement = stored_statement(&self.instance, &b.batch_id, b.buckets.as_ref());
                b.signers.into_iter().zip(b.signatures).map(move |(node, signature)| SigCheck {
                    data: statement.clone(),
                    signature,
                    node,
                })
            })
            .collect();
        ctx.request(
            &self.modules.crypto,
            VerifySigs::new(items),
            CertChecked { origin: req.origin },
        );
        Ok(())
    }

    /// … answer verifysigs(…)
    #[upon(response)]
    fn cert_checked(&mut self, ctx: &mut Ctx<Self>, v: SigsVerified, c: CertChecked) -> Handled {
        let error = v
            .errors
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.as_ref().map(|e| format!("signature {i}: {e}")));
        let to = c.origin.module.clone();
        ctx.emit(&to, CertVerified { valid: v.all_ok && error.is_none(), error, origin: c.origin });
        Ok(())
    }
}
