//! Which calls a principal could be allowed to make ([`Engine::preview`]): what an
//! enforcement point needs to show an agent exactly the tools it could call (the MCP
//! gateway's `tools/list`), without deciding, recording or issuing anything.
//!
//! Sound by construction: a candidate is reported impossible only when every call with its
//! action and resource would be denied whatever the arguments, the time, the lineage and the
//! usage: the credential does not verify, the principal is isolated, the parent writ's
//! scope excludes the action, no bundle is active, the bundle requires an attestation none
//! was presented for, or Cedar's partial evaluation with the context unknown decides Deny
//! ([`writ_policy::CompiledBundle::possible`]). Whatever cannot be ruled out is possible.

use serde::Serialize;
use writ_core::{Credentials, ReasonCode};
use writ_identity::Role;
use writ_policy::Possibility;

use super::Engine;
use super::pipeline::identity_fact;
use crate::decide::principal_of;

/// Most candidates one preview takes.
pub const MAX_PREVIEW_CANDIDATES: usize = 1000;

/// One candidate call's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Possible {
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// False only when every call with this action and resource would be denied.
    pub possible: bool,
    /// Why not, when impossible: the reason code every such call would be denied with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    /// Why not, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer to a preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The digest of the bundle that answered (`None`: no bundle is active).
    pub bundle: Option<String>,
    /// The candidates, in the order asked.
    pub candidates: Vec<Possible>,
}

impl Engine {
    /// Which of `candidates` (action, resource) the workload of `credentials` could be
    /// allowed to call (see the module doc). Nothing is recorded.
    pub fn preview(
        &self,
        credentials: &Credentials,
        attestation: Option<&str>,
        parent_writ: Option<&str>,
        candidates: &[(String, String)],
    ) -> Preview {
        let now = self.clock.now();
        let active = self.active.read().ok().and_then(|a| a.clone());
        let bundle = active.as_ref().map(|a| a.bundle.digest().to_string());
        let answer = |(action, resource): &(String, String), never: Option<(ReasonCode, String)>| Possible {
            action: action.clone(),
            resource: resource.clone(),
            possible: never.is_none(),
            reason: never.as_ref().map(|(r, _)| *r),
            detail: never.map(|(_, d)| d),
        };
        let everything = |reason: ReasonCode, detail: String| Preview {
            bundle: bundle.clone(),
            candidates: candidates.iter().map(|c| answer(c, Some((reason, detail.clone())))).collect(),
        };
        let identity = match credentials.workload.as_deref() {
            None => return everything(ReasonCode::IdentityMissing, "no workload credential".into()),
            Some(token) => match self.identity.verify(Role::Workload, token, now) {
                Ok(c) => identity_fact(&c),
                Err(e) => return everything(e.reason(), e.to_string()),
            },
        };
        let quarantined = self.state.lock().map_or(true, |s| s.is_quarantined(&identity.subject));
        if quarantined {
            return everything(
                ReasonCode::Quarantined,
                format!("{} is isolated until an operator releases it", identity.subject),
            );
        }
        let Some(active) = active else {
            return everything(ReasonCode::PolicyNoActiveBundle, "no policy bundle is active".into());
        };
        // A parent writ that verifies narrows what its children may do; one that does not is
        // left to the decision (it denies there, with its own lineage code).
        let scope = parent_writ.and_then(|w| self.verifier.verify_possession(w).ok()).map(|c| c.scp);
        let principal = principal_of(&identity);
        let candidates = candidates
            .iter()
            .map(|c @ (action, resource)| {
                if let Some(scope) = scope.as_ref().filter(|s| !s.allows(action)) {
                    let why = format!("the parent writ's scope ({}) excludes {action:?}", scope.actions.join(", "));
                    return answer(c, Some((ReasonCode::LineageScopeEscalation, why)));
                }
                if attestation.is_none() && active.bundle.requires_attestation(action) {
                    let why = format!("the active bundle requires a runtime attestation for {action:?}");
                    return answer(c, Some((ReasonCode::AttestationMissing, why)));
                }
                match active.bundle.possible(&principal, action, resource) {
                    Possibility::Possible => answer(c, None),
                    Possibility::Never(reason, why) => answer(c, Some((reason, why))),
                }
            })
            .collect();
        Preview { bundle, candidates }
    }
}
