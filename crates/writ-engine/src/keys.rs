//! Writ signing keys and the log (SPEC.md §2, §3): where the keys are kept
//! ([`WritKeyStore`]), what a rotation answers ([`Rotation`]), and the rule that the log is
//! the source of truth for which keys sign ([`check_recorded`]).
//!
//! A rotation goes one way only, through [`crate::Engine::rotate_writ_key_with`]: the new
//! key is stored, the rotation is recorded in the log (key ids only), the engine signs with
//! it, and the JWKS is published; a rotation that cannot be recorded takes its key out of
//! the store again. On open, the engine refuses a key store holding a key that no
//! `key_rotation` entry lists, so a key added behind the log's back (or left by a rotation
//! whose undo failed) never signs.

use crate::{EngineError, KeyError};

/// Where the writ signing keys are kept (the binary's `keys/writ.keys`). A rotation adds a
/// key here, durably, before the engine records the rotation and signs with it; if the
/// rotation cannot be recorded, the key is removed again. Errors are text: they are the
/// store's own, shown to the operator.
pub trait WritKeyStore: Send + Sync {
    /// Adds a fresh key; returns every key, oldest first.
    fn add(&self) -> Result<Vec<[u8; 32]>, String>;
    /// Removes the newest key (its rotation was not recorded).
    fn remove_newest(&self) -> Result<(), String>;
    /// The rotation is in force and these are the published keys (a JWKS document).
    fn published(&self, jwks: &serde_json::Value) -> Result<(), String>;
}

/// A rotation in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The key that signs writs from now on (RFC 7638 thumbprint).
    pub kid: String,
    /// Every published key, oldest first.
    pub kids: Vec<String>,
    /// Index of the `key_rotation` entry.
    pub log_index: u64,
    /// Set when the rotation is in force but publishing the JWKS failed.
    pub warning: Option<String>,
}

/// The latest `key_rotation` entry of the log: its index and the keys it lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) latest: Option<(u64, Vec<String>)>,
}

/// Checks the keys the engine was given (`kids`, oldest first, the last signs) against the
/// log. With no rotation recorded, the store holds the first key alone (it predates the
/// log's records of keys). Otherwise every key must be one the latest rotation lists, in
/// its order: the keys are that list, or (after a rotation whose record failed ambiguously
/// and whose key was then removed) a prefix of it, so that whatever signs is a key the log
/// recorded. A key the log never recorded is refused, never dropped silently: the store and
/// the log disagree, and the operator must see it.
pub(crate) fn check_recorded(kids: &[String], recorded: &Recorded) -> Result<(), EngineError> {
    let Some((index, listed)) = &recorded.latest else {
        return match kids {
            [_] => Ok(()),
            _ => Err(KeyError::NoRotationRecorded { kids: kids.to_vec() }.into()),
        };
    };
    let unrecorded: Vec<&String> = kids.iter().filter(|k| !listed.contains(k)).collect();
    if !unrecorded.is_empty() {
        return Err(KeyError::Unrecorded {
            unrecorded: unrecorded.into_iter().cloned().collect(),
            index: *index,
            listed: listed.clone(),
        }
        .into());
    }
    if kids.is_empty() || listed.get(..kids.len()) != Some(kids) {
        return Err(KeyError::Order { kids: kids.to_vec(), index: *index, listed: listed.clone() }.into());
    }
    if kids.len() < listed.len() {
        tracing::warn!(
            kids = %kids.join(", "),
            recorded = %listed.join(", "),
            "the writ key store lacks the newest keys of the log's latest key rotation (a rotation whose record \
             failed after all?): writs are signed with the newest key it holds, and writs of the missing keys \
             no longer verify here"
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|&k| k.to_owned()).collect()
    }

    fn at(index: u64, kids: &[&str]) -> Recorded {
        Recorded { latest: Some((index, ids(kids))) }
    }

    #[test]
    fn only_recorded_keys_in_their_recorded_order_may_sign() {
        let none = Recorded::default();
        check_recorded(&ids(&["a"]), &none).unwrap();
        check_recorded(&ids(&["a", "b"]), &at(4, &["a", "b"])).unwrap();
        check_recorded(&ids(&["a"]), &at(4, &["a", "b"])).unwrap();
        for (kids, recorded) in [
            (ids(&[]), none.clone()),
            (ids(&["a", "b"]), none.clone()),
            (ids(&["a", "b", "c"]), at(4, &["a", "b"])),
            (ids(&["a", "c"]), at(4, &["a", "b"])),
            (ids(&["b", "a"]), at(4, &["a", "b"])),
            (ids(&["b"]), at(4, &["a", "b"])),
            (ids(&[]), at(4, &["a", "b"])),
        ] {
            let err = check_recorded(&kids, &recorded).unwrap_err();
            assert!(matches!(err, EngineError::Key(_)), "{kids:?} against {recorded:?}: {err:?}");
        }
        let err = check_recorded(&ids(&["a", "b", "c"]), &at(4, &["a", "b"])).unwrap_err().detail();
        assert!(err.contains("holds c that the log never recorded") && err.contains("entry 4"), "{err}");
    }
}
