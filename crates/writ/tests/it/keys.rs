//! Issue 13, items 7 and 8, through the binary. One key-rotation path: `writ keys rotate`
//! records a `key_rotation` entry like `POST /v1/keys/rotate`, a rotation whose record fails
//! leaves the keys and the JWKS as they were, and a key added to `keys/writ.keys` behind
//! the log's back never signs. `writ verify` as an enforcement point: it verifies from
//! public keys alone (a JWKS file or URL, never `keys/`), and a writ verifies once however
//! many verifications of it run at once.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Value, json};

use crate::support::{issue, json_out, start_server, writ};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A data directory with keys and the starter bundle active; returns the request file of an
/// allowed read by billing-1.
fn setup(dir: &Path) -> PathBuf {
    assert!(writ(dir, &["keys", "generate"], None).status.success());
    assert!(writ(dir, &["policy", "activate", "--starter"], None).status.success());
    let token = issue(dir, "spiffe://demo.example/agent/billing-1", "billing");
    let request = json!({"credentials": {"workload": token.trim()}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    let file = dir.join("req.json");
    std::fs::write(&file, request.to_string()).unwrap();
    file
}

/// `writ authorize` of the request file: the whole output.
fn authorize(dir: &Path, req: &Path) -> Output {
    writ(dir, &["authorize", "--request", req.to_str().unwrap()], None)
}

/// A writ for the request file (the decision must be an allow).
fn writ_for(dir: &Path, req: &Path) -> String {
    let out = authorize(dir, req);
    assert!(out.status.success(), "{}", stderr(&out));
    json_out(&out)["writ"].as_str().unwrap().to_owned()
}

fn kid_of(writ: &str) -> String {
    let header: Value = serde_json::from_slice(&B64URL.decode(writ.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn log_size(dir: &Path) -> u64 {
    json_out(&writ(dir, &["log", "replay"], None))["entries"].as_u64().unwrap()
}

/// Every log entry, parsed.
fn entries(dir: &Path) -> Vec<Value> {
    let size = log_size(dir).to_string();
    let out = json_out(&writ(dir, &["log", "entries", "--start", "0", "--end", &size], None));
    out.as_array().unwrap().iter().map(|e| e["entry"].clone()).collect()
}

fn published_kids(dir: &Path) -> Vec<Value> {
    let jwks: Value = serde_json::from_slice(&std::fs::read(dir.join("trust/jwks.json")).unwrap()).unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].clone()).collect()
}

fn verify(dir: &Path, writ_: &str, req: &Path, more: &[&str]) -> Output {
    let mut args = vec!["verify", "--writ", writ_, "--request", req.to_str().unwrap()];
    args.extend_from_slice(more);
    writ(dir, &args, None)
}

/// `writ keys rotate` on the command line took a path of its own: it added the key and
/// published the JWKS, and recorded nothing. It now records the rotation like the HTTP
/// route: the entry names the new key and every published one, and new writs carry it.
#[test]
fn writ_keys_rotate_records_a_key_rotation_in_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let old = writ_for(dir, &req);
    let out = writ(dir, &["keys", "rotate"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = json_out(&out);
    let kid = r["kid"].as_str().unwrap();
    assert_eq!(r["kids"].as_array().unwrap().len(), 2);
    assert_eq!(r["kids"][0].as_str(), Some(kid_of(&old).as_str()));

    let all = entries(dir);
    let rotations: Vec<&Value> = all.iter().filter(|e| e["kind"] == "key_rotation").collect();
    assert_eq!(rotations.len(), 1, "{all:?}");
    assert_eq!(rotations[0]["kid"], kid);
    assert_eq!(rotations[0]["kids"], r["kids"]);
    let index = r["log_index"].as_u64().unwrap() as usize;
    assert_eq!(all[index]["kind"], "key_rotation");
    assert_eq!(published_kids(dir), r["kids"].as_array().unwrap().clone());

    // New writs carry the new key, old ones still verify, and the log replays.
    let new = writ_for(dir, &req);
    assert_eq!(kid_of(&new), kid);
    for w in [&old, &new] {
        let v = verify(dir, w, &req, &[]);
        assert_eq!(json_out(&v)["ok"], true, "{}", String::from_utf8_lossy(&v.stdout));
    }
    assert_eq!(json_out(&writ(dir, &["log", "replay"], None))["mismatches"], json!([]));
}

/// `chattr FLAG PATHS...`; false where chattr is missing or the file system refuses.
fn chattr(flag: &str, paths: &[PathBuf]) -> bool {
    Command::new("chattr").arg(flag).args(paths).status().is_ok_and(|s| s.success())
}

/// The log made unwritable (its database immutable: `chattr +i` binds root too): the
/// rotation fails, and `keys/writ.keys` and `trust/jwks.json` are byte for byte as before,
/// so neither a restart nor an enforcement point trusts a key whose rotation the log lacks.
#[test]
fn a_rotation_whose_record_fails_leaves_the_keys_and_the_jwks_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let keys = std::fs::read(dir.join("keys/writ.keys")).unwrap();
    let jwks = std::fs::read(dir.join("trust/jwks.json")).unwrap();
    let size = log_size(dir);
    let db = vec![dir.join("log/log.db")];
    if !chattr("+i", &db) {
        eprintln!("skipped: chattr +i is not available here");
        return;
    }
    let out = writ(dir, &["keys", "rotate"], None);
    assert!(chattr("-i", &db));
    assert_eq!(out.status.code(), Some(2), "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(stderr(&out).contains("log"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("keys/writ.keys")).unwrap(), keys, "keys/writ.keys changed");
    assert_eq!(std::fs::read(dir.join("trust/jwks.json")).unwrap(), jwks, "trust/jwks.json changed");
    assert_eq!(log_size(dir), size);
    // The engine still opens on the old key and signs with it.
    let w = writ_for(dir, &req);
    assert_eq!(json!([kid_of(&w)]), Value::Array(published_kids(dir)));
}

/// Appends a line to `keys/writ.keys` (its mode stays 0600).
fn plant_key(dir: &Path, seed: [u8; 32]) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().append(true).mode(0o600).open(dir.join("keys/writ.keys")).unwrap();
    write!(f, "\n{}\n", hex_of(&seed)).unwrap();
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key appended to `keys/writ.keys` by hand (not through a rotation) was the newest key
/// and signed every writ from then on. The engine now refuses to open over it, before and
/// after a recorded rotation, so nothing is decided or signed until it is removed.
#[test]
fn a_key_added_to_writ_keys_behind_the_logs_back_never_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let genuine = std::fs::read(dir.join("keys/writ.keys")).unwrap();
    let size = log_size(dir);
    plant_key(dir, [7; 32]);
    let out = authorize(dir, &req);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains("keys/writ.keys") && stderr(&out).contains("no key rotation"), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(log_size(dir), size, "decided with a planted key");
    // Nor can the planted key be laundered through a rotation.
    assert_eq!(writ(dir, &["keys", "rotate"], None).status.code(), Some(2));
    assert_eq!(log_size(dir), size);

    // After a recorded rotation, the same.
    std::fs::write(dir.join("keys/writ.keys"), &genuine).unwrap();
    let rotated = json_out(&writ(dir, &["keys", "rotate"], None));
    let recorded = std::fs::read(dir.join("keys/writ.keys")).unwrap();
    plant_key(dir, [8; 32]);
    let out = authorize(dir, &req);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("never recorded"), "{}", stderr(&out));
    std::fs::write(dir.join("keys/writ.keys"), &recorded).unwrap();
    assert_eq!(kid_of(&writ_for(dir, &req)), rotated["kid"].as_str().unwrap());
}

/// `writ verify` built its JWKS from the private seeds in `keys/`, which an enforcement
/// point does not hold. With `keys/` gone it verifies from `trust/jwks.json` (or `--jwks`);
/// a writ signed by a key outside that JWKS is `writ.bad_signature`.
#[test]
fn writ_verify_needs_no_signing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let (first, second) = (writ_for(dir, &req), writ_for(dir, &req));
    let other_tmp = tempfile::tempdir().unwrap();
    let other = other_tmp.path();
    let other_req = setup(other);
    let foreign = writ_for(other, &other_req);

    std::fs::rename(dir.join("keys"), dir.join("elsewhere")).unwrap();
    let v = verify(dir, &first, &req, &[]);
    assert_eq!(json_out(&v)["ok"], true, "{}", stderr(&v));
    // Another control plane's writ (same issuer name, same call): not a trusted key.
    let v = verify(dir, &foreign, &req, &[]);
    assert_eq!(v.status.code(), Some(1));
    assert_eq!(json_out(&v)["reason"], "writ.bad_signature", "{}", String::from_utf8_lossy(&v.stdout));
    // This control plane's writ against the other's JWKS: not trusted either.
    let elsewhere = other.join("trust/jwks.json");
    let v = verify(dir, &second, &req, &["--jwks", elsewhere.to_str().unwrap()]);
    assert_eq!(json_out(&v)["reason"], "writ.bad_signature");
    // No JWKS at all: an error, not a verification.
    std::fs::remove_file(dir.join("trust/jwks.json")).unwrap();
    let v = verify(dir, &second, &req, &[]);
    assert_eq!(v.status.code(), Some(2));
    assert!(stderr(&v).contains("jwks.json"), "{}", stderr(&v));
}

/// `writ verify --jwks-url` takes the keys from a control plane's published JWKS, with no
/// file of the data directory's `keys/` or `trust/`; a URL that serves no JWKS, or that is
/// not plain http, is an error.
#[test]
fn writ_verify_takes_the_jwks_from_a_url() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = start_server(dir);
    let token = issue(dir, "spiffe://demo.example/agent/billing-1", "billing");
    let request = json!({"credentials": {"workload": token.trim()}, "action": "read", "resource": "fs:/zones/billing", "arguments": {}});
    let req = dir.join("req.json");
    std::fs::write(&req, request.to_string()).unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let decision = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let mut conn = crate::client::Conn::connect(addr).await.unwrap();
        conn.post_json("/v1/authorize", &request, None).await.unwrap().json().unwrap()
    });
    let w = decision["writ"].as_str().unwrap_or_else(|| panic!("{decision}")).to_owned();

    // The enforcement point holds neither the signing keys nor the published file.
    std::fs::rename(dir.join("keys"), dir.join("elsewhere")).unwrap();
    std::fs::remove_file(dir.join("trust/jwks.json")).unwrap();
    let url = format!("http://{}/.well-known/jwks.json", server.addr);
    let v = verify(dir, &w, &req, &["--jwks-url", &url]);
    assert_eq!(json_out(&v)["ok"], true, "{}", stderr(&v));
    let base = format!("http://{}", server.addr);
    let v = verify(dir, &w, &req, &["--jwks-url", &base]);
    assert_eq!(json_out(&v)["reason"], "writ.replayed", "{}", stderr(&v));
    for bad in [format!("http://{}/healthz", server.addr), format!("https://{}/.well-known/jwks.json", server.addr)] {
        let v = verify(dir, &w, &req, &["--jwks-url", &bad]);
        assert_eq!(v.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&v.stdout));
    }
}

