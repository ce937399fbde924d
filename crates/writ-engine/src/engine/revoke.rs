//! Revocation in bulk, shared by the re-evaluation that follows an activation
//! ([`super::reevaluate`]) and automatic isolation ([`super::isolate`]): a set of writs,
//! every outstanding writ below them in their lineages, and their `revocation` entries
//! appended so that the log commits them in groups. Each entry reaches the revocation feed
//! as it is applied.

use std::collections::HashSet;

use futures_util::StreamExt as _;

use super::Engine;
use crate::EngineError;
use crate::record::Entry;

/// Revocations appended at once, so that the log commits them in groups.
const REVOKE_CONCURRENCY: usize = 256;

/// A writ to revoke, and why.
pub(super) struct Revoke {
    pub(super) jti: String,
    pub(super) reason: String,
    /// The writ above it whose revocation revokes it (a descendant's entry names it).
    pub(super) ancestor: Option<String>,
}

impl Engine {
    /// `revoke` followed by every outstanding writ below one of them at `now` (once, under
    /// the first it is found below), each with `why(ancestor)` as its reason.
    pub(super) fn with_descendants(
        &self,
        revoke: Vec<Revoke>,
        now: u64,
        why: &dyn Fn(&str) -> String,
    ) -> Result<Vec<Revoke>, EngineError> {
        let state = self.state.lock().map_err(|_| EngineError::Poisoned("state"))?;
        let listed: HashSet<&str> = revoke.iter().map(|r| r.jti.as_str()).collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut below = Vec::new();
        for r in &revoke {
            for d in state.outstanding_below(&r.jti, now, self.config.skew) {
                if listed.contains(d.as_str()) || !seen.insert(d.clone()) {
                    continue;
                }
                below.push(Revoke { reason: why(&r.jti), jti: d, ancestor: Some(r.jti.clone()) });
            }
        }
        drop(state);
        let mut all = revoke;
        all.extend(below);
        Ok(all)
    }

    /// Appends a `revocation` entry for each writ, [`REVOKE_CONCURRENCY`] at a time, naming
    /// the `operator`, and the activated `bundle` or the `isolation` entry that revoked it.
    pub(super) async fn append_revocations(
        &self,
        revoke: Vec<Revoke>,
        operator: Option<&str>,
        bundle: Option<&str>,
        isolation: Option<u64>,
    ) -> Result<(), EngineError> {
        let time = self.clock.now();
        let entries = revoke.into_iter().map(|r| Entry::Revocation {
            time,
            jti: r.jti,
            operator: operator.map(str::to_owned),
            reason: r.reason,
            bundle: bundle.map(str::to_owned),
            ancestor: r.ancestor,
            isolation,
        });
        let mut appends = futures_util::stream::iter(entries)
            .map(|e| async move { self.append(&e).await })
            .buffer_unordered(REVOKE_CONCURRENCY);
        while let Some(appended) = appends.next().await {
            appended?;
        }
        Ok(())
    }
}
