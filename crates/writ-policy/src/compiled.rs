//! A validated bundle and its fail-closed evaluation with Cedar (`cedar-policy`).
//!
//! Human approval (SPEC.md §1) is written in the policy itself: a `permit` policy carrying
//! an `@approval("why")` annotation permits only with an operator's approval. When Cedar
//! allows and any determining permit carries the annotation, the outcome is
//! [`PolicyOutcome::Approval`], not an allow: requiring approval is the stricter reading,
//! so a broad permit matching beside it does not waive it. The annotation on a `forbid` is
//! refused when the bundle compiles (a forbid cannot be approved away).
//!
//! A `policy.denied` deny explains itself (module `explain`): the forbids that decided with
//! their `@reason`, or, when no permit applied, the permits that came closest with theirs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use cedar_policy_core::ast::{self as core, Value as CoreValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use writ_core::ReasonCode;

use crate::PolicyError;
use crate::bundle::{Bundle, BundleDigest};
use crate::explain::{ClosestPermit, Explanation, ForbiddenBy, MAX_CLOSEST, NO_REASON, PermitScope, reason_of};

const AGENT: &str = "Writ::Agent";
const RESOURCE: &str = "Writ::Resource";
const ACTION: &str = "Writ::Action";

/// An entity as a decision names it: its id and (for principals) attributes taken from
/// verified claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityInput {
    /// Entity id (a SPIFFE ID for principals).
    pub id: String,
    /// Attributes.
    #[serde(default)]
    pub attrs: Map<String, Value>,
}

/// Everything a policy decision is a function of, besides the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The acting agent.
    pub principal: EntityInput,
    /// The action name (a `Writ::Action` id).
    pub action: String,
    /// The resource id (a `Writ::Resource`; attributes come from the bundle's entities).
    pub resource: String,
    /// Evaluation time, RFC 3339 in UTC (`2026-11-26T10:00:00Z`); `context.now` in Cedar.
    pub now: String,
    /// The rest of the context (lineage, usage, runtime, arguments), shaped as the
    /// action's context type declares.
    #[serde(default)]
    pub context: Map<String, Value>,
}

/// The policy stage's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PolicyOutcome {
    /// Permitted by these policies, and no forbid applied.
    Allow {
        /// Ids of the determining permit policies.
        policies: Vec<String>,
    },
    /// Permitted by these policies, of which at least one requires a human approval: the
    /// decision waits for an operator.
    Approval {
        /// Ids of the determining permit policies.
        policies: Vec<String>,
        /// Why approval is needed (the `@approval` texts).
        detail: String,
    },
    /// Denied.
    Deny {
        /// Why.
        reason: ReasonCode,
        /// Ids of the determining forbid policies, if any.
        policies: Vec<String>,
        /// Human-readable detail.
        detail: String,
        /// For a `policy.denied` deny by the policies (not an undeclared action): the
        /// forbids that decided or the permits that came closest, with their `@reason`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        explanation: Option<Explanation>,
    },
}

impl PolicyOutcome {
    fn deny(reason: ReasonCode, detail: impl Into<String>) -> Self {
        PolicyOutcome::Deny { reason, policies: Vec::new(), detail: detail.into(), explanation: None }
    }

    /// True for an allow.
    pub fn is_allow(&self) -> bool {
        matches!(self, PolicyOutcome::Allow { .. })
    }
}

