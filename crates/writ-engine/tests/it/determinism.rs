//! The decision is a pure function of its recorded inputs: the same inputs give
//! byte-identical decisions, on any thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, json};
use writ_engine::{Checked, Facts, IdentityFact, ParentFact, RecordedLimits, RecordedRequest, Scope, Usage, decide};
use writ_policy::starter_bundle;

fn inputs(
    action: usize,
    zone: usize,
    amount: i64,
    minute: u64,
    depth: u32,
    parent: u8,
    time: u64,
) -> (RecordedRequest, Facts) {
    let actions = ["read", "write", "payment", "deploy", "spawn", "delete"];
    let zones = ["billing", "support"];
    let action = actions[action % actions.len()].to_owned();
    let arguments = match action.as_str() {
        "payment" => json!({"amount": amount, "currency": "EUR"}),
        "deploy" => json!({"service": "s", "version": "1"}),
        "spawn" => json!({"agent": "w"}),
        _ => json!({}),
    };
    let mut claims = Map::new();
    claims.insert("zone".into(), json!(zones[zone % 2]));
    let parent_fact = match parent % 3 {
        0 => None,
        1 => Some(ParentFact::Unknown),
        _ => Some(ParentFact::Known {
            allowed: parent.is_multiple_of(2),
            exp: time + 100,
            revoked: parent.is_multiple_of(5),
            root: "w-root".into(),
            depth,
            scope: Some(Scope { zone: zones[(zone + (parent as usize) % 2) % 2].into(), actions: vec!["*".into()] }),
            action: "spawn".into(),
            subject: Some("spiffe://demo.example/agent/a".into()),
        }),
    };
    let request = RecordedRequest {
        request_id: None,
        action,
        resource: "fs:/zones/billing".into(),
        arguments,
        parent: parent_fact.as_ref().map(|_| "w-parent".to_owned()),
        audience: "writ-enforcement".into(),
        digest: "sha256:00".into(),
        credentials: BTreeMap::new(),
        withheld: None,
    };
    let facts = Facts {
        identity: Checked::Ok(IdentityFact {
            subject: "spiffe://demo.example/agent/a".into(),
            issuer: "https://i".into(),
            trust_domain: "demo.example".into(),
            claims,
        }),
        delegation: BTreeMap::new(),
        attestation: None,
        quarantined: false,
        parent_writ: parent_fact.as_ref().map(|_| Checked::Ok("w-parent".to_owned())),
        renewal: None,
        parent: parent_fact,
        usage: Usage { last_minute: minute, last_hour: minute * 3 },
    };
    (request, facts)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn same_inputs_same_bytes_on_every_thread(action in 0usize..6, zone in 0usize..2, amount in -10i64..2000, minute in 0u64..8, depth in 0u32..5, parent in 0u8..20, hour in 0u64..24) {
        let bundle = Arc::new(starter_bundle().unwrap().compile().unwrap());
        let time = 1_795_651_200 + hour * 3600; // 2026-11-26T00:00:00Z + hours
        let (req, facts) = inputs(action, zone, amount, minute, depth, parent, time);
        let limits = RecordedLimits { lineage_by_possession: true, max_depth: 3 };
        let first = serde_json::to_vec(&decide(&req, &facts, &limits, time, Some(&bundle)).outcome).unwrap();
        let threads: Vec<_> = (0..3).map(|_| {
            let (req, facts, bundle) = (req.clone(), facts.clone(), bundle.clone());
            std::thread::spawn(move || serde_json::to_vec(&decide(&req, &facts, &limits, time, Some(&bundle)).outcome).unwrap())
        }).collect();
        for t in threads {
            prop_assert_eq!(t.join().unwrap(), first.clone());
        }
    }
}
