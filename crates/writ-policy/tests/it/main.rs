//! writ-policy: the starter bundle against its own cases, bundle digests and signatures,
//! strict validation, and fail-closed evaluation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed unwrap is a failed test"
)]

use serde_json::{Value, json};
use writ_core::ReasonCode;
use writ_log::NoteSigner;
use writ_policy::{
    Bundle, EntityInput, PolicyError, PolicyInput, PolicyOutcome, sign_bundle, starter_bundle, verify_bundle_signature,
};

mod explain;

const SCHEMA: &str = include_str!("../../starter/schema.cedarschema");
const MANIFEST: &str = r#"{"name": "t", "version": "1"}"#;

fn bundle(policies: &str) -> Bundle {
    Bundle::from_parts(MANIFEST, policies, SCHEMA, None, None).unwrap()
}

fn input(action: &str, arguments: Value) -> PolicyInput {
    let context = json!({
        "lineage": {"depth": 0, "root": "w-root"},
        "usage": {"last_minute": 0, "last_hour": 0},
        "arguments": arguments,
    });
    PolicyInput {
        principal: EntityInput {
            id: "spiffe://demo.example/agent/billing-1".into(),
            attrs: json!({"trust_domain": "demo.example", "zone": "billing"}).as_object().unwrap().clone(),
        },
        action: action.into(),
        resource: "payments:stripe".into(),
        now: "2026-11-26T10:00:00Z".into(),
        context: context.as_object().unwrap().clone(),
    }
}

fn reason(o: &PolicyOutcome) -> Option<ReasonCode> {
    match o {
        PolicyOutcome::Deny { reason, .. } => Some(*reason),
        PolicyOutcome::Allow { .. } | PolicyOutcome::Approval { .. } => None,
    }
}

#[test]
fn the_starter_bundle_passes_its_own_cases() {
    let b = starter_bundle().unwrap();
    let compiled = b.compile().unwrap();
    let report = compiled.run_tests(b.tests());
    assert!(b.tests().len() >= 12);
    assert_eq!(report.failed, 0, "{:#?}", report.results.iter().filter(|r| !r.passed).collect::<Vec<_>>());
}

#[test]
fn the_digest_covers_every_part() {
    let b = starter_bundle().unwrap();
    let d = b.digest();
    assert_eq!(starter_bundle().unwrap().digest(), d, "digest is deterministic");
    let tmp = tempfile::tempdir().unwrap();
    b.write_dir(tmp.path()).unwrap();
    assert_eq!(Bundle::load_dir(tmp.path()).unwrap().digest(), d, "a round trip through files keeps the digest");
    let parts = |i: usize, extra: &str| {
        let mut p = [
            include_str!("../../starter/manifest.json").to_owned(),
            include_str!("../../starter/policies.cedar").to_owned(),
            SCHEMA.to_owned(),
            include_str!("../../starter/entities.json").to_owned(),
            include_str!("../../starter/tests.json").to_owned(),
        ];
        p[i] = match i {
            0 => p[i].replace("\"version\": \"", "\"version\": \"0.0.1+"),
            3 => p[i].replace("\"billing\"", "\"finance\""),
            4 => p[i].replace("an agent reads", "an agent looks at"),
            _ => format!("{}\n// {extra}\n", p[i]),
        };
        Bundle::from_parts(&p[0], &p[1], &p[2], Some(&p[3]), Some(&p[4])).unwrap().digest()
    };
    for i in 0..5 {
        assert_ne!(parts(i, "\"x\""), d, "part {i} is not covered by the digest");
    }
    assert!(d.to_string().starts_with("sha256:") && d.to_string().len() == 71);
}