/// A bundle whose policies validated against its schema in strict mode.
pub struct CompiledBundle {
    digest: BundleDigest,
    name: String,
    version: String,
    policies: PolicySet,
    schema: Schema,
    entities: Entities,
    actions: HashSet<String>,
    require_attestation: HashSet<String>,
    // The manifest's per-action cap on a writ's lifetime, in seconds.
    max_lifetime: BTreeMap<String, u64>,
    // Permit policies that need a human approval, by id, with the annotation's text.
    approval: BTreeMap<String, String>,
    // Every permit's scope and `@reason`, by id: the candidates for the closest permits.
    permits: Vec<PermitScope>,
    // Every forbid's `@reason`, by id.
    forbids: BTreeMap<String, String>,
    // Ids of the policies without `@reason` (`writ policy check` warns about them).
    unexplained: Vec<String>,
    authorizer: Authorizer,
    // `Writ::Agent`, `Writ::Action`, `Writ::Resource`, parsed once (parsing a name runs
    // Cedar's parser).
    types: [EntityTypeName; 3],
    // The bundle's entities plus one principal, by principal id and attributes: building
    // them (a copy of the entity store and the principal checked against the schema) is a
    // third of an evaluation, and an agent makes many calls with the same credential.
    principals: Mutex<HashMap<String, Arc<Entities>>>,
    // Requests already checked against the schema, by their shape (see `shape_of`).
    validated: Mutex<HashSet<String>>,
}

/// Principals whose entity sets are kept per bundle; the cache is emptied when full.
const PRINCIPAL_CACHE: usize = 4096;

/// Request shapes kept per bundle as checked against the schema; emptied when full.
const SHAPE_CACHE: usize = 16_384;

impl std::fmt::Debug for CompiledBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledBundle").field("name", &self.name).field("digest", &self.digest).finish_non_exhaustive()
    }
}

fn invalid(why: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(why.into())
}

