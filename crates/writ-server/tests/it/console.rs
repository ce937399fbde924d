//! The console's routes and the API it reads: the embedded pages and assets (types, CSP,
//! cache validators, nothing outside the console folder), decision totals, a bundle's text,
//! the log as server-sent events, and runs of the demo scenario.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use writ_server::{AppState, DemoRunner, Narrate, app};

use crate::admin::{bundle_body, frozen};
use crate::{Fixture, fixture, rt};

fn get(f: &Fixture, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::empty()).unwrap();
    rt().block_on(async {
        let resp = f.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes().to_vec())
    })
}

/// Every `src` and `href` of a page that names this origin's console.
fn references(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = page;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn the_console_is_served_from_the_binary_with_types_csp_and_validators() {
    let f = fixture(true);
    for root in ["/", "/console", "/console/"] {
        let (status, headers, _) = get(&f, root, &[]);
        assert!(status.is_redirection(), "{root}: {status}");
        assert_eq!(headers["location"], "/console/governance");
    }
    for view in writ_server::console::VIEWS {
        let (status, headers, body) = get(&f, &format!("/console/{view}"), &[]);
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-cache");
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains(&format!("data-view=\"{view}\"")), "{view}");
        // No inline script or style attribute (the CSP would block them), nothing from
        // another origin, and every asset a page names is served.
        assert!(!page.contains("<script>") && !page.contains("style=\"") && !page.contains("<style"), "{view}");
        assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//fonts"), "{view}");
        for r in references(&page) {
            assert!(r.starts_with("/console/") || r.starts_with('#'), "{view} names {r}");
            if r.starts_with('#') {
                continue;
            }
            let (status, headers, _) = get(&f, &r, &[]);
            assert_eq!(status, StatusCode::OK, "{view}: {r}");
            let ctype = headers["content-type"].to_str().unwrap();
            if r.ends_with(".js") {
                assert_eq!(ctype, "text/javascript; charset=utf-8", "{r}");
            } else if r.ends_with(".css") {
                assert_eq!(ctype, "text/css; charset=utf-8", "{r}");
            }
        }
        // A validator: the same file again with its ETag is 304, without a body.
        let etag = headers["etag"].to_str().unwrap().to_owned();
        let (status, _, body) = get(&f, &format!("/console/{view}"), &[("if-none-match", &etag)]);
        assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
        let (status, _, _) = get(&f, &format!("/console/{view}"), &[("if-none-match", "\"other\"")]);
        assert_eq!(status, StatusCode::OK);
    }
    // The vendored libraries' licences are served with them.
    for licence in ["/console/vendor/highlight.js/LICENSE", "/console/vendor/diff/LICENSE"] {
        let (status, headers, body) = get(&f, licence, &[]);
        assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "text/plain; charset=utf-8"));
        assert!(String::from_utf8(body).unwrap().contains("BSD"), "{licence}");
    }
}

#[test]
fn nothing_outside_the_console_assets_is_served() {
    let f = fixture(true);
    for uri in [
        "/console/nope",
        "/console/governance.html",
        "/console/index",
        "/console/assets/",
        "/console/assets/missing.js",
        "/console/assets/../governance.html",
        "/console/assets/%2e%2e/governance.html",
        "/console/assets/..%2fgovernance.html",
        "/console/vendor/update.sh",
        "/console/vendor/package.json",
        "/console/vendor/package-lock.json",
        "/console/vendor/../../Cargo.toml",
        "/console/vendor/node_modules/diff/LICENSE",
        "/console/assets//common.js",
        "/console/assets/common.js%00.png",
        // Not UTF-8 once decoded: a JSON error like every other (it was a plain-text 400).
        "/console/%FF",
        "/console/assets/%C0",
        "/console/vendor/%FF%FE",
    ] {
        let (status, headers, body) = get(&f, uri, &[]);
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST, "{uri}: {status}");
        assert_eq!(headers["content-type"], "application/json", "{uri}");
        let e: Value = serde_json::from_slice(&body).unwrap();
        let want = if status == StatusCode::NOT_FOUND { "not_found" } else { "request.malformed" };
        assert_eq!(e["error"], want, "{uri}");
    }
    // Methods other than GET (and HEAD) are refused.
    let (status, _, _) = f.call("POST", "/console/governance", Some(b"{}".to_vec()));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// Counts what `/v1/log/entries` holds, as the totals should.
