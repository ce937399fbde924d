"""writ's reason codes: the stable strings every deny, rejected writ and API error carries
(docs/reason-codes.md). The list is writ_core::ReasonCode's; a test holds them equal."""

from __future__ import annotations

import enum


class ReasonCode(str, enum.Enum):
    """A reason code. Members compare equal to their string (``ReasonCode.WRIT_REPLAYED ==
    "writ.replayed"``)."""

    IDENTITY_MISSING = "identity.missing"
    IDENTITY_MALFORMED = "identity.malformed"
    IDENTITY_BAD_SIGNATURE = "identity.bad_signature"
    IDENTITY_UNTRUSTED_ISSUER = "identity.untrusted_issuer"
    IDENTITY_EXPIRED = "identity.expired"
    IDENTITY_NOT_YET_VALID = "identity.not_yet_valid"
    IDENTITY_AUDIENCE = "identity.audience"
    ATTESTATION_MISSING = "attestation.missing"
    ATTESTATION_INVALID = "attestation.invalid"
    QUARANTINED = "quarantined"
    LINEAGE_PARENT_UNKNOWN = "lineage.parent_unknown"
    LINEAGE_PARENT_DENIED = "lineage.parent_denied"
    LINEAGE_PARENT_EXPIRED = "lineage.parent_expired"
    LINEAGE_PARENT_REVOKED = "lineage.parent_revoked"
    LINEAGE_DEPTH_EXCEEDED = "lineage.depth_exceeded"
    LINEAGE_SCOPE_ESCALATION = "lineage.scope_escalation"
    POLICY_DENIED = "policy.denied"
    POLICY_NO_ACTIVE_BUNDLE = "policy.no_active_bundle"
    POLICY_EVALUATION_ERROR = "policy.evaluation_error"
    POLICY_BUNDLE_UNTRUSTED = "policy.bundle_untrusted"
    WRIT_BAD_SIGNATURE = "writ.bad_signature"
    WRIT_EXPIRED = "writ.expired"
    WRIT_AUDIENCE = "writ.audience"
    WRIT_BINDING_MISMATCH = "writ.binding_mismatch"
    WRIT_REPLAYED = "writ.replayed"
    WRIT_REVOKED = "writ.revoked"
    LOG_UNAVAILABLE = "log.unavailable"
    REQUEST_MALFORMED = "request.malformed"
    INTERNAL = "internal"

    def __str__(self) -> str:
        return self.value