#[test]
fn only_a_trusted_key_signing_exactly_this_bundle_is_accepted() {
    let b = starter_bundle().unwrap();
    let key = NoteSigner::from_seed("policy.demo.example", [5; 32]).unwrap();
    let other = NoteSigner::from_seed("policy.demo.example", [6; 32]).unwrap();
    let sig = sign_bundle(&b, &key).unwrap();
    assert_eq!(verify_bundle_signature(&b, &sig, &[key.verifier()]).unwrap(), "policy.demo.example");
    // Signed by a key that is not trusted.
    let by_other = sign_bundle(&b, &other).unwrap();
    assert!(matches!(verify_bundle_signature(&b, &by_other, &[key.verifier()]), Err(PolicyError::Untrusted(_))));
    // A bundle changed after signing.
    let changed = bundle("@id(\"all\") permit (principal, action, resource);");
    assert!(matches!(verify_bundle_signature(&changed, &sig, &[key.verifier()]), Err(PolicyError::Untrusted(_))));
    // No signature, garbage, and a truncated one.
    for bad in ["", "garbage", &sig[..sig.len() - 10]] {
        assert!(verify_bundle_signature(&b, bad, &[key.verifier()]).is_err());
    }
    assert_eq!(PolicyError::Untrusted(String::new()).reason(), ReasonCode::PolicyBundleUntrusted);
}

#[test]
fn an_attestation_requirement_must_name_a_declared_action() {
    let m = r#"{"name": "t", "version": "1", "require_attestation": ["deploy"]}"#;
    let ok = Bundle::from_parts(m, "", SCHEMA, None, None).unwrap().compile().unwrap();
    assert!(ok.requires_attestation("deploy") && !ok.requires_attestation("read"));
    let bad = r#"{"name": "t", "version": "1", "require_attestation": ["launch"]}"#;
    assert!(matches!(Bundle::from_parts(bad, "", SCHEMA, None, None).unwrap().compile(), Err(PolicyError::Invalid(_))));
}

#[test]
fn bundles_that_fail_strict_validation_do_not_compile() {
    for (what, policies) in [
        ("undeclared attribute", "@id(\"a\") permit (principal, action, resource) when { principal.clearance > 3 };"),
        ("undeclared action", "@id(\"a\") permit (principal, action == Writ::Action::\"delete\", resource);"),
        (
            "type error",
            "@id(\"a\") permit (principal, action == Writ::Action::\"read\", resource) when { principal.zone > 3 };",
        ),
        (
            "optional attribute without has",
            "@id(\"a\") permit (principal, action == Writ::Action::\"write\", resource) when { resource.zone == \"x\" };",
        ),
        ("missing @id", "permit (principal, action, resource);"),
        (
            "duplicate @id",
            "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
        ),
        ("syntax error", "@id(\"a\") permit (principal, action, resource"),
    ] {
        assert!(matches!(bundle(policies).compile(), Err(PolicyError::Invalid(_))), "compiled: {what}");
    }
    assert!(Bundle::from_parts("{\"name\": \"t\"}", "", SCHEMA, None, None).is_err(), "manifest without version");
    assert!(
        Bundle::from_parts(MANIFEST, "", "entity Foo;", None, None).unwrap().compile().is_err(),
        "schema without Writ types"
    );
    assert!(
        Bundle::from_parts(MANIFEST, "", SCHEMA, Some("[{\"uid\": 1}]"), None).unwrap().compile().is_err(),
        "bad entities"
    );
}

