//! Operator actions and reports, each recorded in the log before it takes effect: bundle
//! upload and activation (by bundle, or by digest for one the log holds: a rollback),
//! revocation, quarantine, writ key rotation, and the outcome of an allowed execution.
//! Those an approval checks (activation, revocation, quarantine, rotation) run under
//! `operator_actions`; an outcome report under its writ's serial lock.

use std::sync::Arc;

use writ_core::SpiffeId;
use writ_policy::{Bundle, BundleDigest, CompiledBundle, verify_bundle_signature};

use super::{Activated, Active, Engine, MAX_OUTCOME_DETAIL, bundle_from_parts};
use crate::keys::{Rotation, WritKeyStore};
use crate::record::{BundleCheck, BundleParts, Entry, ExecStatus};
use crate::writ::WritSigner;
use crate::{Cause, EngineError, KeyError, Missing};

/// What checking a bundle established: the record its log entry carries, its parts, why
/// it was refused, and the compiled bundle if it was accepted.
struct CheckedBundle {
    check: BundleCheck,
    parts: BundleParts,
    refusal: Option<writ_policy::PolicyError>,
    compiled: Option<CompiledBundle>,
}

impl Engine {
    /// Activates a signed bundle: the signature must be by a trusted policy key and the
    /// bundle must validate against its schema. Refusals are recorded too. Once active,
    /// every outstanding writ is re-evaluated under it, and those it would deny are revoked
    /// ([`super::reevaluate`]).
    pub async fn activate(
        &self,
        bundle: &Bundle,
        signature: &str,
        operator: Option<&str>,
    ) -> Result<Activated, EngineError> {
        // An approval checks the active bundle: the two are recorded in order.
        let _one = self.operator_actions.lock().await;
        let reason = "activated: the shadow bundle became the active bundle";
        self.activate_locked(bundle, signature, operator, reason).await.map(|(a, _)| a)
    }

    /// [`Engine::activate`], the caller holding `operator_actions`. When the bundle activated
    /// is the shadow bundle, the shadow is cleared (with `shadow_reason`) right after the
    /// activation entry, under the same gate: the active bundle is never also the shadow.
    /// The index of that clearing entry comes back beside the activation.
    pub(super) async fn activate_locked(
        &self,
        bundle: &Bundle,
        signature: &str,
        operator: Option<&str>,
        shadow_reason: &str,
    ) -> Result<(Activated, Option<u64>), EngineError> {
        let CheckedBundle { check, parts, refusal, compiled } = self.check_bundle(bundle, signature, operator);
        let digest = bundle.digest();
        let active = {
            // No decision is between reading the old bundle and recording what it decided.
            let _gate = self.bundle_gate.write().await;
            let index = self.append(&Entry::Activation { check, parts }).await?;
            let Some(c) = compiled else {
                return Err(refusal.map_or(EngineError::Poisoned("bundle"), EngineError::BundleUntrusted));
            };
            let active = Arc::new(Active { bundle: c, index });
            *self.active.write().map_err(|_| EngineError::Poisoned("bundle"))? = Some(active.clone());
            let was_shadow = self
                .state
                .lock()
                .map_err(|_| EngineError::Poisoned("state"))?
                .shadow()
                .is_some_and(|s| s.digest == digest.to_string());
            let cleared =
                if was_shadow { Some(self.clear_shadow_locked(operator, shadow_reason).await?) } else { None };
            (index, active, cleared)
        };
        let (log_index, active, cleared) = active;
        let reevaluation = self.reevaluate(log_index, active, operator).await?;
        Ok((Activated { digest, log_index, reevaluation }, cleared))
    }

