//! Denies that explain themselves: `@reason`, the forbids that decided, the closest permits.

use serde_json::json;
use writ_core::ReasonCode;
use writ_policy::{Explanation, MAX_CLOSEST, MAX_REASON_CHARS, NO_REASON, PolicyOutcome, starter_bundle};

use crate::{bundle, input};

/// The deny's reason code, detail and explanation.
fn denied(o: PolicyOutcome) -> (ReasonCode, String, Explanation) {
    match o {
        PolicyOutcome::Deny { reason, detail, explanation, .. } => {
            (reason, detail, explanation.expect("a policy.denied deny explains itself"))
        }
        other => panic!("expected a deny, got {other:?}"),
    }
}

fn ids(e: &Explanation) -> Vec<&str> {
    e.closest_permits.iter().map(|p| p.policy.as_str()).collect()
}

const POLICIES: &str = r#"
@id("pay-small")
@reason("a payment below 100")
permit (principal, action == Writ::Action::"payment", resource) when { context.arguments.amount < 100 };

@id("pay-stripe-only")
@reason("a payment through stripe by a busy agent")
permit (principal, action in [Writ::Action::"payment", Writ::Action::"deploy"], resource == Writ::Resource::"payments:stripe")
when { context.usage.last_minute > 100 };

@id("pay-elsewhere")
@reason("a payment through another provider")
permit (principal, action == Writ::Action::"payment", resource == Writ::Resource::"payments:other");

@id("deploy-any")
@reason("a deploy, any time")
permit (principal, action == Writ::Action::"deploy", resource);

@id("anything-unexplained")
permit (principal, action, resource is Writ::Resource) when { context.lineage.depth > 10 };

@id("no-refunds")
@reason("refunds go through support")
forbid (principal, action == Writ::Action::"payment", resource) when { context.arguments.currency == "REFUND" };
"#;

#[test]
fn closest_permits_are_chosen_by_action_and_resource_scope() {
    let c = bundle(POLICIES).compile().unwrap();
    let (reason, detail, e) = denied(c.evaluate(&input("payment", json!({"amount": 500, "currency": "EUR"}))));
    assert_eq!(reason, ReasonCode::PolicyDenied, "the reason code is unchanged");
    // Same action, a scope admitting payments:stripe; not the deploy-only permit, not the
    // permit of another resource.
    assert_eq!(ids(&e), ["anything-unexplained", "pay-small", "pay-stripe-only"]);
    assert!(e.forbidden_by.is_empty());
    assert_eq!(e.closest_permits[1].requires, "a payment below 100");
    assert_eq!(e.closest_permits[0].requires, NO_REASON, "a permit without @reason gets the generic text");
    assert!(detail.starts_with("no policy permits this; closest: "), "{detail}");
    assert!(detail.contains("pay-small requires: a payment below 100"), "{detail}");
    assert!(!detail.contains("pay-elsewhere") && !detail.contains("deploy-any"), "{detail}");
}

#[test]
fn a_forbid_gives_its_reason_and_no_closest_permits() {
    let c = bundle(POLICIES).compile().unwrap();
    let (reason, detail, e) = denied(c.evaluate(&input("payment", json!({"amount": 5, "currency": "REFUND"}))));
    assert_eq!(reason, ReasonCode::PolicyDenied);
    assert_eq!(e.forbidden_by.len(), 1);
    assert_eq!(e.forbidden_by[0].policy, "no-refunds");
    assert_eq!(e.forbidden_by[0].reason, "refunds go through support");
    assert!(e.closest_permits.is_empty());
    assert_eq!(detail, "forbidden by no-refunds (refunds go through support)");
}

