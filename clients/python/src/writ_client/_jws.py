"""The JWS compact serialization (RFC 7515 §7.1) of an EdDSA/Ed25519 signature (RFC 8037
§3.1), parsed strictly before any signature check, as writ-verify's ``jws`` module does:
three base64url parts without padding and without stray trailing bits (RFC 7515 §2), a
protected header of ``alg`` ``EdDSA``, a ``kid`` and optionally a ``typ``, and nothing else.

Header members that would let the token choose its key or change how it is processed
(``jwk``, ``jku``, ``x5u``, ``x5c``, ``crit``, ``b64``) are refused by name, any other
member as unknown. The key is always the one the caller trusts under the ``kid``; the
signature itself is checked by PyJWT (``PyJWS``) with the ``cryptography`` package's
Ed25519. JSON is parsed strictly: a repeated member name, ``NaN`` or ``Infinity`` refuses
the document.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The longest header accepted, in base64url characters (writ-verify's MAX_HEADER).
MAX_HEADER = 1024
# The longest kid accepted (writ-verify's MAX_KID).
MAX_KID = 256

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_REFUSED = ("jwk", "jku", "x5u", "x5c", "crit", "b64")
_KNOWN = ("alg", "kid", "typ")


class JwsError(ValueError):
    """Why a token is not an acceptable JWS (a detail for humans)."""


def b64url_decode(text: str) -> bytes | None:
    """Base64url without padding (RFC 7515 §2), canonical: ``None`` for anything else
    (padding, other characters, a length no encoding has, non-zero trailing bits)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None
    return raw


def b64url_encode(raw: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise JwsError(f"member {name!r} appears twice")
        out[name] = value
    return out


def _no_constant(name: str) -> Any:
    raise JwsError(f"{name} is not JSON")


def strict_json(data: bytes | str) -> Any:
    """JSON text parsed strictly (RFC 8259 in UTF-8, no repeated member names, no NaN or
    Infinity); raises :class:`JwsError`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except JwsError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise JwsError(f"not JSON: {e}") from None


@dataclass(frozen=True)
class Jws:
    """A JWS compact token split and its header checked; the signature not yet verified."""

    token: str
    kid: str
    typ: str | None
    payload_b64: str


def parse(token: str, max_len: int) -> Jws:
    """Splits and checks ``token`` (at most ``max_len`` bytes); raises :class:`JwsError`."""
    if not isinstance(token, str):
        raise JwsError("not a string")
    if len(token.encode("utf-8", "surrogatepass")) > max_len:
        raise JwsError(f"more than the {max_len} bytes accepted")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("not a JWS compact serialization (three parts separated by dots)")
    header_b64, payload_b64, signature_b64 = parts
    if not header_b64 or not payload_b64:
        raise JwsError("an empty header or payload")
    if len(header_b64) > MAX_HEADER:
        raise JwsError("the header is too long")
    header_raw = b64url_decode(header_b64)
    if header_raw is None:
        raise JwsError("the header is not base64url without padding")
    header = strict_json(header_raw)
    if not isinstance(header, dict):
        raise JwsError("the header is not a JSON object")
    for name in _REFUSED:
        if name in header:
            raise JwsError(f"header member {name!r} refused: keys come only from the trusted key set")
    for name in header:
        if name not in _KNOWN:
            raise JwsError(f"unknown header member {name!r}")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwsError("no alg in the header")
    if alg != "EdDSA":
        raise JwsError(f"alg {alg!r}: only EdDSA (Ed25519) is accepted")
    kid = header.get("kid")
    if kid is None:
        raise JwsError("no kid in the header")
    if not isinstance(kid, str) or not kid or len(kid.encode()) > MAX_KID:
        raise JwsError("an empty, overlong or non-string kid")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise JwsError("typ is not a string")
    signature = b64url_decode(signature_b64)
    if signature is None or len(signature) != 64:
        raise JwsError("the signature is not 64 bytes of base64url")
    if b64url_decode(payload_b64) is None:
        raise JwsError("the payload is not base64url without padding")
    return Jws(token=token, kid=kid, typ=typ, payload_b64=payload_b64)


def verify(parsed: Jws, key: Ed25519PublicKey) -> bytes:
    """The payload of ``parsed`` once its signature verifies with ``key``; raises
    :class:`JwsError`."""
    try:
        decoded = jwt.PyJWS().decode_complete(parsed.token, key, algorithms=["EdDSA"])
    except jwt.PyJWTError:
        raise JwsError("the signature does not verify") from None
    payload = decoded.get("payload")
    if not isinstance(payload, bytes):
        raise JwsError("no payload")
    return payload