fn scan(f: &Fixture) -> (u64, u64, u64, u64) {
    let size = f.engine.log().size();
    let (_, page) = f.json("GET", &format!("/v1/log/entries?start=0&end={size}"), None);
    let mut n = (0, 0, 0, 0);
    for e in page["entries"].as_array().unwrap() {
        if e["entry"]["kind"] == "decision" {
            n.0 += 1;
            match e["entry"]["decision"]["outcome"].as_str().unwrap() {
                "allow" => n.1 += 1,
                "deny" => n.2 += 1,
                _ => n.3 += 1,
            }
        }
    }
    n
}

#[test]
fn totals_count_every_decision_since_the_log_began() {
    let f = fixture(true);
    let (status, empty) = f.json("GET", "/v1/stats", None);
    assert_eq!(status, StatusCode::OK);
    assert_eq!((empty["decisions"].clone(), empty["size"].clone()), (json!(0), json!(f.engine.log().size())));
    assert_eq!(empty["entries"]["activation"], 1);
    // An allow, a policy deny, an unparseable body, a forged credential, a pending payment.
    let (_, allow) = f.json("POST", "/v1/authorize", Some(f.request()));
    assert_eq!(allow["outcome"], "allow");
    let support = f.workload("spiffe://demo.example/agent/support-1", "support");
    let cross = json!({"credentials": {"workload": support}, "action": "write", "resource": "fs:/zones/billing", "arguments": {"path": "/zones/billing/x"}});
    f.json("POST", "/v1/authorize", Some(cross));
    f.call("POST", "/v1/authorize", Some(b"{\"action\": ".to_vec()));
    f.json(
        "POST",
        "/v1/authorize",
        Some(json!({"credentials": {"workload": "not.a.jwt"}, "action": "read", "resource": "r", "arguments": {}})),
    );
    let billing = f.workload("spiffe://demo.example/agent/billing-1", "billing");
    let pay = json!({"credentials": {"workload": billing}, "action": "payment", "resource": "payments:stripe", "arguments": {"amount": 2500, "currency": "EUR"}});
    let (_, pending) = f.json("POST", "/v1/authorize", Some(pay));
    assert_eq!(pending["outcome"], "pending", "{pending}");
    let op = f.operator();
    let (status, _) = f.json_as(
        "POST",
        &format!("/v1/approvals/{}/approve", pending["id"].as_str().unwrap()),
        Some(json!({"reason": "ok"})),
        Some(&op),
    );
    assert_eq!(status, StatusCode::OK);

    let (_, s) = f.json("GET", "/v1/stats", None);
    let (decisions, allow, deny, pend) = scan(&f);
    assert_eq!(
        (s["decisions"].as_u64(), s["allow"].as_u64(), s["deny"].as_u64(), s["pending"].as_u64()),
        (Some(decisions), Some(allow), Some(deny), Some(pend)),
        "{s}"
    );
    assert_eq!((allow, pend), (1, 1));
    assert!(decisions >= 4, "{decisions}");
    assert_eq!(s["approved"], 1);
    assert_eq!(s["size"], f.engine.log().size());
    assert_eq!(s["by_reason"]["deny"]["policy.denied"], 1, "{s}");
    assert_eq!(s["by_reason"]["deny"]["request.malformed"], 1, "{s}");
    assert_eq!(s["by_reason"]["allow"][""], 1, "{s}");
    assert_eq!(s["entries"]["approval"], 1);
    let by_reason_total: u64 = s["by_reason"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|m| m.as_object().unwrap().values().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(by_reason_total, decisions + s["anonymous_denied"].as_u64().unwrap());
}

#[test]
fn a_bundle_has_its_text_and_who_activated_it() {
    let f = fixture(true);
    let op = f.operator();
    let (_, list) = f.json_as("GET", "/v1/bundles", None, Some(&op));
    let starter = list["bundles"][0]["digest"].as_str().unwrap().to_owned();
    assert!(list["bundles"][0].get("last_activated_by").is_none(), "the CLI activated it: {list}");
    let (frozen, sig) = frozen(&f);
    let (status, up) = f.json_as("POST", "/v1/bundles", Some(bundle_body(&frozen, &sig, true)), Some(&op));
    assert_eq!(status, StatusCode::OK, "{up}");
    let digest = up["digest"].as_str().unwrap();
    let (status, d) = f.json_as("GET", &format!("/v1/policy/bundles/{digest}"), None, Some(&op));
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!((d["digest"].as_str(), d["active"].clone()), (Some(digest), json!(true)));
    assert_eq!(d["last_activated_by"], "spiffe://demo.example/operator/alice");
    assert_eq!(d["activations"].as_array().unwrap().len(), 1);
    assert_eq!(d["activations"][0]["log_index"], up["log_index"]);
    assert!(d["parts"]["policies"].as_str().unwrap().contains("@id(\"freeze\")"));
    assert!(d["parts"]["schema"].as_str().unwrap().contains("entity"), "{d}");
    // A rollback: the starter bundle's second activation, by the operator.
    let (status, _) = f.json_as("POST", &format!("/v1/bundles/{starter}/activate"), None, Some(&op));
    assert_eq!(status, StatusCode::OK);
    let (_, s) = f.json_as("GET", &format!("/v1/policy/bundles/{starter}"), None, Some(&op));
    let activations = s["activations"].as_array().unwrap();
    assert_eq!(activations.len(), 2, "{s}");
    assert_eq!(
        (activations[0]["operator"].clone(), activations[1]["operator"].clone()),
        (Value::Null, json!("spiffe://demo.example/operator/alice"))
    );
    assert!(!s["parts"]["policies"].as_str().unwrap().contains("freeze"));
    // Not a digest is malformed; a digest the log does not hold is not found.
    for bad in ["sha256:00", "nope", "sha256:..%2f..", &format!("{starter}x")] {
        let (status, e) = f.json_as("GET", &format!("/v1/policy/bundles/{bad}"), None, Some(&op));
        assert_eq!((status, e["error"].clone()), (StatusCode::BAD_REQUEST, json!("request.malformed")), "{bad}");
    }
    let absent = format!("sha256:{}", "0".repeat(64));
    let (status, e) = f.json_as("GET", &format!("/v1/policy/bundles/{absent}"), None, Some(&op));
    assert_eq!((status, e["error"].clone()), (StatusCode::NOT_FOUND, json!("not_found")), "{e}");
}

/// Reads a server-sent event stream until `want` events of `kind` arrived (or 5 s passed).
async fn events(body: &mut Body, kind: &str, want: usize) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while out.iter().filter(|(k, _): &&(String, Value)| k == kind).count() < want {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut event = ("message".to_owned(), String::new(), None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event.0 = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    event.1 = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    event.2 = Some(v.to_owned());
                }
            }
            if !event.1.is_empty() {
                let mut v: Value = serde_json::from_str(&event.1).unwrap();
                if let (Some(id), Some(o)) = (event.2, v.as_object_mut()) {
                    o.insert("_id".into(), json!(id));
                }
                out.push((event.0, v));
            }
        }
    }
    out
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::builder().method("GET").uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).unwrap()
}

