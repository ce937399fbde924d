//! Replay reproduces every decision of a long mixed history, and flags a tampered entry.

use serde_json::json;
use writ_core::SpiffeId;
use writ_engine::replay;

use crate::harness::*;

fn history(h: &Harness, n: usize) {
    let agents = ["billing-1", "billing-2", "support-1"];
    // The parent's decision and agent.
    let mut parent: Option<(writ_engine::Decision, &str)> = None;
    for i in 0..n {
        let agent = agents[i % 3];
        let zone = if agent.starts_with("billing") { "billing" } else { "support" };
        let mut req = match i % 6 {
            0 => json!({"action": "read", "resource": "fs:/zones/billing", "arguments": {"path": "/x"}}),
            1 => json!({"action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/y", "bytes": i}}),
            2 => {
                // Allowed, waiting for an approval, and over every limit, in turn.
                let amount = match (i / 6) % 3 {
                    0 => (i * 37) % 1000,
                    1 => 2500 + i,
                    _ => 10_000 + i,
                };
                json!({"action": "payment", "resource": "payments:stripe", "arguments": {"amount": amount, "currency": "EUR"}})
            }
            3 => json!({"action": "spawn", "resource": "agents:pool", "arguments": {"agent": "w"}}),
            4 => json!({"action": "payment", "resource": "payments:stripe", "arguments": {"currency": "EUR"}}),
            _ => {
                json!({"action": "deploy", "resource": "deploy:billing-api", "arguments": {"service": "s", "version": "1"}})
            }
        };
        req["credentials"] = json!({"workload": h.credential(agent, Some(zone))});
        if i % 4 == 3
            && let Some((p, parent_agent)) = &parent
        {
            under(h, &mut req, p, parent_agent, agent);
        }
        // Some lineage attempts by naming only, and with hostile argument spellings, and
        // some anonymous ones: all must replay exactly.
        if i % 13 == 5
            && let Some((p, _)) = &parent
        {
            req["parent"] = json!(p.id);
        }
        if i % 11 == 1 {
            req["arguments"]["bytes"] = json!(120.0);
        }
        if i % 17 == 2 {
            req["credentials"]["workload"] = json!("not-a-token");
        }
        let d = h.authorize(&req);
        // Answer most decisions that wait for an approval; leave some waiting.
        if d.outcome == writ_engine::Outcome::Pending && i % 5 != 0 {
            let answered = rt().block_on(h.engine.resolve_approval(&d.id, i % 3 != 0, None, "drill"));
            assert!(answered.is_ok(), "{answered:?}");
        }
        if d.writ.is_some() && i % 10 == 0 {
            parent = Some((d, agent));
        }
        if i % 97 == 0 {
            let s = SpiffeId::parse(&format!("spiffe://demo.example/agent/{agent}")).unwrap();
            rt().block_on(h.engine.quarantine(&s, i % 194 == 0, None, "drill")).unwrap();
        }
        h.clock.advance(7);
    }
}

#[test]
fn replay_reproduces_thousands_of_mixed_decisions() {
    let h = Harness::new();
    history(&h, 2000);
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert!(report.decisions >= 2000, "{report:?}");
    assert!(report.mismatches.is_empty(), "{:?}", &report.mismatches[..report.mismatches.len().min(5)]);
    assert_eq!(report.reproduced, report.decisions);
    assert!(report.approvals > 0, "the history holds approvals: {report:?}");
}

#[test]
fn replay_flags_a_tampered_decision() {
    let h = Harness::new();
    history(&h, 60);
    let size = h.engine.log().size();
    // Find a deny and rewrite it as an allow directly in the store.
    let entries = h.engine.log().entries(0, size).unwrap();
    let (index, text) = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (i, String::from_utf8(e.clone()).unwrap()))
        .find(|(_, t)| t.contains(r#""outcome":"deny","policies":[],"reasons":["policy.denied"]"#))
        .unwrap();
    let tampered = text.replace(
        r#""outcome":"deny","policies":[],"reasons":["policy.denied"]"#,
        r#""outcome":"allow","policies":[],"reasons":[]"#,
    );
    let conn = rusqlite::Connection::open(h.dir.path().join("log.db")).unwrap();
    let changed = conn
        .execute("UPDATE entries SET data = ?1 WHERE idx = ?2", rusqlite::params![tampered.as_bytes(), index as i64])
        .unwrap();
    assert_eq!(changed, 1);
    let report = replay(h.engine.log().store().as_ref()).unwrap();
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert_eq!(report.mismatches[0].index, index as u64);
    assert_eq!(report.reproduced + 1, report.decisions);
}