    /// Checks a bundle's signature against the trusted policy keys and compiles it against
    /// its schema: what an activation or upload entry records, and the compiled bundle.
    fn check_bundle(&self, bundle: &Bundle, signature: &str, operator: Option<&str>) -> CheckedBundle {
        let checked = verify_bundle_signature(bundle, signature, &self.policy_keys)
            .and_then(|signer| bundle.compile().map(|c| (signer, c)));
        let (manifest, policies, schema, entities, tests) = bundle.parts();
        let (accepted, refusal, signer, compiled) = match checked {
            Ok((signer, compiled)) => (true, None, Some(signer), Some(compiled)),
            Err(e) => (false, Some(e), None, None),
        };
        CheckedBundle {
            check: BundleCheck {
                time: self.clock.now(),
                digest: bundle.digest().to_string(),
                name: bundle.manifest().name.clone(),
                version: bundle.manifest().version.clone(),
                accepted,
                refusal: refusal.as_ref().map(ToString::to_string),
                signer,
                signature: signature.to_owned(),
                operator: operator.map(str::to_owned),
            },
            parts: BundleParts { manifest, policies, schema, entities, tests },
            refusal,
            compiled,
        }
    }

    /// Uploads a signed bundle for later activation: it is checked exactly as an
    /// activation checks it and recorded in the log (a refusal too, without its parts).
    pub async fn upload(
        &self,
        bundle: &Bundle,
        signature: &str,
        operator: Option<&str>,
    ) -> Result<BundleDigest, EngineError> {
        let CheckedBundle { check, parts, refusal, .. } = self.check_bundle(bundle, signature, operator);
        // One operator action at a time: two uploads of one bundle applied in another order
        // than the log's would keep another first upload (its signer, signature and time)
        // than a replay of the log keeps (found in review).
        let _one = self.operator_actions.lock().await;
        self.append(&Entry::Upload { parts: check.accepted.then_some(parts), check }).await?;
        match refusal {
            None => Ok(bundle.digest()),
            Some(r) => Err(EngineError::BundleUntrusted(r)),
        }
    }

    /// Activates a bundle the log already holds (uploaded, or active before: a rollback).
    /// Its signature is checked again against the keys trusted now.
    pub async fn activate_known(&self, digest: &str, operator: Option<&str>) -> Result<Activated, EngineError> {
        let known = {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            state.bundle(digest).map(|b| (b.parts.clone(), b.signature.clone()))
        };
        let Some((parts, signature)) = known else {
            return Err(EngineError::NotFound(Missing::Bundle(digest.to_owned())));
        };
        let bundle = bundle_from_parts(&parts)?;
        self.activate(&bundle, &signature, operator).await
    }

    /// Records the outcome of an allowed execution. `reporter` is the authenticated SPIFFE
    /// ID; unless `reporter_is_operator`, it must be the writ's own subject. One outcome per
    /// writ.
    pub async fn report_outcome(
        &self,
        jti: &str,
        reporter: &str,
        reporter_is_operator: bool,
        status: ExecStatus,
        exit_code: Option<i64>,
        detail: &str,
    ) -> Result<u64, EngineError> {
        if detail.len() > MAX_OUTCOME_DETAIL {
            return Err(EngineError::TooLong { field: "detail", max: MAX_OUTCOME_DETAIL });
        }
        // The check and the append run under the writ's serial lock, so two reports of the
        // same writ cannot both pass the "no outcome yet" check.
        let serial = self.serial_lock("outcome", jti);
        let _serial = serial.lock().await;
        {
            let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
            match state.allowed_writ(jti) {
                None => return Err(EngineError::NotFound(Missing::AllowedDecision(jti.to_owned()))),
                Some((_, true)) => {
                    return Err(EngineError::OutcomeAlreadyRecorded { jti: jti.to_owned() });
                }
                Some((subject, false)) if !reporter_is_operator && subject != reporter => {
                    return Err(EngineError::NotTheSubject {
                        reporter: reporter.to_owned(),
                        subject: subject.to_owned(),
                    });
                }
                Some(_) => {}
            }
        }
        let entry = Entry::Outcome {
            time: self.clock.now(),
            jti: jti.to_owned(),
            reporter: reporter.to_owned(),
            status,
            exit_code,
            detail: detail.to_owned(),
        };
        self.append(&entry).await
    }