#[test]
fn a_bundle_without_reasons_still_explains_with_a_generic_text() {
    let c = bundle(
        r#"@id("pay") permit (principal, action == Writ::Action::"payment", resource) when { context.arguments.amount < 10 };
           @id("no-eur") forbid (principal, action == Writ::Action::"payment", resource) when { context.arguments.currency == "EUR" };"#,
    )
    .compile()
    .unwrap();
    assert_eq!(c.policies_without_reason().collect::<Vec<_>>(), ["no-eur", "pay"]);
    let (_, detail, e) = denied(c.evaluate(&input("payment", json!({"amount": 50, "currency": "USD"}))));
    assert_eq!(ids(&e), ["pay"]);
    assert_eq!(e.closest_permits[0].requires, NO_REASON);
    assert!(detail.contains("pay requires: (no @reason given)"), "{detail}");
    let (_, _, e) = denied(c.evaluate(&input("payment", json!({"amount": 5, "currency": "EUR"}))));
    assert_eq!(e.forbidden_by[0].reason, NO_REASON);
    // No permit for this action at all.
    let (_, detail, e) = denied(c.evaluate(&input("read", json!({}))));
    assert!(e.closest_permits.is_empty() && e.forbidden_by.is_empty());
    assert!(detail.contains("no permit policy applies"), "{detail}");
}

#[test]
fn other_denies_carry_no_explanation() {
    let c = bundle(POLICIES).compile().unwrap();
    for o in [
        c.evaluate(&input("undeclared", json!({}))),
        c.evaluate(&input("payment", json!({"amount": "ten", "currency": "EUR"}))),
    ] {
        assert!(matches!(o, PolicyOutcome::Deny { explanation: None, .. }), "{o:?}");
    }
}

#[test]
fn a_hostile_reason_is_bounded_and_escaped() {
    // Cedar string escapes put control characters, a bidi override and a line separator in
    // the annotation; and the text is far longer than any answer should carry.
    let long = "x".repeat(10 * MAX_REASON_CHARS);
    let policies = format!(
        r#"@id("evil") @reason("line\nbreak\u{{1b}}[31mred\u{{0}}\u{{202e}}\u{{2028}}end{long}")
           permit (principal, action == Writ::Action::"payment", resource) when {{ context.arguments.amount < 1 }};"#
    );
    let c = bundle(&policies).compile().unwrap();
    let (_, detail, e) = denied(c.evaluate(&input("payment", json!({"amount": 5, "currency": "EUR"}))));
    let requires = &e.closest_permits[0].requires;
    assert!(requires.starts_with(r"line\u{a}break\u{1b}[31mred\u{0}\u{202e}\u{2028}end"), "{requires}");
    assert!(!requires.chars().any(char::is_control), "{requires:?}");
    assert!(!detail.chars().any(char::is_control), "{detail:?}");
    assert!(requires.chars().count() <= MAX_REASON_CHARS * 6 && requires.ends_with('…'), "{}", requires.len());
    assert!(detail.len() < 4 * MAX_REASON_CHARS, "{}", detail.len());
}

#[test]
fn at_most_a_few_closest_permits_are_named_and_the_rest_counted() {
    let policies: String = (0..MAX_CLOSEST + 5)
        .map(|i| {
            format!(
                "@id(\"p{i:02}\") @reason(\"rule {i}\") permit (principal, action == Writ::Action::\"payment\", resource) when {{ context.arguments.amount < {i} }};\n"
            )
        })
        .collect();
    let c = bundle(&policies).compile().unwrap();
    let (_, detail, e) = denied(c.evaluate(&input("payment", json!({"amount": 500, "currency": "EUR"}))));
    assert_eq!(e.closest_permits.len(), MAX_CLOSEST);
    assert_eq!(e.more_permits, 5);
    assert!(detail.ends_with("; and 5 more"), "{detail}");
}

#[test]
fn every_starter_policy_has_a_reason_and_payment_denies_name_the_payment_permits() {
    let c = starter_bundle().unwrap().compile().unwrap();
    assert_eq!(c.policies_without_reason().count(), 0);
    let mut night = input("payment", json!({"amount": 250, "currency": "EUR"}));
    night.now = "2026-11-26T03:00:00Z".into();
    let (_, _, e) = denied(c.evaluate(&night));
    assert_eq!(ids(&e), ["payment-business-hours", "payment-needs-approval"]);
    assert!(e.closest_permits[0].requires.contains("09:00 and 17:00 UTC"), "{:?}", e.closest_permits);
}
