//! The test world: a trust bundle parsed from hand-written JSON with Ed25519 and P-256 keys
//! for several issuers, and helpers that sign any header and claims, so each test can build
//! a realistic forged token by hand.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};
use writ_identity::{IdentityVerifier, TrustBundle, VerifierConfig};

/// The verification time of every test, Unix seconds.
pub const NOW: u64 = 1_700_000_000;
/// The audience the verifier accepts.
pub const AUD: &str = "writ-control-plane";
/// The main identity provider of `example.org` (workload and operator roles).
pub const IDP: &str = "https://idp.example.org";
/// An operator-only issuer of `example.org`.
pub const OPS: &str = "https://ops.example.org";
/// The identity provider of `other.org`.
pub const OTHER_IDP: &str = "https://idp.other.org";
/// The runtime attestor of `example.org`.
pub const ATTESTOR: &str = "https://attestor.example.org";
/// The acting workload.
pub const WORKLOAD: &str = "spiffe://example.org/ns/billing/agent/invoicer";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// Fresh randomness from the operating system.
pub fn random32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// An Ed25519 signing key and the `kid` it is published under.
pub struct Ed {
    pub kid: String,
    pub key: ed25519_dalek::SigningKey,
}

impl Ed {
    pub fn generate(kid: &str) -> Ed {
        Ed { kid: kid.into(), key: ed25519_dalek::SigningKey::from_bytes(&random32()) }
    }

    pub fn x(&self) -> String {
        b64(self.key.verifying_key().as_bytes())
    }

    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": self.x(), "use": "sig", "alg": "EdDSA"})
    }

    /// A compact JWS over exactly this header and these claims, signed with Ed25519.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        sign_with(header, claims, |input| self.key.sign(input).to_bytes().to_vec())
    }

    /// A well-formed credential: `{"alg":"EdDSA","typ":"JWT","kid":…}` over `claims`.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}), claims)
    }
}

/// A P-256 key, signing through `jsonwebtoken`'s `EncodingKey` (PKCS#8 DER).
pub struct Ec {
    pub kid: String,
    pub secret: p256::SecretKey,
}

impl Ec {
    pub fn generate(kid: &str) -> Ec {
        loop {
            // A uniformly random 32-byte string is a valid scalar except with probability ~2^-32.
            if let Ok(secret) = p256::SecretKey::from_slice(&random32()) {
                return Ec { kid: kid.into(), secret };
            }
        }
    }

    pub fn jwk(&self) -> Value {
        let point = self.secret.public_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid,
               "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
    }

    /// An ES256 credential minted by `jsonwebtoken::encode`.
    pub fn token(&self, claims: &Value) -> String {
        let der = self.secret.to_pkcs8_der().unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// `BASE64URL(header) '.' BASE64URL(claims) '.' BASE64URL(sign(input))`.
pub fn sign_with(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

/// Standard claims from `iss` about `sub`, valid from `NOW` for five minutes.
pub fn claims(iss: &str, sub: &str) -> Value {
    json!({"iss": iss, "sub": sub, "aud": [AUD], "iat": NOW, "nbf": NOW, "exp": NOW + 300,
           "jti": "0f8e2c7a", "zone": "eu-west", "env": "prod"})
}

/// The trusted keys and the verifier over a bundle that lists them.
pub struct World {
    pub idp_ed: Ed,
    pub idp_ec: Ec,
    pub ops: Ed,
    pub other: Ed,
    pub attestor: Ed,
    pub verifier: IdentityVerifier,
}

impl World {
    pub fn new() -> World {
        let (idp_ed, idp_ec) = (Ed::generate("idp-ed-2025"), Ec::generate("idp-ec-2025"));
        let (ops, other, attestor) = (Ed::generate("ops-1"), Ed::generate("other-1"), Ed::generate("attestor-1"));
        let bundle = format!(
            r#"{{"trust_domains": {{
                "example.org": {{"issuers": [
                    {{"issuer": "{IDP}", "roles": ["workload", "operator", "orchestrator", "machine", "runtime"],
                      "jwks": {{"keys": [{}, {}]}}}},
                    {{"issuer": "{OPS}", "roles": ["operator"], "jwks": {{"keys": [{}]}}}},
                    {{"issuer": "{ATTESTOR}", "roles": ["attestor"], "jwks": {{"keys": [{}]}}}}
                ]}},
                "other.org": {{"issuers": [
                    {{"issuer": "{OTHER_IDP}", "roles": ["workload"], "jwks": {{"keys": [{}]}}}}
                ]}}
            }}}}"#,
            idp_ed.jwk(),
            idp_ec.jwk(),
            ops.jwk(),
            attestor.jwk(),
            other.jwk()
        );
        let bundle = TrustBundle::from_json(bundle.as_bytes()).unwrap();
        let verifier = IdentityVerifier::new(bundle, VerifierConfig::new(vec![AUD.into()]));
        World { idp_ed, idp_ec, ops, other, attestor, verifier }
    }
}