impl CompiledBundle {
    pub(crate) fn new(
        bundle: &Bundle,
        policies_src: &str,
        schema_src: &str,
        entities: Option<&Value>,
    ) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_src).map_err(|e| invalid(format!("schema: {e}")))?;
        let type_name = |ty: &str| EntityTypeName::from_str(ty).map_err(|e| invalid(e.to_string()));
        for ty in [AGENT, RESOURCE] {
            let name = type_name(ty)?;
            if !schema.entity_types().any(|t| *t == name) {
                return Err(invalid(format!("the schema must declare the entity type {ty}")));
            }
        }
        let parsed = PolicySet::from_str(policies_src).map_err(|e| invalid(format!("policies: {e}")))?;
        let action_type = type_name(ACTION)?;
        let declared: Vec<EntityUid> = schema.actions().filter(|a| *a.type_name() == action_type).cloned().collect();
        let action_entities = schema.action_entities().map_err(|e| invalid(format!("schema actions: {e}")))?;
        let (mut permits, mut forbids, mut unexplained) = (Vec::new(), BTreeMap::new(), Vec::new());
        // Name each policy by its @id annotation, so decisions and logs say which rule.
        let mut policies = PolicySet::new();
        let mut approval = BTreeMap::new();
        for p in parsed.policies() {
            let id =
                p.annotation("id").ok_or_else(|| invalid(format!("policy {} has no @id(\"…\") annotation", p.id())))?;
            // A misspelt approval annotation would silently make the permit unconditional.
            if let Some((key, _)) =
                p.annotations().find(|(k, _)| *k != "approval" && k.to_ascii_lowercase().starts_with("approv"))
            {
                return Err(invalid(format!(
                    "policy @id({id:?}): unknown annotation @{key} (did you mean @approval?)"
                )));
            }
            if let Some(why) = p.annotation("approval") {
                if p.effect() != cedar_policy::Effect::Permit {
                    return Err(invalid(format!("policy @id({id:?}): @approval applies to permit policies only")));
                }
                approval.insert(id.to_owned(), why.to_owned());
            }
            let reason = reason_of(p);
            if reason.is_none() {
                unexplained.push(id.to_owned());
            }
            match p.effect() {
                cedar_policy::Effect::Permit => permits.push(PermitScope::new(id, p, &declared, &action_entities)),
                cedar_policy::Effect::Forbid => {
                    forbids.insert(id.to_owned(), reason.unwrap_or_else(|| NO_REASON.to_owned()));
                }
            }
            policies.add(p.new_id(PolicyId::new(id))).map_err(|e| invalid(format!("policy @id({id:?}): {e}")))?;
        }
        if parsed.templates().next().is_some() {
            return Err(invalid("policy templates are not supported in bundles"));
        }
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation.validation_errors().map(|e| e.to_string()).collect();
            return Err(invalid(format!("policies do not validate against the schema: {}", errors.join("; "))));
        }
        let entities = match entities {
            None => Entities::empty(),
            Some(v) => {
                Entities::from_json_value(v.clone(), Some(&schema)).map_err(|e| invalid(format!("entities: {e}")))?
            }
        };
        let actions: HashSet<String> = declared.iter().map(|a| a.id().unescaped().to_owned()).collect();
        permits.sort_by(|a, b| a.id.cmp(&b.id));
        unexplained.sort();
        let m = bundle.manifest();
        let require_attestation: HashSet<String> = m.require_attestation.iter().cloned().collect();
        if let Some(a) = require_attestation.iter().find(|a| !actions.contains(*a)) {
            return Err(invalid(format!("require_attestation names {a:?}, which the schema does not declare")));
        }
        for (a, secs) in &m.max_lifetime_seconds {
            if !actions.contains(a) {
                return Err(invalid(format!("max_lifetime_seconds names {a:?}, which the schema does not declare")));
            }
            if *secs == 0 {
                return Err(invalid(format!(
                    "max_lifetime_seconds for {a:?} is 0: a writ must live at least a second"
                )));
            }
        }
        Ok(CompiledBundle {
            digest: bundle.digest(),
            name: m.name.clone(),
            version: m.version.clone(),
            policies,
            schema,
            entities,
            actions,
            require_attestation,
            max_lifetime: m.max_lifetime_seconds.clone(),
            approval,
            permits,
            forbids,
            unexplained,
            authorizer: Authorizer::new(),
            types: [type_name(AGENT)?, action_type, type_name(RESOURCE)?],
            principals: Mutex::new(HashMap::new()),
            validated: Mutex::new(HashSet::new()),
        })
    }

    /// The bundle digest.
    pub fn digest(&self) -> BundleDigest {
        self.digest
    }

    /// The bundle name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bundle version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// True if the manifest requires a runtime attestation for this action.
    pub fn requires_attestation(&self, action: &str) -> bool {
        self.require_attestation.contains(action)
    }

    /// The manifest's cap on the lifetime of a writ for this action, in seconds, if it sets one.
    pub fn max_lifetime(&self, action: &str) -> Option<u64> {
        self.max_lifetime.get(action).copied()
    }

    /// A writ's lifetime for this action: `ttl`, capped by [`CompiledBundle::max_lifetime`].
    pub fn writ_lifetime(&self, action: &str, ttl: u64) -> u64 {
        self.max_lifetime(action).map_or(ttl, |cap| cap.min(ttl))
    }

    /// Ids of the policies that permit only with a human approval.
    pub fn approval_policies(&self) -> impl Iterator<Item = &str> {
        self.approval.keys().map(String::as_str)
    }

    /// Ids of the policies without a `@reason` annotation (their denies explain themselves
    /// with a generic text).
    pub fn policies_without_reason(&self) -> impl Iterator<Item = &str> {
        self.unexplained.iter().map(String::as_str)
    }

    /// True if the schema declares this action.
    pub fn declares_action(&self, action: &str) -> bool {
        self.actions.contains(action)
    }

    /// Decides, failing closed (see the crate docs). Deterministic: the same bundle and
    /// input always give the same outcome.
    pub fn evaluate(&self, input: &PolicyInput) -> PolicyOutcome {
        match catch_unwind(AssertUnwindSafe(|| self.evaluate_inner(input))) {
            Ok(outcome) => outcome,
            Err(_) => PolicyOutcome::deny(ReasonCode::PolicyEvaluationError, "policy evaluation panicked"),
        }
    }

    fn evaluate_inner(&self, input: &PolicyInput) -> PolicyOutcome {
        fault_point(&input.action);
        if !self.declares_action(&input.action) {
            return PolicyOutcome::deny(
                ReasonCode::PolicyDenied,
                format!("the action {:?} is not declared", input.action),
            );
        }
        let [agent, action_type, resource_type] = &self.types;
        let uid = |ty: &EntityTypeName, id: &str| EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id));
        let (principal, action, resource) =
            (uid(agent, &input.principal.id), uid(action_type, &input.action), uid(resource_type, &input.resource));
        // The context and the principal are built as Cedar values directly (no JSON
        // round trip); `Request::new` and `Entities` then check them against the schema.
        let context = match context_of(input) {
            Ok(c) => c,
            Err(e) => {
                return PolicyOutcome::deny(
                    ReasonCode::RequestMalformed,
                    format!("the request does not match the context of {:?}: {e}", input.action),
                );
            }
        };
        let entities = match self.entities_with(&principal, &input.principal) {
            Ok(e) => e,
            Err(e) => {
                return PolicyOutcome::deny(
                    ReasonCode::PolicyEvaluationError,
                    format!("the principal's verified attributes do not fit the schema: {e}"),
                );
            }
        };
        // Cedar's request check (the principal's and resource's types for the action, the
        // context against the action's context type) depends on the entity ids and on the
        // context's types only, never on its values: the context holds no entity
        // references and no extension values but `now`. A request of a shape that passed
        // once passes again, so only new shapes are checked.
        let shape = shape_of(input);
        let known = self.validated.lock().is_ok_and(|v| v.contains(&shape));
        let schema = if known { None } else { Some(&self.schema) };
        let request = match Request::new(principal, action, resource.clone(), context, schema) {
            Ok(r) => r,
            Err(e) => return PolicyOutcome::deny(ReasonCode::RequestMalformed, format!("request: {e}")),
        };
        if !known && let Ok(mut validated) = self.validated.lock() {
            if validated.len() >= SHAPE_CACHE {
                validated.clear();
            }
            validated.insert(shape);
        }
        let response = self.authorizer.is_authorized(&request, &self.policies, entities.as_ref());
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        let mut policies: Vec<String> = diagnostics.reason().map(|id| id.to_string()).collect();
        policies.sort();
        if !errors.is_empty() {
            // Cedar skips a policy whose evaluation errors; writ does not: an error denies.
            return PolicyOutcome::Deny {
                reason: ReasonCode::PolicyEvaluationError,
                policies,
                detail: errors.join("; "),
                explanation: None,
            };
        }
        match response.decision() {
            Decision::Allow => {
                let needs: Vec<String> = policies
                    .iter()
                    .filter_map(|id| {
                        self.approval
                            .get(id)
                            .map(|why| if why.is_empty() { id.clone() } else { format!("{id}: {why}") })
                    })
                    .collect();
                if needs.is_empty() {
                    PolicyOutcome::Allow { policies }
                } else {
                    PolicyOutcome::Approval { policies, detail: format!("approval required by {}", needs.join("; ")) }
                }
            }
            Decision::Deny => {
                let explanation = self.explain(&policies, &input.action, &resource, entities.as_ref());
                let detail = explanation.text();
                PolicyOutcome::Deny {
                    reason: ReasonCode::PolicyDenied,
                    policies,
                    detail,
                    explanation: Some(explanation),
                }
            }
        }
    }
}