/// `@approval` turns a permit into "wait for an operator"; any determining permit that
/// carries it does (a broad permit beside it does not waive it); a forbid still wins; and
/// the annotation on a forbid does not compile.
#[test]
fn approval_policies_wait_for_an_operator() {
    let b = bundle(
        "@id(\"small\") permit (principal, action == Writ::Action::\"payment\", resource) when { context.arguments.amount < 100 };\n\
         @id(\"any\") permit (principal, action == Writ::Action::\"payment\", resource) when { context.arguments.amount < 500 };\n\
         @id(\"big\") @approval(\"big payments\") permit (principal, action == Writ::Action::\"payment\", resource) when { context.arguments.amount >= 50 };\n\
         @id(\"huge\") forbid (principal, action == Writ::Action::\"payment\", resource) when { context.arguments.amount >= 1000 };",
    );
    let c = b.compile().unwrap();
    assert_eq!(c.approval_policies().collect::<Vec<_>>(), ["big"]);
    let pay = |amount: i64| c.evaluate(&input("payment", json!({"amount": amount, "currency": "EUR"})));
    assert_eq!(pay(10), PolicyOutcome::Allow { policies: vec!["any".into(), "small".into()] });
    match pay(60) {
        PolicyOutcome::Approval { policies, detail } => {
            assert_eq!(policies, ["any", "big", "small"]);
            assert!(detail.contains("big: big payments"), "{detail}");
        }
        other => panic!("expected an approval, got {other:?}"),
    }
    assert!(matches!(pay(700), PolicyOutcome::Approval { .. }));
    assert_eq!(reason(&pay(2000)), Some(ReasonCode::PolicyDenied), "a forbid is never approved away");
    let forbid =
        bundle("@id(\"no\") @approval(\"x\") forbid (principal, action == Writ::Action::\"payment\", resource);");
    let err = forbid.compile().unwrap_err().to_string();
    assert!(err.contains("permit policies only"), "{err}");
    // A misspelt annotation would silently make the permit unconditional: refused.
    for typo in ["Approval", "approve", "approvals"] {
        let b = bundle(&format!(
            "@id(\"p\") @{typo}(\"x\") permit (principal, action == Writ::Action::\"payment\", resource);"
        ));
        let err = b.compile().unwrap_err().to_string();
        assert!(err.contains("did you mean @approval"), "{typo}: {err}");
    }
}

/// Cedar skips a policy whose evaluation errors; an erroring forbid would vanish and the
/// permit would win. writ denies.
#[test]
fn an_erroring_forbid_denies_instead_of_vanishing() {
    let b = bundle(
        "@id(\"allow-payments\") permit (principal, action == Writ::Action::\"payment\", resource);\n\
         @id(\"overflowing-forbid\") forbid (principal, action == Writ::Action::\"payment\", resource)\n\
           when { context.arguments.amount * 4611686018427387904 > 1 };",
    );
    let c = b.compile().unwrap();
    let outcome = c.evaluate(&input("payment", json!({"amount": 2, "currency": "EUR"})));
    assert_eq!(reason(&outcome), Some(ReasonCode::PolicyEvaluationError), "{outcome:?}");
    // Without the overflow the same bundle allows: the error was the only reason to deny.
    let outcome = c.evaluate(&input("payment", json!({"amount": 0, "currency": "EUR"})));
    assert!(outcome.is_allow(), "{outcome:?}");
}

#[test]
fn missing_or_mistyped_facts_deny_and_are_never_defaulted() {
    let c = starter_bundle().unwrap().compile().unwrap();
    let ok = input("payment", json!({"amount": 10, "currency": "EUR"}));
    assert!(c.evaluate(&ok).is_allow());
    // Arguments: missing, wrong type, extra.
    for args in [
        json!({"currency": "EUR"}),
        json!({"amount": "10", "currency": "EUR"}),
        json!({"amount": 10, "currency": "EUR", "to": "x"}),
    ] {
        assert_eq!(reason(&c.evaluate(&input("payment", args.clone()))), Some(ReasonCode::RequestMalformed), "{args}");
    }
    // A principal without the zone claim cannot be evaluated.
    let mut no_zone = ok.clone();
    no_zone.principal.attrs.remove("zone");
    assert_eq!(reason(&c.evaluate(&no_zone)), Some(ReasonCode::PolicyEvaluationError));
    // Context without usage counters.
    let mut no_usage = ok.clone();
    no_usage.context.remove("usage");
    assert_eq!(reason(&c.evaluate(&no_usage)), Some(ReasonCode::RequestMalformed));
    // A time that is not a datetime.
    let mut bad_time = ok.clone();
    bad_time.now = "yesterday".into();
    assert!(!c.evaluate(&bad_time).is_allow());
    // Undeclared action.
    assert_eq!(reason(&c.evaluate(&input("format_disk", json!({})))), Some(ReasonCode::PolicyDenied));
}

