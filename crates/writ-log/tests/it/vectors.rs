//! The golden RFC 6962 proof vectors published by the transparency-dev Merkle library
//! (copied unchanged to `testdata/rfc6962-proofs`, Apache-2.0; see its README).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use writ_log::{Hash, verify_consistency, verify_inclusion};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    #[serde(default, deserialize_with = "nullable")]
    proof: Vec<String>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    #[serde(default, deserialize_with = "nullable")]
    proof: Vec<String>,
    want_err: bool,
}

fn files(sub: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rfc6962-proofs").join(sub);
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Our API takes typed 32-byte hashes, so a vector with a hash of another length fails at
/// decoding; that counts as rejection.
fn hashes(list: &[String]) -> Option<Vec<Hash>> {
    list.iter().map(|h| Hash::from_base64(h)).collect()
}

/// Vectors whose roots are not 32-byte hashes yet expect success: Go compares them as
/// opaque byte strings, our typed API cannot even represent them.
const UNREPRESENTABLE: &[&str] = &["sizes-are-equal-one-and-proof-is-empty.json"];

#[test]
fn published_inclusion_vectors() {
    let all = files("inclusion");
    assert!(all.len() > 50, "vectors missing: {}", all.len());
    let (mut ok, mut rejected) = (0, 0);
    for path in all {
        let v: Inclusion = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let result = (|| {
            let root = Hash::from_base64(&v.root)?;
            let leaf = Hash::from_base64(&v.leaf_hash)?;
            let proof = hashes(&v.proof)?;
            verify_inclusion(v.leaf_idx, v.tree_size, &leaf, &proof, &root).ok()
        })();
        assert_eq!(result.is_none(), v.want_err, "{}", path.display());
        if v.want_err { rejected += 1 } else { ok += 1 }
    }
    assert!(ok > 5 && rejected > 40, "ok {ok}, rejected {rejected}");
}

#[test]
fn published_consistency_vectors() {
    let all = files("consistency");
    assert!(all.len() > 50, "vectors missing: {}", all.len());
    for path in all {
        let name = path.file_name().unwrap().to_str().unwrap();
        if UNREPRESENTABLE.contains(&name) {
            continue;
        }
        let v: Consistency = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let result = (|| {
            let r1 = Hash::from_base64(&v.root1)?;
            let r2 = Hash::from_base64(&v.root2)?;
            let proof = hashes(&v.proof)?;
            verify_consistency(v.size1, v.size2, &proof, &r1, &r2).ok()
        })();
        assert_eq!(result.is_none(), v.want_err, "{}", path.display());
    }
}

/// Some vectors write an empty proof as `null`.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}
