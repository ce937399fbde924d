//! Strict JSON for every input that enters writ: an object with a repeated member name is
//! refused at any depth. RFC 8259 §4 says member names "SHOULD be unique" and leaves the
//! meaning of duplicates to the parser; `serde_json` keeps the last one, other parsers keep
//! the first or fail. When a policy (or an approving operator) sees one member and the tool
//! that runs the call reads another, the decision authorized a call that never ran, so writ
//! refuses the input instead (the same rule RFC 7515 §5.2 lets JOSE parsers apply).
//!
//! [`parse_value`] builds a `serde_json::Value` through a visitor that checks each object's
//! names as they arrive; [`from_slice`] types it afterwards. `serde_json`'s recursion limit
//! still applies, so nesting cannot exhaust the stack.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A `serde_json::Value` whose objects, at every depth, had unique member names.
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value whose objects have unique member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v).map(|n| Strict(Value::Number(n))).ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate member {key:?}")));
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Strict(Value::Object(map)))
    }
}

/// Parses JSON text, refusing any object with a repeated member name at any depth (and
/// anything that is not exactly one JSON value).
pub fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Strict>(bytes).map(|Strict(v)| v).map_err(|e| e.to_string())
}

/// Parses JSON text into `T` as [`parse_value`] does: duplicate members at any depth are
/// refused before the value is typed.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_value(parse_value(bytes)?).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn repeated_members_are_refused_at_every_depth() {
        for hostile in [
            r#"{"action":"read","action":"write"}"#,
            r#"{"arguments":{"path":"/a","path":"/b"}}"#,
            r#"{"a":[{"x":1},{"y":2,"y":3}]}"#,
            r#"{"a":{"b":{"c":{"d":1,"d":1}}}}"#,
            // The same name spelt with an escape is the same name.
            r#"{"path":"/a","p\u0061th":"/b"}"#,
        ] {
            let err = parse_value(hostile.as_bytes()).unwrap_err();
            assert!(err.contains("duplicate member"), "{hostile}: {err}");
        }
    }

    #[test]
    fn values_parse_as_serde_json_parses_them() {
        let text = r#"{"a":[1,-2,2.5,1e300,true,null,"s",{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(parse_value(text.as_bytes()).unwrap(), serde_json::from_str::<Value>(text).unwrap());
        assert_eq!(parse_value(b"[]").unwrap(), json!([]));
        for bad in ["", "{", "{} {}", "[1,]", "NaN", "1e999"] {
            assert!(parse_value(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_value(deep.as_bytes()).is_err());
    }
}