/// Whether any call with an action and a resource could be allowed, whatever its arguments,
/// time, lineage and usage (what `tools/list` filtering needs): [`CompiledBundle::possible`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Possibility {
    /// Some call could be allowed (or approved), or that cannot be ruled out.
    Possible,
    /// Every call is denied, with the reason code and why.
    Never(ReasonCode, String),
}

impl CompiledBundle {
    /// Whether some call of `action` on `resource` by this principal could be allowed: Cedar's
    /// partial evaluation with the principal, action and resource known and the whole context
    /// (arguments, time, lineage, usage, runtime) unknown. `Never` only when Cedar decides
    /// Deny without the context (no permit can apply, or a forbid applies whatever the
    /// context), or when [`CompiledBundle::evaluate`] would deny every such call before Cedar
    /// (the action is undeclared, the principal does not fit the schema). Everything else,
    /// residuals and errors included, is `Possible`: showing a tool that is then denied is
    /// safe, hiding one that could be allowed is not.
    pub fn possible(&self, principal: &EntityInput, action: &str, resource: &str) -> Possibility {
        catch_unwind(AssertUnwindSafe(|| self.possible_inner(principal, action, resource)))
            .unwrap_or(Possibility::Possible)
    }

    fn possible_inner(&self, principal: &EntityInput, action: &str, resource: &str) -> Possibility {
        if !self.declares_action(action) {
            return Possibility::Never(ReasonCode::PolicyDenied, format!("the action {action:?} is not declared"));
        }
        let [agent, action_type, resource_type] = &self.types;
        let uid = |ty: &EntityTypeName, id: &str| EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id));
        let p = uid(agent, &principal.id);
        let entities = match self.entities_with(&p, principal) {
            Ok(e) => e,
            Err(e) => {
                return Possibility::Never(
                    ReasonCode::PolicyEvaluationError,
                    format!("the principal's verified attributes do not fit the schema: {e}"),
                );
            }
        };
        // No context given: Cedar treats the whole context as unknown.
        let request = cedar_policy::RequestBuilder::default()
            .principal(p)
            .action(uid(action_type, action))
            .resource(uid(resource_type, resource))
            .build();
        let response = self.authorizer.is_authorized_partial(&request, &self.policies, entities.as_ref());
        match response.decision() {
            Some(Decision::Deny) => {
                let mut forbids: Vec<String> = response
                    .definitely_satisfied()
                    .filter(|p| p.effect() == cedar_policy::Effect::Forbid)
                    .map(|p| p.id().to_string())
                    .collect();
                forbids.sort();
                let why = if forbids.is_empty() {
                    format!("no permit of the active bundle can apply to {action:?} on {resource:?}")
                } else {
                    format!("forbidden whatever the call's arguments by {}", forbids.join(", "))
                };
                Possibility::Never(ReasonCode::PolicyDenied, why)
            }
            Some(Decision::Allow) | None => Possibility::Possible,
        }
    }
}

