use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use writ_log::{Hash, NoteVerifier, SignedCheckpoint, verify_consistency, verify_inclusion};

fn writ(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_writ")).arg("--data-dir").arg(dir).args(args).output().unwrap()
}

fn ok_json(dir: &Path, args: &[&str]) -> Value {
    let out = writ(dir, args);
    assert!(out.status.success(), "writ {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap()).collect()
}

fn hash(v: &Value) -> Hash {
    Hash::from_base64(v.as_str().unwrap()).unwrap()
}

#[test]
fn log_commands_prove_what_the_checkpoint_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok_json(dir, &["log", "demo", "--entries", "700"]);
    let vkey = std::fs::read_to_string(dir.join("log/log.vkey")).unwrap();
    let verifier = NoteVerifier::from_vkey(vkey.trim()).unwrap();
    assert_eq!(std::fs::metadata(dir.join("keys/log.key")).unwrap().permissions().mode() & 0o777, 0o600);

    // The checkpoint is the signed note itself, and verifies with only the public key.
    let out = writ(dir, &["log", "checkpoint"]);
    assert!(out.status.success());
    let (cp, _) = SignedCheckpoint::open(&out.stdout, &verifier, &[]).unwrap();
    let cp = cp.checkpoint().clone();
    assert_eq!(cp.size, 700);

    // An inclusion proof from the shell verifies against the signed root.
    let entry = ok_json(dir, &["log", "entries", "--start", "612", "--end", "613"]);
    let bytes = B64.decode(entry[0]["entry_base64"].as_str().unwrap()).unwrap();
    assert_eq!(entry[0]["entry"]["kind"], "decision");
    let proof = ok_json(dir, &["log", "prove", "--index", "612"]);
    assert_eq!(proof["tree_size"], 700);
    verify_inclusion(612, 700, &Hash::leaf(&bytes), &hashes(&proof["proof"]), &cp.root).unwrap();

    // Append more; the old checkpoint is consistent with the new one.
    let out = Command::new(env!("CARGO_BIN_EXE_writ"))
        .arg("--data-dir")
        .arg(dir)
        .args(["log", "append", "--entry", "one", "--entry", "two"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = writ(dir, &["log", "checkpoint"]);
    let (new_cp, _) = SignedCheckpoint::open(&out.stdout, &verifier, &[]).unwrap();
    assert_eq!(new_cp.checkpoint().size, 702);
    let c = ok_json(dir, &["log", "consistency", "--from", "700"]);
    assert_eq!(hash(&c["from_root"]), cp.root);
    verify_consistency(700, 702, &hashes(&c["proof"]), &cp.root, &new_cp.checkpoint().root).unwrap();
    // Nothing appended since a size: the empty proof (RFC 9162 §2.1.4.2), not an error.
    let same = ok_json(dir, &["log", "consistency", "--from", "702"]);
    assert_eq!((same["proof"].clone(), same["from_root"].clone()), (serde_json::json!([]), same["to_root"].clone()));

    let report = ok_json(dir, &["log", "verify"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 702);
}

#[test]
fn verify_names_the_altered_entry_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok_json(dir, &["log", "demo", "--entries", "300"]);
    // Entries are appended concurrently: find where the one with n = 217 landed.
    let entries = ok_json(dir, &["log", "entries", "--start", "0", "--end", "300"]);
    let index = entries.as_array().unwrap().iter().position(|e| e["entry"]["n"] == 217).unwrap() as u64;
    let db = dir.join("log/log.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let needle = br#""n":217,"#;
    let hits: Vec<usize> =
        bytes.windows(needle.len()).enumerate().filter(|(_, w)| w == needle).map(|(i, _)| i).collect();
    assert!(!hits.is_empty());
    for at in hits {
        bytes[at + 6] = b'8'; // one byte: 217 -> 218
    }
    std::fs::write(&db, &bytes).unwrap();
    let out = writ(dir, &["log", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let named: Vec<u64> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "entry")
        .map(|p| p["index"].as_u64().unwrap())
        .collect();
    assert_eq!(named, vec![index], "{report}");
}

#[test]
fn hostile_arguments_fail_with_a_message_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No log yet.
    for args in [&["log", "checkpoint"][..], &["log", "verify"], &["log", "prove", "--index", "0"]] {
        let out = writ(dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    ok_json(dir, &["log", "demo", "--entries", "10"]);
    for args in [
        &["log", "entries", "--start", "5", "--end", "2"][..],
        &["log", "entries", "--start", "0", "--end", "5000"],
        &["log", "entries", "--start", "8", "--end", "11"],
        &["log", "prove", "--index", "10"],
        &["log", "prove", "--index", "0", "--size", "11"],
        &["log", "consistency", "--from", "0"],
        &["log", "consistency", "--from", "11", "--to", "12"],
        &["log", "prove", "--index", "-1"],
    ] {
        let out = writ(dir, args);
        assert_ne!(out.status.code(), Some(0), "{args:?} succeeded");
        assert!(!out.stderr.is_empty(), "{args:?} gave no message");
    }
    // A key readable by others is refused.
    std::fs::set_permissions(dir.join("keys/log.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = writ(dir, &["log", "append", "--entry", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("0600"));
    std::fs::set_permissions(dir.join("keys/log.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(ok_json(dir, &["log", "verify"])["entries"], 10);
}

#[test]
fn a_second_writer_is_refused_while_one_holds_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok_json(dir, &["log", "demo", "--entries", "5"]);
    let lock = std::fs::OpenOptions::new().write(true).open(dir.join("log/writer.lock")).unwrap();
    lock.try_lock().unwrap();
    let out = writ(dir, &["log", "append", "--entry", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another writ process"));
    // Readers are not blocked.
    assert_eq!(ok_json(dir, &["log", "verify"])["ok"], true);
}

/// SIGKILL a child appending under concurrency at random moments; every acknowledged
/// append must survive, the tree must verify, and every checkpoint published before a
/// crash must be consistent with the reopened log.
#[test]
fn crash_test_short() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_writ-dev"))
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["log", "crashtest", "--rounds", "6", "--concurrency", "32", "--min-ms", "20", "--max-ms", "400"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("crashtest passed: 6 rounds"), "{stdout}");
}

/// The developer tools are not among the shipped binary's commands.
#[test]
fn developer_tools_are_not_in_writ() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["log", "--help"][..], &["--help"][..]] {
        let out = writ(tmp.path(), args);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !help.contains("crashtest") && !help.contains("bench against a fresh"),
            "{help}"
        );
    }
    for args in [&["log", "crashtest"][..], &["log", "bench"][..], &["log", "crash-child"][..]] {
        assert_eq!(writ(tmp.path(), args).status.code(), Some(2), "writ {args:?} still runs");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_writ-dev")).args(["log", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("crashtest") && help.contains("bench"), "{help}");
}

use std::os::unix::fs::PermissionsExt as _;

/// A checkpoint the log signed for an older size that contradicts the stored tree (a store
/// altered, then re-signed with the log key): `prove` and `consistency` at that size refuse
/// (found in review: they compared only the latest checkpoint and printed a proof).
#[test]
fn an_older_signed_checkpoint_that_contradicts_the_tree_is_refused() {
    use writ_log::{Checkpoint, NoteSigner, SqliteOptions, SqliteStore, Store as _};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    ok_json(dir, &["log", "demo", "--entries", "10"]);
    let key = std::fs::read_to_string(dir.join("keys/log.key")).unwrap();
    let signer = NoteSigner::from_private_key(key.trim()).unwrap();
    let store = SqliteStore::open(&dir.join("log/log.db"), SqliteOptions::default()).unwrap();
    let held: Vec<u64> = store.checkpoints().unwrap().into_iter().map(|(size, _)| size).collect();
    let size = (1..10).find(|s| !held.contains(s)).unwrap();
    // Before: a proof at that size, unsigned (no checkpoint for it).
    let proof = ok_json(dir, &["log", "prove", "--index", "0", "--size", &size.to_string()]);
    assert_eq!(proof["root_signed"], false);
    let forged = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root: Hash::leaf(b"another tree"),
        extensions: Vec::new(),
    };
    let note = SignedCheckpoint::sign(forged, &signer).unwrap();
    store.put_checkpoint(size, note.note()).unwrap();
    drop(store);
    for args in [
        vec!["log", "prove", "--index", "0", "--size", &size.to_string()],
        vec!["log", "consistency", "--from", &size.to_string()],
    ] {
        let out = writ(dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stderr).contains("names another tree"), "{args:?}");
    }
    // Another size is still proved.
    let other = (1..10).find(|s| *s != size && !held.contains(s)).unwrap();
    ok_json(dir, &["log", "prove", "--index", "0", "--size", &other.to_string()]);
}