/// `writ verify` read the used set, verified and appended with no lock: of 8 concurrent
/// runs on one writ, up to 3 accepted it. Now 16 at once: exactly one accepts, the others
/// answer `writ.replayed`; the record holds the writ once, after a line a crash cut short.
#[test]
fn concurrent_writ_verify_runs_accept_a_writ_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let w = writ_for(dir, &req);
    std::fs::create_dir_all(dir.join("enforce")).unwrap();
    std::fs::write(dir.join("enforce/used.txt"), "an-earlier-writ\ncut-sh").unwrap();
    let children: Vec<_> = (0..16)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_writ"))
                .arg("--data-dir")
                .arg(dir)
                .args(["verify", "--writ", &w, "--request", req.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let mut accepted = 0;
    for o in &outs {
        let v = json_out(o);
        if v["ok"] == true {
            assert_eq!(o.status.code(), Some(0));
            accepted += 1;
        } else {
            assert_eq!((o.status.code(), v["reason"].as_str()), (Some(1), Some("writ.replayed")), "{v}");
        }
    }
    assert_eq!(accepted, 1, "{} of 16 concurrent verifications accepted one writ", accepted);
    let jti = claims_of(&w)["jti"].as_str().unwrap().to_owned();
    let used = std::fs::read_to_string(dir.join("enforce/used.txt")).unwrap();
    assert_eq!(used, format!("an-earlier-writ\ncut-sh\n{jti}\n"));
}

/// The claims of a writ (unverified).
fn claims_of(w: &str) -> Value {
    serde_json::from_slice(&B64URL.decode(w.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// A used-writ record that cannot be read was taken as empty, so every writ in it verified
/// again. It now fails the verification (exit 2), closed.
#[test]
fn an_unreadable_used_record_fails_verification_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let req = setup(dir);
    let w = writ_for(dir, &req);
    assert_eq!(json_out(&verify(dir, &w, &req, &[]))["ok"], true);
    let used = dir.join("enforce/used.txt");
    let mut bytes = std::fs::read(&used).unwrap();
    bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
    std::fs::write(&used, &bytes).unwrap();
    let v = verify(dir, &w, &req, &[]);
    assert_eq!(v.status.code(), Some(2), "{}", String::from_utf8_lossy(&v.stdout));
    assert!(!String::from_utf8_lossy(&v.stdout).contains("\"ok\": true"));
}
