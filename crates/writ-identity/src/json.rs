//! Strict JSON and base64url helpers shared by the parsers of untrusted input. JSON objects
//! are read with duplicate member names refused (RFC 7515 §5.2 and RFC 7519 §4 allow a
//! parser to reject them, and a "last one wins" parser is how two readers of one token come
//! to disagree); base64url is the unpadded, canonical alphabet of RFC 7515 §2.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// A JSON object whose member names are unique.
// INVARIANT: built only by `Deserialize`, which refuses a repeated member name.
#[derive(Debug)]
pub(crate) struct UniqueMap<V>(pub(crate) BTreeMap<String, V>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = BTreeMap::new();
                while let Some((key, value)) = access.next_entry::<String, V>()? {
                    if map.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate member {key:?}")));
                    }
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }

        d.deserialize_map(UniqueVisitor(PhantomData))
    }
}

/// Parses a JSON object with unique member names into a `serde_json` map.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let UniqueMap(map) = serde_json::from_slice::<UniqueMap<serde_json::Value>>(bytes).map_err(|e| e.to_string())?;
    Ok(map.into_iter().collect())
}

/// Decodes unpadded base64url (RFC 7515 §2), refusing padding and non-canonical trailing bits.
pub(crate) fn b64url_decode(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("invalid base64url: {e}"))
}

/// Encodes as unpadded base64url (RFC 7515 §2).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_refused() {
        assert!(parse_object(br#"{"a":1,"b":2}"#).is_ok());
        let err = parse_object(br#"{"sub":"x","sub":"y"}"#).unwrap_err();
        assert!(err.contains("duplicate member \"sub\""), "{err}");
        assert!(parse_object(b"[1]").is_err());
        assert!(parse_object(b"{").is_err());
    }

    #[test]
    fn base64url_is_canonical_and_unpadded() {
        assert_eq!(b64url_decode("AQI").unwrap(), [1, 2]);
        assert!(b64url_decode("AQI=").is_err(), "padding");
        assert!(b64url_decode("AQJ").is_err(), "non-zero trailing bits");
        assert!(b64url_decode("AQ+/").is_err(), "standard alphabet");
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
    }
}