/// Evaluates every case of the starter bundle, each outcome serialized.
fn evaluate_all(c: &writ_policy::CompiledBundle, cases: &[writ_policy::TestCase]) -> Vec<String> {
    cases
        .iter()
        .map(|t| {
            let i = PolicyInput {
                principal: t.principal.clone(),
                action: t.action.clone(),
                resource: t.resource.clone(),
                now: t.now.clone(),
                context: t.context.clone(),
            };
            serde_json::to_string(&c.evaluate(&i)).unwrap()
        })
        .collect()
}

#[test]
fn evaluation_is_deterministic_across_threads() {
    let c = std::sync::Arc::new(starter_bundle().unwrap().compile().unwrap());
    let cases = starter_bundle().unwrap().tests().to_vec();
    let first = evaluate_all(&c, &cases);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (c, cases) = (c.clone(), cases.clone());
            std::thread::spawn(move || evaluate_all(&c, &cases))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), first);
    }
}

/// The principal's entity is cached by id and attributes: the same id with other verified
/// attributes is a different principal, decided afresh.
#[test]
fn a_cached_principal_never_lends_its_attributes() {
    let c = writ_policy::starter_bundle().unwrap().compile().unwrap();
    let mut write = input("write", json!({"path": "/zones/billing/a"}));
    write.resource = "fs:/zones/billing".into();
    for _ in 0..3 {
        assert!(c.evaluate(&write).is_allow());
        let mut other = write.clone();
        other.principal.attrs.insert("zone".into(), json!("support"));
        assert_eq!(reason(&c.evaluate(&other)), Some(ReasonCode::PolicyDenied));
        let mut bad = write.clone();
        bad.principal.attrs.insert("zone".into(), json!(7));
        assert_eq!(reason(&c.evaluate(&bad)), Some(ReasonCode::PolicyEvaluationError));
    }
}

/// Requests are checked against the schema once per shape (action, ids, context types):
/// a request whose values have other types than a shape already seen is still refused,
/// however often the good shape was seen before and in whatever order they come.
#[test]
fn a_checked_request_shape_never_lends_its_check() {
    let c = writ_policy::starter_bundle().unwrap().compile().unwrap();
    let good = input("payment", json!({"amount": 10, "currency": "EUR"}));
    let mistyped = [
        json!({"amount": "10", "currency": "EUR"}),
        json!({"amount": 10, "currency": 7}),
        json!({"amount": 10, "currency": ["EUR"]}),
        json!({"amount": 10, "currency": {"code": "EUR"}}),
        json!({"amount": true, "currency": "EUR"}),
        json!({"amount": 10}),
        json!({"amount": 10, "currency": "EUR", "to": "x"}),
        json!({"currency": "EUR", "amount": 10, "amount2": 1}),
    ];
    for round in 0..3 {
        assert!(c.evaluate(&good).is_allow(), "round {round}");
        for args in &mistyped {
            let outcome = c.evaluate(&input("payment", args.clone()));
            assert_eq!(reason(&outcome), Some(ReasonCode::RequestMalformed), "round {round}: {args} gave {outcome:?}");
        }
        // The good shape with other values is decided on those values.
        let over = c.evaluate(&input("payment", json!({"amount": 1_000_000, "currency": "EUR"})));
        assert_eq!(reason(&over), Some(ReasonCode::PolicyDenied), "round {round}");
        // Another action with the same context shape is checked for that action.
        let read = c.evaluate(&input("read", json!({"amount": 10, "currency": "EUR"})));
        assert_eq!(reason(&read), Some(ReasonCode::RequestMalformed), "round {round}");
    }
    // Lineage facts of the wrong type, after the good shape was seen.
    let mut bad_lineage = good.clone();
    bad_lineage.context.insert("lineage".into(), json!({"depth": "0", "root": "w-root"}));
    assert_eq!(reason(&c.evaluate(&bad_lineage)), Some(ReasonCode::RequestMalformed));
}