#[test]
fn the_log_streams_as_events_from_where_the_client_stands() {
    let f = fixture(true);
    for _ in 0..3 {
        f.json("POST", "/v1/authorize", Some(f.request()));
    }
    // The starter bundle's activation and its re-evaluation, then three decisions.
    let size = f.engine.log().size();
    assert_eq!(size, 5);
    let (_, page) = f.json("GET", "/v1/log/entries?start=4&end=5", None);
    rt().block_on(async {
        // From the start: every entry, in order, with its index as the event id.
        let resp = f.router.clone().oneshot(request("/v1/log/stream?from=0", &[])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body();
        let got = events(&mut body, "entry", 5).await;
        let entries: Vec<&Value> = got.iter().filter(|(k, _)| k == "entry").map(|(_, v)| v).collect();
        assert_eq!(entries.iter().map(|e| e["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(entries[0]["entry"]["kind"], "activation");
        assert_eq!(entries[4]["entry"]["kind"], "decision");
        assert_eq!(entries[4]["_id"], "4");
        // The leaf hash is the entry's, as /v1/log/entries has it.
        assert_eq!(entries[4]["leaf_hash"], page["entries"][0]["leaf_hash"]);
        assert!(got.iter().any(|(k, v)| k == "size" && v["size"] == 5));
        // Then live: a new decision arrives on the open stream.
        let router = f.router.clone();
        let req = f.request();
        let d = tokio::task::spawn_blocking(move || {
            let r = Request::builder()
                .method("POST")
                .uri("/v1/authorize")
                .body(Body::from(serde_json::to_vec(&req).unwrap()))
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let resp = router.oneshot(r).await.unwrap();
                let b = resp.into_body().collect().await.unwrap().to_bytes();
                serde_json::from_slice::<Value>(&b).unwrap()
            })
        })
        .await
        .unwrap();
        let live = events(&mut body, "entry", 1).await;
        let live: Vec<&Value> = live.iter().filter(|(k, _)| k == "entry").map(|(_, v)| v).collect();
        assert_eq!(live[0]["index"], 5);
        assert_eq!(live[0]["entry"]["id"], d["id"]);

        // Resuming: Last-Event-ID is the last index held; the stream goes on after it.
        let resp = f.router.clone().oneshot(request("/v1/log/stream", &[("last-event-id", "3")])).await.unwrap();
        let mut body = resp.into_body();
        let got = events(&mut body, "entry", 2).await;
        let idx: Vec<u64> =
            got.iter().filter(|(k, _)| k == "entry").map(|(_, v)| v["index"].as_u64().unwrap()).collect();
        assert_eq!(idx, vec![4, 5]);
        // Without a position: the tail (here the whole log, shorter than the tail).
        let resp = f.router.clone().oneshot(request("/v1/log/stream", &[])).await.unwrap();
        let mut body = resp.into_body();
        let got = events(&mut body, "entry", 6).await;
        assert_eq!(got.iter().filter(|(k, _)| k == "entry").count(), 6);
    });
    // Hostile positions are refused before any stream opens.
    for (uri, headers) in [
        ("/v1/log/stream?from=99", &[][..]),
        ("/v1/log/stream?from=-1", &[][..]),
        ("/v1/log/stream?from=x", &[][..]),
        ("/v1/log/stream?start=0", &[][..]),
        ("/v1/log/stream", &[("last-event-id", "abc")][..]),
        ("/v1/log/stream", &[("last-event-id", "18446744073709551615")][..]),
        ("/v1/log/stream", &[("last-event-id", "-3")][..]),
        ("/v1/log/stream", &[("last-event-id", "99")][..]),
    ] {
        let (status, _, body) = get(&f, uri, headers);
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, e["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("request.malformed")),
            "{uri} {headers:?}"
        );
    }
}

/// A scenario that narrates three steps, the second waiting until it is let go.
struct Scripted {
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    ok: bool,
}

impl DemoRunner for Scripted {
    fn run(&self, narrate: Narrate) -> Result<bool, String> {
        narrate(json!({"type": "section", "title": "Reads"}));
        narrate(json!({"type": "step", "n": 1, "label": "a read", "ok": true, "outcome": "allow"}));
        self.gate.lock().unwrap().recv_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
        narrate(json!({"type": "step", "n": 2, "label": "a write", "ok": self.ok, "outcome": "deny"}));
        Ok(self.ok)
    }
}

#[test]
fn a_demo_run_is_started_by_an_operator_and_narrated_as_events() {
    let mut f = fixture(true);
    let op = f.operator();
    // Without a runner (a server other than `writ serve`): 503.
    let (status, e) = f.json_as("POST", "/v1/demo/runs", None, Some(&op));
    assert_eq!((status, e["error"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!("internal")), "{e}");
    let (tx, rx) = std::sync::mpsc::channel();
    let runner = Arc::new(Scripted { gate: std::sync::Mutex::new(rx), ok: true });
    f.router = app(AppState::new(f.engine.clone()).with_demo(runner));
    let runtime = rt();
    let bearer = format!("Bearer {op}");
    runtime.block_on(async {
        let post = || {
            Request::builder()
                .method("POST")
                .uri("/v1/demo/runs")
                .header("authorization", &bearer)
                .body(Body::empty())
                .unwrap()
        };
        let resp = f.router.clone().oneshot(post()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let run: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let id = run["id"].as_str().unwrap().to_owned();
        assert_eq!(
            (run["status"].clone(), run["operator"].clone()),
            (json!("running"), json!("spiffe://demo.example/operator/alice"))
        );
        // One run at a time.
        let resp = f.router.clone().oneshot(post()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let busy: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert!(busy["message"].as_str().unwrap().contains(&id), "{busy}");
        // The stream sends what happened so far, then each event as it happens, then `end`.
        let resp = f
            .router
            .clone()
            .oneshot(request(&format!("/v1/demo/runs/{id}/events"), &[("authorization", &bearer)]))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let first = events(&mut body, "step", 1).await;
        assert_eq!(first.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec!["section", "step"]);
        tx.send(()).unwrap();
        let rest = events(&mut body, "end", 1).await;
        assert_eq!(rest.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec!["step", "end"]);
        assert_eq!(rest[0].1["_id"], "2");
        assert_eq!(rest[1].1["status"], "succeeded");
        // Resuming after the first event: the rest only.
        let resp = f
            .router
            .clone()
            .oneshot(request(
                &format!("/v1/demo/runs/{id}/events"),
                &[("authorization", &bearer), ("last-event-id", "0")],
            ))
            .await
            .unwrap();
        let mut body = resp.into_body();
        let again = events(&mut body, "end", 1).await;
        assert_eq!(again.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec!["step", "step", "end"]);
        // The whole run, read at once.
        let resp = f
            .router
            .clone()
            .oneshot(request(&format!("/v1/demo/runs/{id}"), &[("authorization", &bearer)]))
            .await
            .unwrap();
        let whole: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(whole["status"], "succeeded");
        assert_eq!(whole["events"].as_array().unwrap().len(), 3);
        assert_eq!(whole["events"][2]["seq"], 2);
        // Hostile: an unknown run, a bad Last-Event-ID.
        for (uri, headers) in [
            ("/v1/demo/runs/demo-000000000000".to_owned(), [("authorization", bearer.as_str())]),
            ("/v1/demo/runs/x/events".to_owned(), [("authorization", bearer.as_str())]),
        ] {
            let resp = f.router.clone().oneshot(request(&uri, &headers)).await.unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
        }
        let resp = f
            .router
            .clone()
            .oneshot(request(
                &format!("/v1/demo/runs/{id}/events"),
                &[("authorization", &bearer), ("last-event-id", "x")],
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        // A second run, held at its gate: at most 16 of its event streams open at once
        // (found in review: unbounded); the 17th is 503.
        let resp = f.router.clone().oneshot(post()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let run: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let id = run["id"].as_str().unwrap().to_owned();
        let open =
            || f.router.clone().oneshot(request(&format!("/v1/demo/runs/{id}/events"), &[("authorization", &bearer)]));
        let mut held = Vec::new();
        for _ in 0..16 {
            let resp = open().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            held.push(resp.into_body());
        }
        assert_eq!(open().await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        tx.send(()).unwrap();
    });
}

/// Found in review: the demo scenario activates a variant of the starter bundle (and
/// re-evaluates every outstanding writ under it) on the server it runs against. Started on
/// a control plane that governs anything else, it decided real calls under the starter
/// policy and revoked real writs. It runs only where the shipped starter bundle is active.
#[test]
fn a_demo_run_is_refused_where_the_active_bundle_is_not_the_starter() {
    let mut f = fixture(true);
    let op = f.operator();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let runner = Arc::new(Scripted { gate: std::sync::Mutex::new(rx), ok: true });
    f.router = app(AppState::new(f.engine.clone()).with_demo(runner));
    let (b, sig) = crate::admin::frozen(&f);
    let (s, up) = f.json_as("POST", "/v1/bundles", Some(crate::admin::bundle_body(&b, &sig, true)), Some(&op));
    assert_eq!(s, StatusCode::OK, "{up}");
    let before = f.engine.log().size();
    let (status, e) = f.json_as("POST", "/v1/demo/runs", None, Some(&op));
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(e["message"].as_str().unwrap().contains("starter bundle"), "{e}");
    assert_eq!(f.engine.log().size(), before, "nothing was run");
    drop(tx);
}
