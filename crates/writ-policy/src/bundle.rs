//! A bundle's parts, its digest and its signature.
//!
//! Digest: `sha256:` and the hex SHA-256 of the RFC 8785 canonical JSON of
//! `{"entities": <json or null>, "manifest": <json>, "policies": <text>, "schema": <text>,
//! "tests": <json or null>}`. Signature: a C2SP signed note whose text is
//! `writ-policy-bundle\n<name>\n<version>\n<digest>\n`, signed by a policy-signing key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use writ_log::{Note, NoteSigner, NoteVerifier};

use crate::PolicyError;
use crate::compiled::CompiledBundle;
use crate::isolation::{IsolationRule, check_rules};
use crate::testcases::TestCase;

/// A bundle's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle name, e.g. `writ-starter`.
    pub name: String,
    /// Version, e.g. `1.0.0`.
    pub version: String,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Actions that need a verified runtime attestation: without one the engine denies with
    /// `attestation.missing` before policy runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require_attestation: Vec<String>,
    /// Automatic isolation rules: when the control plane quarantines an identity by itself
    /// (see [`IsolationRule`]). None: nothing is isolated automatically.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isolation: Vec<IsolationRule>,
    /// The longest a writ for each action may live, in seconds (`{"deploy": 60}`): a writ's
    /// `exp` is the smaller of the control plane's writ TTL and this. Each action must be
    /// one the schema declares, and each value at least 1. A bundle without it caps nothing
    /// (and its digest is what it was before the field existed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub max_lifetime_seconds: BTreeMap<String, u64>,
}

/// A bundle digest, `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BundleDigest([u8; 32]);

impl fmt::Display for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleDigest({self})")
    }
}

impl BundleDigest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Option<Self> {
        writ_core::parse_sha256(s).map(BundleDigest)
    }
}

/// A policy bundle as authored: its parts as text, not yet validated.
#[derive(Clone, Debug)]
pub struct Bundle {
    manifest: Manifest,
    manifest_json: Value,
    policies: String,
    schema: String,
    entities: Option<Value>,
    tests: Option<Vec<TestCase>>,
    tests_json: Option<Value>,
    digest: BundleDigest,
}

/// Largest bundle part accepted, in bytes.
const MAX_PART: usize = 4 << 20;

impl Bundle {
    /// Builds a bundle from its parts' text (manifest JSON, policies, schema, entities JSON,
    /// tests JSON).
    pub fn from_parts(
        manifest: &str,
        policies: &str,
        schema: &str,
        entities: Option<&str>,
        tests: Option<&str>,
    ) -> Result<Self, PolicyError> {
        for part in [Some(manifest), Some(policies), Some(schema), entities, tests].into_iter().flatten() {
            if part.len() > MAX_PART {
                return Err(PolicyError::Bundle(format!("a bundle part is larger than {MAX_PART} bytes")));
            }
        }
        let manifest_json: Value = writ_core::json::parse_value(manifest.as_bytes())
            .map_err(|e| PolicyError::Bundle(format!("manifest.json is not JSON: {e}")))?;
        let manifest_typed: Manifest = serde_json::from_value(manifest_json.clone())
            .map_err(|e| PolicyError::Bundle(format!("manifest.json: {e}")))?;
        if manifest_typed.name.is_empty() || manifest_typed.version.is_empty() {
            return Err(PolicyError::Bundle("manifest needs a name and a version".into()));
        }
        if [&manifest_typed.name, &manifest_typed.version].iter().any(|s| s.contains(['\n', '\r'])) {
            return Err(PolicyError::Bundle("manifest name and version are single lines".into()));
        }
        check_rules(&manifest_typed.isolation).map_err(|e| PolicyError::Bundle(format!("manifest.json: {e}")))?;
        let entities = entities
            .map(|e| {
                writ_core::json::parse_value(e.as_bytes())
                    .map_err(|e| PolicyError::Bundle(format!("entities.json: {e}")))
            })
            .transpose()?;
        let tests_json = tests
            .map(|t| {
                writ_core::json::parse_value(t.as_bytes()).map_err(|e| PolicyError::Bundle(format!("tests.json: {e}")))
            })
            .transpose()?;
        let tests = tests_json
            .clone()
            .map(|t| {
                serde_json::from_value::<Vec<TestCase>>(t).map_err(|e| PolicyError::Bundle(format!("tests.json: {e}")))
            })
            .transpose()?;
        let canonical = json!({
            "entities": entities,
            "manifest": manifest_json,
            "policies": policies,
            "schema": schema,
            "tests": tests_json,
        });
        let bytes = writ_core::canonical_json(&canonical).map_err(|e| PolicyError::Bundle(e.to_string()))?;
        let digest = BundleDigest(Sha256::digest(&bytes).into());
        Ok(Bundle {
            manifest: manifest_typed,
            manifest_json: canonical.get("manifest").cloned().unwrap_or(Value::Null),
            policies: policies.to_owned(),
            schema: schema.to_owned(),
            entities,
            tests,
            tests_json,
            digest,
        })
    }

