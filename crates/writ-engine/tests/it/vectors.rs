//! The documentation's test vectors (`docs/vectors/*.json`), checked with the project's own
//! code: request digests (RFC 8785), a writ signed with RFC 8037's published test key, and
//! a small log (RFC 6962 hashes, a C2SP signed checkpoint, inclusion and consistency
//! proofs, a `tlog-proof` receipt). The committed files are read and verified, never
//! rewritten, by the tests below; `tests/independent/verify_writs.py` checks the same files
//! with PyJWT, `rfc8785` and `cryptography`.
//!
//! To regenerate them after a deliberate format change (then review the diff):
//! `WRIT_WRITE_VECTORS=1 cargo test -p writ-engine --test it vectors::write -- --ignored`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use writ_core::{ExecutionRequest, Limits, ReasonCode, RequestDigest, canonical_json};
use writ_engine::{Entry, ExecStatus, LogRef, Scope, WritClaims, WritSigner, WritVerifier};
use writ_log::{
    Checkpoint, Hash, MemoryTree, NoteSigner, NoteVerifier, Receipt, SignedCheckpoint, consistency_proof,
    inclusion_proof, root_from_leaves, verify_consistency, verify_inclusion,
};

use crate::harness::*;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors")
}

fn read(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn write_vector(name: &str, v: &Value) {
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(dir().join(name), format!("{}\n", serde_json::to_string_pretty(v).unwrap())).unwrap();
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// RFC 8037 Appendix A.1's Ed25519 private key (the secret of RFC 8032 §7.1, test 1):
/// published, so never trust it for anything but these vectors.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// Its RFC 7638 thumbprint, as RFC 8037 Appendix A.3 gives it.
const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

fn test_seed() -> [u8; 32] {
    B64URL.decode(RFC8037_D).unwrap().try_into().unwrap()
}

/// The requests of `request-digests.json`: name, what it shows, and the body as sent.
const REQUESTS: &[(&str, &str, &str)] = &[
    (
        "minimal",
        "No arguments: the object with its three keys in RFC 8785 order.",
        r#"{"action": "a", "resource": "r", "arguments": {}}"#,
    ),
    (
        "readme-write",
        "The README's write request; the credentials are not part of the digest.",
        r#"{"credentials": {}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/out.csv", "bytes": 120}}"#,
    ),
    (
        "key-order-and-nesting",
        "Members sorted at every depth, arrays kept in order, whitespace dropped, literals kept.",
        r#"{"resource": "mcp:filesystem/write_file", "action": "tool.call", "arguments": {"z": [3, 1, 2], "a": {"y": null, "b": true, "a": false}, "m": []}}"#,
    ),
    (
        "number-forms",
        "Numbers in their RFC 8785 (ECMAScript) form: 1.2e2, 120.0 and 1E+2 are integers, -0.0 is 0, 1e21 keeps an exponent, 1e-7 too, 0.000001 does not; integers up to 2^53-1 are exact.",
        r#"{"action": "payment", "resource": "payments:stripe", "arguments": {"a": 1.2e2, "b": 120.0, "c": 1E+2, "d": -0.0, "e": 2.5, "f": 1e21, "g": 1e-7, "h": 0.000001, "i": 9007199254740991, "j": -9007199254740991, "k": 333333333.33333329}}"#,
    ),
    (
        "unicode-and-escapes",
        "Strings: \\u escapes of printable characters become UTF-8, controls become \\u00XX (lowercase hex) or their short escape, / and U+2028 are not escaped, no Unicode normalisation (é precomposed and decomposed differ); members sorted by UTF-16 code units, so U+1F600 (a surrogate pair, 0xD83D) sorts before U+FB00 although its UTF-8 bytes sort after.",
        r#"{"action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/\u00fcn\u00efc\u00f8d\u00e9 \u20ac.csv", "\ufb00": 1, "\ud83d\ude00": 2, "e": 3, "\u00e9": 4, "e\u0301": 5, "ctl": "\u000f\t\n\"\\/\u2028"}}"#,
    ),
];

fn digest_vector(name: &str, note: &str, body: &str) -> Value {
    let req = ExecutionRequest::parse(body.as_bytes(), &Limits::default()).unwrap();
    let object = json!({"action": req.action, "resource": req.resource, "arguments": req.arguments});
    let canonical = String::from_utf8(canonical_json(&object).unwrap()).unwrap();
    json!({
        "name": name,
        "note": note,
        "request": body,
        "canonical": canonical,
        "digest": req.digest().unwrap().to_string(),
    })
}

/// The writ of the vector: fixed claims over the `readme-write` request.
fn writ_claims(digest: &RequestDigest, pol: &str) -> WritClaims {
    let jti = "w-0123456789abcdef0123456789abcdef".to_owned();
    WritClaims {
        iss: "writ".into(),
        sub: "spiffe://demo.example/agent/billing-1".into(),
        aud: "writ-enforcement".into(),
        jti: jti.clone(),
        iat: 1_767_225_600, // 2026-01-01T00:00:00Z
        nbf: 1_767_225_600,
        exp: 1_767_225_900,
        act: "write".into(),
        res: "fs:/zones/billing".into(),
        req: digest.to_string(),
        pol: pol.into(),
        par: None,
        root: jti,
        dep: 0,
        scp: Scope { actions: vec!["*".into()], zone: "billing".into() },
        log: LogRef { index: 0, leaf: String::new() },
    }
}

/// Regenerates the vectors (see the module documentation).
#[test]
#[ignore = "writes docs/vectors; run explicitly with WRIT_WRITE_VECTORS=1"]
fn write() {
    if std::env::var_os("WRIT_WRITE_VECTORS").is_none() {
        return;
    }
    let digests: Vec<Value> = REQUESTS.iter().map(|(n, note, body)| digest_vector(n, note, body)).collect();
    write_vector(
        "request-digests.json",
        &json!({
            "description": "Request digests: `req` = \"sha256:\" + hex SHA-256 of the RFC 8785 canonical JSON of {\"action\", \"resource\", \"arguments\"} taken from the request. `request` is the body as sent (a JSON text), `canonical` the exact bytes hashed (UTF-8).",
            "vectors": digests,
        }),
    );

    // The log: real decision entries from an engine at a fixed clock, and other entry kinds
    // built as the engine builds them.
    let h = Harness::new();
    let allowed = h.authorize(&write_request(&h));
    let allowed_index = allowed.log_index.unwrap();
    let allowed_writ = assert_allowed(&allowed);
    let denied =
        h.authorize(&request(&h, "billing-1", "write", "fs:/zones/payroll", json!({"path": "/zones/payroll/x"})));
    assert_eq!(denied.outcome, writ_engine::Outcome::Deny);
    let mut entries: Vec<Vec<u8>> = h.engine.log().entries(allowed_index, denied.log_index.unwrap() + 1).unwrap();
    let now = h.now();
    let operator = Some("spiffe://demo.example/operator/alice".to_owned());
    for e in [
        Entry::Outcome {
            time: now + 1,
            jti: jti_of(&allowed_writ),
            reporter: "spiffe://demo.example/agent/billing-1".into(),
            status: ExecStatus::Succeeded,
            exit_code: Some(0),
            detail: "wrote 120 bytes".into(),
        },
        Entry::Revocation {
            time: now + 2,
            jti: jti_of(&allowed_writ),
            operator: operator.clone(),
            reason: "rotated the credentials".into(),
            bundle: None,
            ancestor: None,
            isolation: None,
        },
        Entry::Quarantine {
            time: now + 3,
            subject: "spiffe://demo.example/agent/billing-1".into(),
            isolated: true,
            operator: operator.clone(),
            reason: "unexpected egress".into(),
            rule: None,
            triggers: Vec::new(),
        },
        Entry::KeyRotation {
            time: now + 4,
            kid: RFC8037_THUMBPRINT.into(),
            kids: [WritSigner::from_seeds("writ", &[[3; 32]]).unwrap().kids(), vec![RFC8037_THUMBPRINT.into()]]
                .concat(),
            operator,
        },
        Entry::AnonymousAttempts {
            time: now + 5,
            since: now + 4,
            until: now + 5,
            reasons: [(ReasonCode::IdentityBadSignature, 250)].into_iter().collect(),
        },
    ] {
        entries.push(e.canonical().unwrap());
    }
    let size = entries.len() as u64;
    let leaves: Vec<Hash> = entries.iter().map(|e| Hash::leaf(e)).collect();
    let mut tree = MemoryTree::new(leaves.clone());
    let signer = NoteSigner::from_seed("example.invalid/writ/docs-vector", test_seed()).unwrap();
    let cp = SignedCheckpoint::sign(
        Checkpoint { origin: signer.name().into(), size, root: tree.root_at(size).unwrap(), extensions: vec![] },
        &signer,
    )
    .unwrap();
    let (index, old) = (2u64, 4u64);
    let receipt = Receipt {
        extra: None,
        index,
        proof: inclusion_proof(&mut tree, index, size).unwrap(),
        checkpoint: cp.note().to_owned(),
    };
    let b64 = |hs: Vec<Hash>| hs.iter().map(Hash::to_base64).collect::<Vec<_>>();
    write_vector(
        "log.json",
        &json!({
            "description": "A log of seven entries (two real decisions, then an outcome, a revocation, a quarantine, a key rotation and an anonymous-attempts summary), hashed as RFC 6962 / RFC 9162, its checkpoint signed as a C2SP signed note with RFC 8032's test key 1 (published: never trust it), an inclusion proof, a consistency proof and a C2SP tlog-proof receipt. `entry` is the exact UTF-8 text of each entry; hashes are standard base64.",
            "vkey": signer.verifier().to_vkey(),
            "entries": entries.iter().zip(&leaves).map(|(e, l)| json!({
                "entry": String::from_utf8(e.clone()).unwrap(),
                "leaf_hash": l.to_base64(),
            })).collect::<Vec<_>>(),
            "tree_size": size,
            "root": tree.root_at(size).unwrap().to_base64(),
            "checkpoint": cp.note(),
            "inclusion": {"index": index, "tree_size": size, "proof": b64(inclusion_proof(&mut tree, index, size).unwrap())},
            "consistency": {
                "from": old,
                "to": size,
                "from_root": tree.root_at(old).unwrap().to_base64(),
                "proof": b64(consistency_proof(&mut tree, old, size).unwrap()),
            },
            "receipt": receipt.to_text(),
        }),
    );

    // The writ: fixed claims over the README's write request, signed with RFC 8037's key.
    let req = read("request-digests.json");
    let readme = req["vectors"].as_array().unwrap().iter().find(|v| v["name"] == "readme-write").unwrap().clone();
    let parsed = ExecutionRequest::parse(s(&readme["request"]).as_bytes(), &Limits::default()).unwrap();
    let digest = parsed.digest().unwrap();
    let pol = writ_policy::starter_bundle().unwrap().digest().to_string();
    let mut claims = writ_claims(&digest, &pol);
    claims.log.leaf = Hash::leaf(&entries[0]).to_prefixed();
    let signer = WritSigner::from_seeds("writ", &[test_seed()]).unwrap();
    let token = signer.sign(&claims).unwrap();
    write_vector(
        "writ.json",
        &json!({
            "description": "A writ (JWS compact, EdDSA) signed with RFC 8037 Appendix A.1's Ed25519 key (published: never trust it), for the `readme-write` request of request-digests.json. It verifies at any time t with nbf <= t < exp (plus the verifier's clock skew), for issuer `writ` and audience `writ-enforcement`, and only for a call whose digest is `digest`. `log` is illustrative.",
            "private_key_jwk": {"kty": "OKP", "crv": "Ed25519", "d": RFC8037_D, "x": RFC8037_X},
            "jwks": signer.jwks(),
            "issuer": "writ",
            "audience": "writ-enforcement",
            "request": {"action": parsed.action, "resource": parsed.resource, "arguments": parsed.arguments},
            "digest": digest.to_string(),
            "claims": claims,
            "writ": token,
            "valid_from": claims.nbf,
            "valid_until": claims.exp,
        }),
    );
}

fn jti_of(writ: &str) -> String {
    let payload: Value = serde_json::from_slice(&B64URL.decode(writ.split('.').nth(1).unwrap()).unwrap()).unwrap();
    s(&payload["jti"]).to_owned()
}

/// Each request's canonical form and digest are what writ computes, and the digest is the
/// SHA-256 of the canonical bytes.
#[test]
fn request_digest_vectors_hold() {
    let doc = read("request-digests.json");
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 5, "{}", vectors.len());
    for v in vectors {
        let name = s(&v["name"]);
        let req = ExecutionRequest::parse(s(&v["request"]).as_bytes(), &Limits::default()).unwrap();
        let object = json!({"action": req.action, "resource": req.resource, "arguments": req.arguments});
        let canonical = canonical_json(&object).unwrap();
        assert_eq!(String::from_utf8(canonical.clone()).unwrap(), s(&v["canonical"]), "{name}: canonical form");
        let digest = req.digest().unwrap();
        assert_eq!(digest.to_string(), s(&v["digest"]), "{name}: digest");
        assert_eq!(format!("sha256:{}", hex::encode(Sha256::digest(&canonical))), s(&v["digest"]), "{name}");
        assert_eq!(RequestDigest::parse(s(&v["digest"])), Some(digest), "{name}: the sha256: form parses");
    }
    // The vectors cover what the documentation says they do.
    let all: String = vectors.iter().map(|v| s(&v["canonical"]).to_owned()).collect();
    for shown in ["\"a\":120,\"b\":120,\"c\":100,\"d\":0", "1e+21", "1e-7", "0.000001", "\\u000f", "\u{2028}"] {
        assert!(all.contains(shown), "no vector shows {shown:?}");
    }
    let unicode = vectors.iter().find(|v| v["name"] == "unicode-and-escapes").unwrap();
    let c = s(&unicode["canonical"]);
    assert!(c.find('\u{1F600}').unwrap() < c.find('\u{FB00}').unwrap(), "UTF-16 order: {c}");
}

/// The writ verifies with writ's own verifier against the published JWKS, inside its
/// window, for its request only, once; the JWKS key is RFC 8037's, named by the
/// thumbprint RFC 8037 publishes; and signing the claims again gives the same bytes
/// (Ed25519 is deterministic).
#[test]
fn writ_vector_verifies() {
    let v = read("writ.json");
    let jwks = &v["jwks"];
    assert_eq!(jwks["keys"][0]["x"], RFC8037_X);
    assert_eq!(jwks["keys"][0]["kid"], RFC8037_THUMBPRINT);
    let token = s(&v["writ"]);
    let call = &v["request"];
    let digest = writ_core::request_digest(s(&call["action"]), s(&call["resource"]), &call["arguments"]).unwrap();
    assert_eq!(digest.to_string(), s(&v["digest"]));
    let digests = read("request-digests.json");
    assert!(digests["vectors"].as_array().unwrap().iter().any(|d| d["digest"] == v["digest"]), "a documented request");
    let (from, until) = (v["valid_from"].as_u64().unwrap(), v["valid_until"].as_u64().unwrap());
    let verifier = || WritVerifier::new(s(&v["issuer"]), jwks, s(&v["audience"]), 0).unwrap();
    let never = |_: &str| false;

    let once = verifier();
    let ok = once.verify(token, &digest, from, &never).unwrap();
    assert_eq!(serde_json::to_value(&ok.claims).unwrap(), v["claims"]);
    let again = once.verify(token, &digest, from, &never).unwrap_err();
    assert_eq!(again.reason, ReasonCode::WritReplayed);
    assert!(verifier().verify(token, &digest, until - 1, &never).is_ok());
    assert_eq!(verifier().verify(token, &digest, until, &never).unwrap_err().reason, ReasonCode::WritExpired);
    assert_eq!(verifier().verify(token, &digest, from - 1, &never).unwrap_err().reason, ReasonCode::WritExpired);
    let other = writ_core::request_digest("write", "fs:/zones/billing", &json!({"path": "/etc/passwd"})).unwrap();
    assert_eq!(verifier().verify(token, &other, from, &never).unwrap_err().reason, ReasonCode::WritBindingMismatch);
    let revoked = |_: &str| true;
    assert_eq!(verifier().verify(token, &digest, from, &revoked).unwrap_err().reason, ReasonCode::WritRevoked);
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = format!("{head}.{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    assert_eq!(verifier().verify(&flipped, &digest, from, &never).unwrap_err().reason, ReasonCode::WritBadSignature);
    let wrong_aud = WritVerifier::new("writ", jwks, "another-enforcement-point", 0).unwrap();
    assert_eq!(wrong_aud.verify(token, &digest, from, &never).unwrap_err().reason, ReasonCode::WritAudience);

    // The private key in the vector is RFC 8037's, and re-signing reproduces the writ.
    assert_eq!(v["private_key_jwk"]["d"], RFC8037_D);
    let claims: WritClaims = serde_json::from_value(v["claims"].clone()).unwrap();
    let signer = WritSigner::from_seeds("writ", &[test_seed()]).unwrap();
    assert_eq!(signer.sign(&claims).unwrap(), token);
    assert_eq!(&signer.jwks(), jwks);
}

/// Every entry is an engine entry in its canonical form; the leaf hashes, root, signed
/// checkpoint, inclusion proof, consistency proof and receipt all verify, and a changed
/// entry does not.
#[test]
fn log_vector_verifies() {
    let v = read("log.json");
    let key = NoteVerifier::from_vkey(s(&v["vkey"])).unwrap();
    let entries: Vec<Vec<u8>> =
        v["entries"].as_array().unwrap().iter().map(|e| s(&e["entry"]).as_bytes().to_vec()).collect();
    let mut kinds = Vec::new();
    for (i, e) in v["entries"].as_array().unwrap().iter().enumerate() {
        let bytes = &entries[i];
        let entry: Entry = serde_json::from_slice(bytes).unwrap();
        assert_eq!(&entry.canonical().unwrap(), bytes, "entry {i} is in its canonical form");
        assert_eq!(Hash::leaf(bytes).to_base64(), s(&e["leaf_hash"]), "entry {i}");
        kinds.push(entry.kind_and_operator().0);
    }
    assert_eq!(
        kinds,
        ["decision", "decision", "outcome", "revocation", "quarantine", "key_rotation", "anonymous_attempts"]
    );
    let leaves: Vec<Hash> = entries.iter().map(|e| Hash::leaf(e)).collect();
    let size = v["tree_size"].as_u64().unwrap();
    assert_eq!(size, leaves.len() as u64);
    let root = root_from_leaves(&leaves);
    assert_eq!(root.to_base64(), s(&v["root"]));

    let (cp, _) = SignedCheckpoint::open(s(&v["checkpoint"]).as_bytes(), &key, &[]).unwrap();
    assert_eq!((cp.checkpoint().size, cp.checkpoint().root), (size, root));

    let inc = &v["inclusion"];
    let index = inc["index"].as_u64().unwrap();
    let proof: Vec<Hash> = inc["proof"].as_array().unwrap().iter().map(|h| Hash::from_base64(s(h)).unwrap()).collect();
    verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
    assert!(verify_inclusion(index, size, &leaves[0], &proof, &root).is_err());

    let con = &v["consistency"];
    let old = con["from"].as_u64().unwrap();
    let old_root = root_from_leaves(&leaves[..old as usize]);
    assert_eq!(old_root.to_base64(), s(&con["from_root"]));
    let proof: Vec<Hash> = con["proof"].as_array().unwrap().iter().map(|h| Hash::from_base64(s(h)).unwrap()).collect();
    verify_consistency(old, size, &proof, &old_root, &root).unwrap();
    assert!(verify_consistency(old, size, &proof, &leaves[0], &root).is_err());

    let receipt = Receipt::parse(s(&v["receipt"])).unwrap();
    assert_eq!(receipt.to_text(), s(&v["receipt"]));
    assert_eq!(receipt.index, index);
    receipt.verify(&entries[index as usize], &key).unwrap();
    let mut changed = entries[index as usize].clone();
    changed[10] ^= 1;
    assert!(receipt.verify(&changed, &key).is_err());
    let stranger = NoteSigner::from_seed("example.invalid/writ/docs-vector", [7; 32]).unwrap().verifier();
    assert!(receipt.verify(&entries[index as usize], &stranger).is_err());
}
