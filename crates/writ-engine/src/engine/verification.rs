//! Writ verification at this control plane (`POST /v1/verify`): signature, time, audience
//! and binding by [`crate::WritVerifier`], the writ's standing from the state, single use;
//! and what a stopping control plane keeps so that single use survives a restart.

use writ_core::{ReasonCode, RequestDigest};

use super::Engine;
use writ_verify::{UsedWrits, VerifiedWrit, WritRejection};

impl Engine {
    /// Verifies a writ for the call about to run: signature, time, audience, binding, its
    /// standing (not revoked, nor any writ above it in its lineage: `writ.revoked`; its
    /// principal, or one above it, not isolated: `quarantined`), single use at this engine.
    /// While the verification loop has failed ([`Engine::verify_now`]) no writ is vouched
    /// for, with the reason code the failed check names, and no writ's single use is spent.
    pub fn verify(&self, token: &str, digest: &RequestDigest) -> Result<VerifiedWrit, WritRejection> {
        if let Some((reason, detail)) = self.integrity_failure() {
            return Err(WritRejection::new(reason, detail));
        }
        let now = self.clock.now();
        // The state is locked for the standing lookup only, not across the signature check;
        // a poisoned lock refuses (fail closed).
        self.verifier.verify_with(token, digest, now, &|c| {
            let state =
                self.state.lock().map_err(|_| WritRejection::new(ReasonCode::Internal, "state lock poisoned"))?;
            state.standing(&c.jti, &c.sub).map_err(|(reason, detail)| WritRejection::new(reason, detail))
        })
    }

    /// Stops verifying writs (every later verification is `writ.replayed`) and returns what a
    /// stopping control plane keeps so that single use survives a restart: the writs
    /// verified here that could still verify now, and the horizon before which writs are
    /// refused.
    pub fn close_verification(&self) -> UsedWrits {
        self.verifier.close(self.clock.now())
    }

    /// Takes back what [`Engine::close_verification`] of an earlier run kept.
    pub fn restore_used_writs(&self, kept: UsedWrits) {
        self.verifier.restore(kept);
    }

    /// Refuses as `writ.replayed` every writ issued before `time` not known as used: for a
    /// control plane that lost its record of used writs (it was killed), see
    /// [`WritVerifier::refuse_issued_before`].
    pub fn refuse_writs_issued_before(&self, time: u64) {
        self.verifier.refuse_issued_before(time);
    }
}
