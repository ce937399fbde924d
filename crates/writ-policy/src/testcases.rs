//! A bundle's own test cases (`tests.json`, run by `writ policy test`): requests with the
//! decision, and for denials the reason code, that the policy author expects.

use serde::{Deserialize, Serialize};
use writ_core::ReasonCode;

use crate::compiled::{CompiledBundle, EntityInput, PolicyInput, PolicyOutcome};

/// One expected decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// What the case checks.
    pub name: String,
    /// The acting agent.
    pub principal: EntityInput,
    /// Action name.
    pub action: String,
    /// Resource id.
    pub resource: String,
    /// Evaluation time (RFC 3339, UTC).
    pub now: String,
    /// The rest of the context.
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
    /// `allow`, `approval` or `deny`.
    pub expect: Expect,
    /// For a deny, the reason code expected (any, if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
}

/// An expected outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Permitted once an operator approves.
    Approval,
    /// Denied.
    Deny,
}

/// The result of one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The case's name.
    pub name: String,
    /// Whether the outcome was the expected one.
    pub passed: bool,
    /// What the bundle decided.
    pub outcome: PolicyOutcome,
}

/// The results of a bundle's cases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Every case, in order.
    pub results: Vec<TestResult>,
}

impl CompiledBundle {
    /// Runs test cases against this bundle.
    pub fn run_tests(&self, cases: &[TestCase]) -> TestReport {
        let results: Vec<TestResult> = cases
            .iter()
            .map(|c| {
                let outcome = self.evaluate(&PolicyInput {
                    principal: c.principal.clone(),
                    action: c.action.clone(),
                    resource: c.resource.clone(),
                    now: c.now.clone(),
                    context: c.context.clone(),
                });
                let passed = match (&c.expect, &outcome) {
                    (Expect::Allow, PolicyOutcome::Allow { .. }) => true,
                    (Expect::Approval, PolicyOutcome::Approval { .. }) => true,
                    (Expect::Deny, PolicyOutcome::Deny { reason, .. }) => c.reason.is_none_or(|r| r == *reason),
                    _ => false,
                };
                TestResult { name: c.name.clone(), passed, outcome }
            })
            .collect();
        let passed = results.iter().filter(|r| r.passed).count();
        TestReport { passed, failed: results.len() - passed, results }
    }
}