impl CompiledBundle {
    /// Why Cedar denied: the forbids that decided (`forbids`, empty when no permit
    /// applied), else the permits whose scope admits this action and resource.
    fn explain(&self, forbids: &[String], action: &str, resource: &EntityUid, entities: &Entities) -> Explanation {
        if !forbids.is_empty() {
            let forbidden_by = forbids
                .iter()
                .map(|id| ForbiddenBy {
                    policy: id.clone(),
                    reason: self.forbids.get(id).cloned().unwrap_or_else(|| NO_REASON.to_owned()),
                })
                .collect();
            return Explanation { forbidden_by, ..Explanation::default() };
        }
        let [_, _, resource_type] = &self.types;
        let mut closest = self.permits.iter().filter(|p| p.admits(action, resource, resource_type, entities));
        let closest_permits: Vec<ClosestPermit> = closest
            .by_ref()
            .take(MAX_CLOSEST)
            .map(|p| ClosestPermit { policy: p.id.clone(), requires: p.requires.clone() })
            .collect();
        Explanation { closest_permits, more_permits: closest.count(), forbidden_by: Vec::new() }
    }

    /// The bundle's entities plus the principal built from its verified attributes, from
    /// the cache when this principal was seen with the same attributes.
    fn entities_with(&self, uid: &EntityUid, principal: &EntityInput) -> Result<Arc<Entities>, String> {
        let attrs = serde_json::to_string(&principal.attrs).map_err(|e| e.to_string())?;
        let mut key = String::with_capacity(principal.id.len() + 1 + attrs.len());
        key.push_str(&principal.id);
        key.push('\u{0}');
        key.push_str(&attrs);
        if let Some(hit) = self.principals.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let p = principal_of(uid, &principal.attrs)?;
        let built = Arc::new(self.entities.clone().add_entities([p], Some(&self.schema)).map_err(|e| e.to_string())?);
        if let Ok(mut cache) = self.principals.lock() {
            if cache.len() >= PRINCIPAL_CACHE {
                cache.clear();
            }
            cache.insert(key, built.clone());
        }
        Ok(built)
    }
}

