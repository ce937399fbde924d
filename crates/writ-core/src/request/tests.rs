use proptest::prelude::*;
use serde_json::json;

use super::*;

fn parse(v: &Value) -> Result<ExecutionRequest, Error> {
    ExecutionRequest::parse(&serde_json::to_vec(v).unwrap(), &Limits::default())
}

fn base() -> Value {
    json!({
        "request_id": "r-1",
        "credentials": {"workload": "eyJ..."},
        "action": "fs.write",
        "resource": "file:/srv/app/config.yaml",
        "arguments": {"path": "/srv/app/config.yaml", "bytes": 120},
        "parent": "w-123"
    })
}

#[test]
fn a_good_request_parses() {
    let r = parse(&base()).unwrap();
    assert_eq!(r.action, "fs.write");
    assert_eq!(r.credentials.workload.as_deref(), Some("eyJ..."));
    // No workload credential is the identity stage's business, not a parse error.
    let mut v = base();
    v["credentials"] = json!({});
    assert!(parse(&v).unwrap().credentials.workload.is_none());
}

#[test]
fn hostile_requests_are_malformed() {
    let deep = (0..40).fold(json!(1), |acc, _| json!([acc]));
    let wide: Vec<Value> = (0..3000).map(|i| json!(i)).collect();
    let cases: Vec<(&str, Value)> = vec![
        ("unknown top-level field", json!({"action": "a", "resource": "r", "admin": true})),
        ("unknown credential", json!({"action": "a", "resource": "r", "credentials": {"root": "x"}})),
        ("missing action", json!({"resource": "r"})),
        ("action not a string", json!({"action": 7, "resource": "r"})),
        ("empty action", json!({"action": "", "resource": "r"})),
        ("control character", json!({"action": "a\u{0}", "resource": "r"})),
        ("long resource", json!({"action": "a", "resource": "r".repeat(300)})),
        ("arguments not an object", json!({"action": "a", "resource": "r", "arguments": [1]})),
        ("deep nesting", json!({"action": "a", "resource": "r", "arguments": {"x": deep}})),
        ("too many values", json!({"action": "a", "resource": "r", "arguments": {"x": wide}})),
        ("long string", json!({"action": "a", "resource": "r", "arguments": {"x": "y".repeat(20_000)}})),
        ("inexact integer", json!({"action": "a", "resource": "r", "arguments": {"amount": 9_007_199_254_740_993u64}})),
        ("long credential", json!({"action": "a", "resource": "r", "credentials": {"workload": "x".repeat(9000)}})),
        ("not an object", json!("fs.write")),
    ];
    for (what, v) in cases {
        assert!(matches!(parse(&v), Err(Error::Malformed(_))), "accepted: {what}");
    }
    let limits = Limits::default();
    assert!(ExecutionRequest::parse(&vec![b' '; limits.max_body + 1], &limits).is_err());
    assert!(ExecutionRequest::parse(b"{\"action\":", &limits).is_err());
    assert!(ExecutionRequest::parse(&[0xff, 0xfe], &limits).is_err());
    // serde_json's own recursion bound holds before ours.
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(ExecutionRequest::parse(bomb.as_bytes(), &Limits { max_body: 1 << 20, ..limits }).is_err());
}

