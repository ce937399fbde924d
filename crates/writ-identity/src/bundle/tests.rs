use serde_json::json;

use super::*;
use crate::testkit;

fn ed(seed: u8, kid: &str) -> Value {
    testkit::ed25519_jwk(&testkit::ed25519(seed), kid)
}

fn ec(scalar: u8, kid: &str) -> Value {
    testkit::p256_jwk(&testkit::p256(scalar), kid)
}

fn sample() -> Value {
    json!({"trust_domains": {
        "example.org": {"issuers": [
            {"issuer": "https://idp.example.org", "roles": ["workload", "operator"], "jwks": {"keys": [ed(1, "k1"), ec(2, "k2")]}},
            {"issuer": "https://attest.example.org", "roles": ["attestor"], "jwks": {"keys": [ed(3, "k3")]}}
        ]},
        "other.org": {"issuers": [
            {"issuer": "https://idp.other.org", "roles": ["workload"], "jwks": {"keys": [ed(4, "k4")]}}
        ]}
    }})
}

fn parse(value: &Value) -> Result<TrustBundle, IdentityError> {
    TrustBundle::from_json(value.to_string().as_bytes())
}

fn rejected(value: &Value, expected: &str) {
    let err = parse(value).unwrap_err();
    assert!(matches!(err, IdentityError::Bundle(_)), "{err:?}");
    assert!(err.to_string().contains(expected), "{err} (expected {expected:?})");
}

#[test]
fn a_valid_bundle_resolves_every_kid_to_its_issuer() {
    let bundle = parse(&sample()).unwrap();
    assert_eq!(bundle.trust_domains(), ["example.org", "other.org"]);
    for (kid, domain, issuer, alg) in [
        ("k1", "example.org", "https://idp.example.org", Algorithm::EdDsa),
        ("k2", "example.org", "https://idp.example.org", Algorithm::Es256),
        ("k3", "example.org", "https://attest.example.org", Algorithm::EdDsa),
        ("k4", "other.org", "https://idp.other.org", Algorithm::EdDsa),
    ] {
        let owner = bundle.lookup(kid).unwrap();
        assert_eq!((owner.issuer.trust_domain.as_str(), owner.issuer.issuer.as_str()), (domain, issuer));
        assert_eq!(owner.key.alg(), alg);
        assert!(bundle.contains_kid(kid));
    }
    assert!(bundle.lookup("k5").is_none());
    assert_eq!(bundle.lookup("k3").unwrap().issuer.roles, [Role::Attestor]);
}

use crate::jwk::Algorithm;

#[test]
fn to_json_round_trips() {
    let bundle = parse(&sample()).unwrap();
    let again = TrustBundle::from_json(bundle.to_json().as_bytes()).unwrap();
    assert_eq!(again.to_value(), bundle.to_value());
    assert_eq!(bundle.to_value(), sample());
    assert_eq!(TrustBundle::new().to_value(), json!({"trust_domains": {}}));
}

#[test]
fn duplicate_kids_are_refused_anywhere_in_the_bundle() {
    let mut same_issuer = sample();
    same_issuer["trust_domains"]["example.org"]["issuers"][0]["jwks"]["keys"][1] = ec(2, "k1");
    rejected(&same_issuer, "duplicate kid \"k1\"");
    let mut across_domains = sample();
    across_domains["trust_domains"]["other.org"]["issuers"][0]["jwks"]["keys"][0] = ed(4, "k1");
    rejected(&across_domains, "duplicate kid \"k1\"");
}

#[test]
fn unknown_members_are_refused_at_every_level() {
    let mut top = sample();
    top["version"] = json!(1);
    rejected(&top, "unknown field `version`");
    let mut domain = sample();
    domain["trust_domains"]["other.org"]["refresh"] = json!(60);
    rejected(&domain, "unknown field `refresh`");
    let mut issuer = sample();
    issuer["trust_domains"]["other.org"]["issuers"][0]["audience"] = json!("x");
    rejected(&issuer, "unknown field `audience`");
    let mut jwks = sample();
    jwks["trust_domains"]["other.org"]["issuers"][0]["jwks"]["next"] = json!([]);
    rejected(&jwks, "unknown field `next`");
}