/// A JSON value as a Cedar value: booleans, integers, strings, arrays as sets, objects as
/// records. Nothing else (no null, no fractions, no escapes into entities or extensions: an
/// argument can never forge an entity reference).
fn cedar_value(v: &Value) -> Result<RestrictedExpression, String> {
    Ok(match v {
        Value::Null => return Err("null is not a Cedar value".into()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => {
            RestrictedExpression::new_long(n.as_i64().ok_or_else(|| format!("{n} is not a Cedar integer"))?)
        }
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => {
            RestrictedExpression::new_set(items.iter().map(cedar_value).collect::<Result<Vec<_>, _>>()?)
        }
        Value::Object(map) => RestrictedExpression::new_record(
            map.iter().map(|(k, v)| Ok((k.clone(), cedar_value(v)?))).collect::<Result<Vec<_>, String>>()?,
        )
        .map_err(|e| e.to_string())?,
    })
}

/// `datetime("<now>")` as an evaluated Cedar value. Evaluating the extension call parses the
/// string (Cedar's datetime parser uses regular expressions); the evaluation time changes
/// once a second, so the last value is kept.
fn now_value(now: &str) -> Result<CoreValue, String> {
    static LAST: Mutex<Option<(String, CoreValue)>> = Mutex::new(None);
    if let Ok(last) = LAST.lock()
        && let Some((at, value)) = last.as_ref()
        && at == now
    {
        return Ok(value.clone());
    }
    let evaluated = Context::from_pairs([("now".to_owned(), RestrictedExpression::new_datetime(now))])
        .map_err(|e| format!("now: {e}"))?;
    let value = match evaluated.as_ref() {
        core::Context::Value(attrs) => attrs.get("now").cloned(),
        core::Context::RestrictedResidual(_) => None,
    }
    .ok_or_else(|| format!("now: {now:?} did not evaluate to a datetime"))?;
    if let Ok(mut last) = LAST.lock() {
        *last = Some((now.to_owned(), value.clone()));
    }
    Ok(value)
}

/// A JSON value as an evaluated Cedar value, with the same rules as [`cedar_value`]. This is
/// what Cedar's restricted evaluator makes of [`cedar_value`]'s expression (a test holds the
/// two equal), built directly instead of as an expression that is then evaluated.
fn core_value(v: &Value) -> Result<CoreValue, String> {
    Ok(match v {
        Value::Null => return Err("null is not a Cedar value".into()),
        Value::Bool(b) => CoreValue::from(*b),
        Value::Number(n) => CoreValue::from(n.as_i64().ok_or_else(|| format!("{n} is not a Cedar integer"))?),
        Value::String(s) => CoreValue::from(s.as_str()),
        Value::Array(items) => CoreValue::set(items.iter().map(core_value).collect::<Result<Vec<_>, _>>()?, None),
        Value::Object(map) => CoreValue::record(
            map.iter().map(|(k, v)| Ok((k.as_str(), core_value(v)?))).collect::<Result<Vec<_>, String>>()?,
            None,
        ),
    })
}

/// The request context: `now` and the input's context, as evaluated Cedar values.
///
/// `cedar-policy` builds a context from expressions only (`Context::from_pairs`) and then
/// evaluates them; the values here are plain literals, sets and records plus `now`, so they
/// are built as values and handed over through `cedar-policy`'s conversion from its core
/// type. Same result (tested), a fraction of the work.
fn context_of(input: &PolicyInput) -> Result<Context, String> {
    let mut attrs = BTreeMap::new();
    attrs.insert("now".into(), now_value(&input.now)?);
    for (k, v) in &input.context {
        if k == "now" {
            return Err("`now` is the evaluation time, not an input".into());
        }
        attrs.insert(k.as_str().into(), core_value(v)?);
    }
    Ok(Context::from(core::Context::Value(Arc::new(attrs))))
}

/// What Cedar's request check depends on: the action, principal and resource ids, and the
/// context's type (record keys, value kinds, the kinds of every set element), without its
/// values. Strings are written with their length first, so no two shapes collide.
fn shape_of(input: &PolicyInput) -> String {
    fn text(s: &str, out: &mut String) {
        let _ = write!(out, "{}:{s}", s.len());
    }
    fn record(map: &Map<String, Value>, out: &mut String) {
        out.push('{');
        for (k, v) in map {
            text(k, out);
            kind(v, out);
        }
        out.push('}');
    }
    fn kind(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push('n'),
            Value::Bool(_) => out.push('b'),
            Value::Number(n) if n.is_i64() => out.push('l'),
            Value::Number(_) => out.push('f'),
            Value::String(_) => out.push('s'),
            Value::Array(items) => {
                out.push('[');
                items.iter().for_each(|i| kind(i, out));
                out.push(']');
            }
            Value::Object(map) => record(map, out),
        }
    }
    let mut out = String::with_capacity(256);
    for id in [&input.action, &input.principal.id, &input.resource] {
        text(id, &mut out);
    }
    record(&input.context, &mut out);
    out
}