    /// Loads a bundle directory: `manifest.json`, `policies.cedar`, `schema.cedarschema`,
    /// and optionally `entities.json` and `tests.json`.
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| PolicyError::Bundle(format!("{}: {e}", dir.join(name).display())))
        };
        let optional = |name: &str| -> Result<Option<String>, PolicyError> {
            let p = dir.join(name);
            if p.exists() { read(name).map(Some) } else { Ok(None) }
        };
        Bundle::from_parts(
            &read("manifest.json")?,
            &read("policies.cedar")?,
            &read("schema.cedarschema")?,
            optional("entities.json")?.as_deref(),
            optional("tests.json")?.as_deref(),
        )
    }

    /// Writes the bundle's parts into a directory (the inverse of [`Bundle::load_dir`]).
    pub fn write_dir(&self, dir: &Path) -> Result<(), PolicyError> {
        let io = |e: std::io::Error| PolicyError::Bundle(e.to_string());
        std::fs::create_dir_all(dir).map_err(io)?;
        let pretty = |v: &Value| serde_json::to_string_pretty(v).map_err(|e| PolicyError::Bundle(e.to_string()));
        let manifest = serde_json::to_value(&self.manifest).map_err(|e| PolicyError::Bundle(e.to_string()))?;
        std::fs::write(dir.join("manifest.json"), pretty(&manifest)?).map_err(io)?;
        std::fs::write(dir.join("policies.cedar"), &self.policies).map_err(io)?;
        std::fs::write(dir.join("schema.cedarschema"), &self.schema).map_err(io)?;
        if let Some(e) = &self.entities {
            std::fs::write(dir.join("entities.json"), pretty(e)?).map_err(io)?;
        }
        if let Some(t) = &self.tests_json {
            std::fs::write(dir.join("tests.json"), pretty(t)?).map_err(io)?;
        }
        Ok(())
    }

    /// The parts as text (manifest, policies, schema, entities, tests), from which
    /// [`Bundle::from_parts`] rebuilds a bundle with the same digest.
    pub fn parts(&self) -> (String, String, String, Option<String>, Option<String>) {
        let text = |v: &Value| v.to_string();
        (
            text(&self.manifest_json),
            self.policies.clone(),
            self.schema.clone(),
            self.entities.as_ref().map(text),
            self.tests_json.as_ref().map(text),
        )
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The digest that signatures and log entries name.
    pub fn digest(&self) -> BundleDigest {
        self.digest
    }

    /// The bundle's own test cases.
    pub fn tests(&self) -> &[TestCase] {
        self.tests.as_deref().unwrap_or_default()
    }

    /// Parses the policies, schema and entities and validates the policies against the
    /// schema in Cedar's strict mode (`writ policy check`).
    pub fn compile(&self) -> Result<CompiledBundle, PolicyError> {
        CompiledBundle::new(self, &self.policies, &self.schema, self.entities.as_ref())
    }

    fn signed_text(&self) -> String {
        format!("writ-policy-bundle\n{}\n{}\n{}\n", self.manifest.name, self.manifest.version, self.digest)
    }
}

/// Signs a bundle's digest with a policy-signing key; returns the signed note.
pub fn sign_bundle(bundle: &Bundle, key: &NoteSigner) -> Result<String, PolicyError> {
    key.sign(&bundle.signed_text()).map_err(|e| PolicyError::Untrusted(e.to_string()))
}

/// Checks that `signature` (a signed note) is a valid signature of exactly this bundle by
/// one of the `trusted` policy keys. Returns the name of the key that signed.
pub fn verify_bundle_signature(
    bundle: &Bundle,
    signature: &str,
    trusted: &[NoteVerifier],
) -> Result<String, PolicyError> {
    let untrusted = |why: String| PolicyError::Untrusted(why);
    let note = Note::parse(signature.as_bytes()).map_err(|e| untrusted(format!("signature: {e}")))?;
    if note.text() != bundle.signed_text() {
        return Err(untrusted("the signature is for another bundle (digest, name or version differ)".into()));
    }
    let verified = note.verify(trusted).map_err(|e| untrusted(format!("signature: {e}")))?;
    verified.first().map(|k| k.name().to_owned()).ok_or_else(|| untrusted("no trusted signature".into()))
}