    /// Revokes a writ: it can no longer verify or serve as a parent.
    pub async fn revoke(&self, jti: &str, operator: Option<&str>, reason: &str) -> Result<u64, EngineError> {
        let _one = self.operator_actions.lock().await;
        let entry = Entry::Revocation {
            time: self.clock.now(),
            jti: jti.to_owned(),
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
            bundle: None,
            ancestor: None,
            isolation: None,
        };
        self.append(&entry).await
    }

    /// Isolates (`true`) or releases (`false`) an identity.
    pub async fn quarantine(
        &self,
        subject: &SpiffeId,
        isolated: bool,
        operator: Option<&str>,
        reason: &str,
    ) -> Result<u64, EngineError> {
        let _one = self.operator_actions.lock().await;
        let entry = Entry::Quarantine {
            time: self.clock.now(),
            subject: subject.to_string(),
            isolated,
            operator: operator.map(str::to_owned),
            reason: reason.to_owned(),
            rule: None,
            triggers: Vec::new(),
        };
        self.append(&entry).await
    }

    /// Rotates the writ signing key, the one way to do so (`writ keys rotate` and
    /// `POST /v1/keys/rotate` both come here): a new key is added to `store` (durably), the
    /// rotation is recorded in the log (key ids only), the new key signs from then on, and
    /// the keys are handed to the store to publish. If the rotation cannot be recorded, the
    /// new key is removed from the store again, so that no later start signs with a key the
    /// log does not hold (and should that removal fail too, the next open refuses the store:
    /// see [`crate::keys`]). Every older key stays published, so outstanding writs keep
    /// verifying. One rotation at a time, under the operator-action lock.
    pub async fn rotate_writ_key_with(
        &self,
        store: &dyn WritKeyStore,
        operator: Option<&str>,
    ) -> Result<Rotation, EngineError> {
        let _one = self.operator_actions.lock().await;
        let seeds = store.add().map_err(|e| KeyError::Store(Cause::text(e)))?;
        let (kid, log_index) = match self.rotate_writ_key(&seeds, operator).await {
            Ok(done) => done,
            Err(e) => {
                return Err(match store.remove_newest() {
                    Ok(()) => e,
                    Err(undo) => {
                        tracing::error!(error = %e, %undo, "a writ key rotation failed and its key is still stored");
                        KeyError::NotUndone { failure: Box::new(e), undo: Cause::text(undo) }.into()
                    }
                });
            }
        };
        let jwks = self.jwks();
        let warning = store.published(&jwks).err().map(|e| format!("the JWKS file was not updated: {e}"));
        if let Some(w) = &warning {
            tracing::error!(kid = %kid, "writ key rotated, but {w}");
        }
        let kids = self.writ_signer().map(|s| s.kids()).unwrap_or_default();
        Ok(Rotation { kid, kids, log_index, warning })
    }

    /// Records a rotation to `seeds` and signs with them: the keys to use from now on, oldest
    /// first, which must be the present keys with new ones after them. The rotation is
    /// recorded (key ids only) before the new key signs anything. Returns the new current
    /// `kid` and the entry's index.
    async fn rotate_writ_key(&self, seeds: &[[u8; 32]], operator: Option<&str>) -> Result<(String, u64), EngineError> {
        let current = self.writ_signer().ok_or(EngineError::Poisoned("writ key"))?;
        let next = WritSigner::from_seeds(current.issuer(), seeds)?;
        let (before, after) = (current.kids(), next.kids());
        if after.len() <= before.len() || after.get(..before.len()) != Some(&before[..]) {
            return Err(EngineError::RotationShape);
        }
        let kid = after.last().cloned().unwrap_or_default();
        let entry = Entry::KeyRotation {
            time: self.clock.now(),
            kid: kid.clone(),
            kids: after.clone(),
            operator: operator.map(str::to_owned),
        };
        let index = self.append(&entry).await?;
        self.watch.rotated(index, after);
        self.verifier.trust(&next.jwks()).map_err(|e| KeyError::JwksKey(Cause::new(e)))?;
        *self.signer.write().map_err(|_| EngineError::Poisoned("writ key"))? = Arc::new(next);
        Ok((kid, index))
    }
}