#[test]
fn digest_is_over_the_canonical_form_only() {
    // RFC 8785: keys sorted, no whitespace, numbers in ECMAScript form.
    let a = request_digest("fs.write", "file:/x", &json!({"b": 1, "a": [1.0, "é"]})).unwrap();
    let b =
        request_digest("fs.write", "file:/x", &serde_json::from_str(r#"{ "a" : [ 1 , "\u00e9" ] , "b":1 }"#).unwrap())
            .unwrap();
    assert_eq!(a, b);
    let bytes = canonical_json(&json!({"b": 1, "a": [1.0, "é"]})).unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"a":[1,"é"],"b":1}"#);
    assert_ne!(a, request_digest("fs.write", "file:/y", &json!({"b": 1, "a": [1.0, "é"]})).unwrap());
    assert_ne!(a, request_digest("fs.read", "file:/x", &json!({"b": 1, "a": [1.0, "é"]})).unwrap());
    // Known answer, computed independently (Python: hashlib.sha256(b'{"action":"a","arguments":{},"resource":"r"}')).
    let empty = request_digest("a", "r", &json!({})).unwrap();
    assert_eq!(
        empty.to_string(),
        format!("sha256:{}", hex::encode(Sha256::digest(br#"{"action":"a","arguments":{},"resource":"r"}"#)))
    );
    assert_eq!(RequestDigest::parse(&empty.to_string()), Some(empty));
    assert_eq!(RequestDigest::parse(&empty.to_string().to_uppercase()), None);
}

proptest! {
    /// The digest's input is exactly `serde_jcs` over the whole object, for any strings
    /// (control characters, quotes, characters beyond the BMP) and any arguments.
    #[test]
    fn digest_input_is_serde_jcs_of_the_object(
        action in any::<String>(),
        resource in "(\\PC|[\u{0}-\u{1f}\"\\\\])*",
        args in proptest::collection::btree_map(any::<String>(), prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ], 0..6),
    ) {
        let arguments = Value::Object(args.into_iter().collect());
        let ours: Vec<u8> = canonical_request(&action, &resource, &arguments).unwrap();
        let mut obj = Map::new();
        obj.insert("resource".into(), Value::String(resource.clone()));
        obj.insert("arguments".into(), arguments.clone());
        obj.insert("action".into(), Value::String(action.clone()));
        prop_assert_eq!(&ours, &serde_jcs::to_vec(&Value::Object(obj)).unwrap());
        prop_assert_eq!(request_digest(&action, &resource, &arguments).unwrap(), RequestDigest(Sha256::digest(&ours).into()));
    }

    #[test]
    fn digest_ignores_key_order_and_whitespace(keys in proptest::collection::btree_map("[a-z]{1,8}", any::<i32>(), 0..10)) {
        let forward: Map<String, Value> = keys.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let text = serde_json::to_string_pretty(&Value::Object(forward.clone())).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(
            request_digest("x", "y", &Value::Object(forward)).unwrap(),
            request_digest("x", "y", &reparsed).unwrap()
        );
    }
}

/// Issue 13, item 3: the last member won, so a tool keeping the first one would run a call
/// that neither the policy nor an approving operator saw.
#[test]
fn regression_duplicate_members_are_malformed_at_any_depth() {
    for hostile in [
        r#"{"action":"read","action":"delete","resource":"r"}"#,
        r#"{"action":"a","resource":"r","arguments":{"path":"/zones/billing/x","path":"/zones/support/x"}}"#,
        r#"{"action":"a","resource":"r","arguments":{"x":[{"k":1,"k":2}]}}"#,
        r#"{"action":"a","resource":"r","credentials":{"workload":"t1","workload":"t2"}}"#,
        r#"{"action":"a","resource":"r","arguments":{"amount":5,"amo\u0075nt":5000}}"#,
    ] {
        let err = ExecutionRequest::parse(hostile.as_bytes(), &Limits::default()).unwrap_err();
        assert!(matches!(&err, Error::Malformed(m) if m.contains("duplicate member")), "{hostile}: {err}");
    }
}

/// Issue 13, item 5: `120.0` was evaluated as a float (denied) but recorded in its RFC 8785
/// form `120`, which replay evaluated as an integer (allowed). The parsed request now holds
/// exactly what its canonical form reads back as.
#[test]
fn regression_numbers_are_evaluated_in_their_recorded_form() {
    for (written, canonical) in [
        ("120.0", json!(120)),
        ("2500.0", json!(2500)),
        ("-0", json!(0)),
        ("-0.0", json!(0)),
        ("2.5e3", json!(2500)),
        ("1e1", json!(10)),
        ("-7.0", json!(-7)),
        ("2.5", json!(2.5)),
        ("1e300", json!(1e300)),
    ] {
        let body = format!(r#"{{"action":"a","resource":"r","arguments":{{"amount":{written},"list":[{written}]}}}}"#);
        let r = ExecutionRequest::parse(body.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(r.arguments["amount"], canonical, "{written}");
        assert_eq!(r.arguments["list"][0], canonical, "{written}");
        // What is evaluated is what the log records: its canonical form parses back equal.
        let recorded: Value = serde_json::from_slice(&canonical_json(&r.arguments).unwrap()).unwrap();
        assert_eq!(recorded, r.arguments, "{written}");
    }
    // A float that reads back as an integer beyond 2^53 is refused like that integer.
    let body = br#"{"action":"a","resource":"r","arguments":{"amount":9007199254740994.0}}"#;
    assert!(ExecutionRequest::parse(body, &Limits::default()).is_err());
}

proptest! {
    /// Whatever number is written, the parsed arguments equal their own recorded form.
    #[test]
    fn parsed_arguments_equal_their_recorded_form(x in proptest::num::f64::NORMAL | proptest::num::f64::ZERO, i in -1_000_000i64..1_000_000) {
        for written in [format!("{x:?}"), format!("{x:e}"), format!("{i}.0"), format!("{i}e0")] {
            let body = format!(r#"{{"action":"a","resource":"r","arguments":{{"n":{written}}}}}"#);
            if let Ok(r) = ExecutionRequest::parse(body.as_bytes(), &Limits::default()) {
                let recorded: Value = serde_json::from_slice(&canonical_json(&r.arguments).unwrap()).unwrap();
                prop_assert_eq!(recorded, r.arguments);
            }
        }
    }
}

/// The one list of presented tokens covers every token field a request can carry: each
/// one set alone is found under its kind, named by its field, and bounded.
#[test]
fn every_presented_token_is_listed_found_and_bounded() {
    let limits = Limits::default();
    for kind in Presented::ALL {
        let mut v = json!({"action": "a", "resource": "r"});
        let (outer, inner) = match kind.field().split_once('.') {
            Some((o, i)) => (o, Some(i)),
            None => (kind.field(), None),
        };
        let put = |v: &mut Value, token: &str| match inner {
            Some(i) => v[outer] = json!({ i: token }),
            None => v[outer] = json!(token),
        };
        put(&mut v, "tok");
        let r = parse(&v).unwrap();
        assert_eq!(r.presented_all().collect::<Vec<_>>(), vec![(kind, "tok")], "{kind:?}");
        put(&mut v, &"x".repeat(limits.max_credential + 1));
        let err = parse(&v).unwrap_err().to_string();
        assert!(err.contains(kind.field()), "{kind:?}: {err}");
    }
    let names: std::collections::BTreeSet<_> = Presented::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), Presented::ALL.len());
}