fn principal_of(uid: &EntityUid, attrs: &Map<String, Value>) -> Result<Entity, String> {
    let attrs = attrs.iter().map(|(k, v)| Ok((k.clone(), cedar_value(v)?))).collect::<Result<_, String>>()?;
    Entity::new(uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())
}

/// The fault-injection tests' way in (tikv's `fail`): evaluation of an action named
/// `failpoint.evaluate` passes the fail point `writ-policy::evaluate`, which a test can make
/// panic. Compiled to nothing unless the `fail` crate's `failpoints` feature is on, which
/// only a dev-dependency turns on.
fn fault_point(action: &str) {
    // Read here too: without the feature the macro below is empty.
    let _ = action;
    fail::fail_point!("writ-policy::evaluate", action == "failpoint.evaluate", |_| {});
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// What `cedar-policy`'s own API makes of the same input: expressions, then evaluated.
    fn context_by_expressions(input: &PolicyInput) -> Result<Context, String> {
        let mut pairs = vec![("now".to_owned(), RestrictedExpression::new_datetime(&input.now))];
        for (k, v) in &input.context {
            pairs.push((k.clone(), cedar_value(v)?));
        }
        Context::from_pairs(pairs).map_err(|e| e.to_string())
    }

    fn input(now: &str, context: Map<String, Value>) -> PolicyInput {
        PolicyInput {
            principal: EntityInput { id: "spiffe://example.org/agent".into(), attrs: Map::new() },
            action: "read".into(),
            resource: "doc".into(),
            now: now.into(),
            context,
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z\u{0}-\u{7f}\u{e9}\u{1f600}]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn the_built_context_is_what_cedar_evaluates(
            context in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..6),
            second in 0u64..86_400,
        ) {
            let now = format!("2026-11-26T{:02}:{:02}:{:02}Z", second / 3600, second / 60 % 60, second % 60);
            let input = input(&now, context.into_iter().filter(|(k, _)| k != "now").collect());
            let built = context_of(&input).unwrap();
            let evaluated = context_by_expressions(&input).unwrap();
            prop_assert_eq!(built.as_ref(), evaluated.as_ref());
        }
    }

    #[test]
    fn what_cedar_refuses_is_refused() {
        for context in [json!({"a": null}), json!({"a": 1.5}), json!({"a": [1, {"b": null}]}), json!({"now": 1})] {
            let Value::Object(context) = context else { unreachable!() };
            let input = input("2026-11-26T10:00:00Z", context);
            assert!(context_of(&input).is_err(), "{input:?}");
        }
        let bad_time = input("2026-13-40T10:00:00Z", Map::new());
        assert!(context_of(&bad_time).is_err());
        assert!(context_by_expressions(&bad_time).is_err());
    }
}