#[test]
fn repeated_json_members_are_refused() {
    let text = format!(
        r#"{{"trust_domains": {{"other.org": {{"issuers": []}}, "other.org": {{"issuers": [{}]}}}}}}"#,
        sample()["trust_domains"]["other.org"]["issuers"][0]
    );
    let err = TrustBundle::from_json(text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("duplicate member \"other.org\""), "{err}");
    let key = r#"{"kty":"OKP","crv":"Ed25519","kid":"k1","kid":"k2","x":"AAAA"}"#;
    let text = format!(
        r#"{{"trust_domains":{{"a.org":{{"issuers":[{{"issuer":"i","roles":["workload"],"jwks":{{"keys":[{key}]}}}}]}}}}}}"#
    );
    let err = TrustBundle::from_json(text.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("duplicate member \"kid\""), "{err}");
}

#[test]
fn invalid_entries_are_refused() {
    let mut bad_domain = sample();
    let other = bad_domain["trust_domains"]["other.org"].clone();
    bad_domain["trust_domains"]["Other.org"] = other;
    rejected(&bad_domain, "trust domain \"Other.org\" is not valid");
    let mut no_issuers = sample();
    no_issuers["trust_domains"]["other.org"]["issuers"] = json!([]);
    rejected(&no_issuers, "lists no issuers");
    let mut no_roles = sample();
    no_roles["trust_domains"]["other.org"]["issuers"][0]["roles"] = json!([]);
    rejected(&no_roles, "no roles");
    let mut twice = sample();
    twice["trust_domains"]["other.org"]["issuers"][0]["roles"] = json!(["workload", "workload"]);
    rejected(&twice, "role workload listed twice");
    let mut unknown_role = sample();
    unknown_role["trust_domains"]["other.org"]["issuers"][0]["roles"] = json!(["admin"]);
    rejected(&unknown_role, "unknown variant `admin`");
    let mut no_keys = sample();
    no_keys["trust_domains"]["other.org"]["issuers"][0]["jwks"]["keys"] = json!([]);
    rejected(&no_keys, "no keys");
    let mut empty_issuer = sample();
    empty_issuer["trust_domains"]["other.org"]["issuers"][0]["issuer"] = json!("");
    rejected(&empty_issuer, "the issuer is empty");
    let mut repeated_issuer = sample();
    let mut copy = repeated_issuer["trust_domains"]["other.org"]["issuers"][0].clone();
    copy["jwks"]["keys"][0] = ed(9, "k9");
    repeated_issuer["trust_domains"]["other.org"]["issuers"].as_array_mut().unwrap().push(copy);
    rejected(&repeated_issuer, "listed twice in the trust domain");
    rejected(&json!({}), "missing field `trust_domains`");
    rejected(&json!("bundle"), "invalid type");
}

#[test]
fn add_validates_like_parsing_and_leaves_the_bundle_unchanged_on_error() {
    let mut bundle = parse(&sample()).unwrap();
    let entry = BundleEntry {
        trust_domain: "third.org".into(),
        issuer: "https://idp.third.org".into(),
        roles: vec![Role::Workload],
        jwks: json!({"keys": [ed(5, "k5"), ed(6, "k1")]}),
    };
    let err = bundle.add(entry.clone()).unwrap_err();
    assert!(err.to_string().contains("duplicate kid \"k1\""), "{err}");
    assert!(!bundle.contains_kid("k5"), "no partial insert");
    assert_eq!(bundle.trust_domains(), ["example.org", "other.org"]);
    bundle.add(BundleEntry { jwks: json!({"keys": [ed(5, "k5")]}), ..entry.clone() }).unwrap();
    assert_eq!(bundle.lookup("k5").unwrap().issuer.trust_domain, "third.org");
    let err = bundle.add(BundleEntry { jwks: json!({"keys": [], "extra": 1}), ..entry }).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
}
