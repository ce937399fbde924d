//! Criterion benchmarks of writ-log: proof verification, the in-memory tree side by side
//! with the `ct-merkle` crate (after checking that both compute the same roots and proofs),
//! and durable appends through the group-commit sequencer.
//!
//! `cargo bench -p writ-log`; figures go to BENCHMARKS.md. Proof generation from a store
//! of millions of entries is measured by `writ log bench`, which builds one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code: a failed unwrap is a failed run"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::Sha256;
use writ_log::{
    CompactRange, Hash, Log, LogOptions, MemoryTree, NoteSigner, SqliteOptions, SqliteStore, consistency_proof,
    inclusion_proof, verify_consistency, verify_inclusion,
};

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{i:0>300}").into_bytes()).collect()
}

fn bench_verify(c: &mut Criterion) {
    let n = 1u64 << 20;
    let leaves: Vec<Hash> = (0..n).map(|i| Hash::leaf(&i.to_be_bytes())).collect();
    let mut tree = MemoryTree::new(leaves.clone());
    let root = tree.root_at(n).unwrap();
    let index = 777_777;
    let proof = inclusion_proof(&mut tree, index, n).unwrap();
    let old = 500_001;
    let old_root = tree.root_at(old).unwrap();
    let cproof = consistency_proof(&mut tree, old, n).unwrap();
    let mut g = c.benchmark_group("verify (tree of 2^20)");
    g.bench_function("inclusion", |b| {
        b.iter(|| verify_inclusion(black_box(index), n, &leaves[index as usize], black_box(&proof), &root).unwrap())
    });
    g.bench_function("consistency", |b| {
        b.iter(|| verify_consistency(black_box(old), n, black_box(&cproof), &old_root, &root).unwrap())
    });
    g.finish();
}

fn time<T>(iters: u32, mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    t.elapsed() / iters
}

fn bench_vs_ct_merkle(c: &mut Criterion) {
    let n = 100_000usize;
    let data = entries(n);
    // Both libraries build the same tree; check they agree before timing anything.
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for e in &data {
        ct.push(e.clone());
    }
    let leaves: Vec<Hash> = data.iter().map(|e| Hash::leaf(e)).collect();
    let mut ours = MemoryTree::new(leaves.clone());
    let ct_root = ct.root();
    assert_eq!(ct_root.as_bytes().as_slice(), ours.root_at(n as u64).unwrap().as_bytes());
    let idx = 54_321usize;
    let ct_proof = ct.prove_inclusion(idx);
    let our_proof = inclusion_proof(&mut ours, idx as u64, n as u64).unwrap();
    assert_eq!(ct_proof.as_bytes(), our_proof.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
    let additions = 37_000usize;
    let old = (n - additions) as u64;
    let ct_cproof: ConsistencyProof<Sha256> = ct.prove_consistency(additions);
    let our_cproof = consistency_proof(&mut ours, old, n as u64).unwrap();
    assert_eq!(ct_cproof.as_bytes(), our_cproof.iter().flat_map(|h| h.0).collect::<Vec<u8>>());
    let old_root = ours.root_at(old).unwrap();
    let ct_old_root = RootHash::<Sha256>::new(old_root.0.into(), old);
    let root = ours.root_at(n as u64).unwrap();

    // A printed side-by-side summary with ratios (ours / ct-merkle), then criterion's own.
    let root_ours = time(5, || {
        let mut r = CompactRange::default();
        for e in &data {
            r.push(Hash::leaf(e));
        }
        r.root()
    });
    let root_ct = time(5, || {
        let mut t = MemoryBackedTree::<Sha256, &[u8]>::new();
        for e in &data {
            t.push(e.as_slice());
        }
        t.root()
    });
    let prove_ours = time(20_000, || inclusion_proof(&mut ours, idx as u64, n as u64).unwrap());
    let prove_ct = time(20_000, || ct.prove_inclusion(idx));
    let verify_ours = time(20_000, || verify_inclusion(idx as u64, n as u64, &leaves[idx], &our_proof, &root).unwrap());
    let verify_ct = time(20_000, || ct_root.verify_inclusion(&data[idx], idx as u64, &ct_proof).unwrap());
    let cverify_ours = time(20_000, || verify_consistency(old, n as u64, &our_cproof, &old_root, &root).unwrap());
    let cverify_ct = time(20_000, || ct_root.verify_consistency(&ct_old_root, &ct_cproof).unwrap());
    println!("\nwrit-log vs ct-merkle on {n} entries of 300 bytes (same roots and proofs checked):");
    for (what, a, b) in [
        ("root of all entries", root_ours, root_ct),
        ("inclusion proof", prove_ours, prove_ct),
        ("inclusion verify", verify_ours, verify_ct),
        ("consistency verify", cverify_ours, cverify_ct),
    ] {
        println!("  {what:<20} writ {a:>12.2?}  ct-merkle {b:>12.2?}  ratio {:.2}", a.as_secs_f64() / b.as_secs_f64());
    }

    let mut g = c.benchmark_group("vs ct-merkle (100k entries)");
    g.sample_size(20);
    g.bench_function("writ/inclusion proof", |b| b.iter(|| inclusion_proof(&mut ours, idx as u64, n as u64).unwrap()));
    g.bench_function("ct-merkle/inclusion proof", |b| b.iter(|| ct.prove_inclusion(idx)));
    g.bench_function("writ/inclusion verify", |b| {
        b.iter(|| verify_inclusion(idx as u64, n as u64, &leaves[idx], &our_proof, &root).unwrap())
    });
    g.bench_function("ct-merkle/inclusion verify", |b| {
        b.iter(|| ct_root.verify_inclusion(&data[idx], idx as u64, &ct_proof).unwrap())
    });
    let ct_proof_bytes: InclusionProof<Sha256> = InclusionProof::from_bytes(ct_proof.as_bytes().to_vec());
    g.bench_function("ct-merkle/inclusion verify (from bytes)", |b| {
        b.iter(|| ct_root.verify_inclusion(&data[idx], idx as u64, &ct_proof_bytes).unwrap())
    });
    g.finish();
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db"), SqliteOptions::default()).unwrap());
    let log =
        Arc::new(Log::open(store, NoteSigner::generate("writ.local/bench").unwrap(), LogOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let entry = vec![b'x'; 300];
    let mut g = c.benchmark_group("durable append (300-byte entries)");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for concurrency in [1usize, 16, 256] {
        let per_task = if concurrency == 1 { 256 } else { 4096 / concurrency };
        g.throughput(Throughput::Elements((per_task * concurrency) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(concurrency), &concurrency, |b, &c| {
            b.iter(|| {
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..c {
                        let (log, entry) = (log.clone(), entry.clone());
                        tasks.spawn(async move {
                            for _ in 0..per_task {
                                log.append(entry.clone()).await.unwrap();
                            }
                        });
                    }
                    while tasks.join_next().await.is_some() {}
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_verify, bench_vs_ct_merkle, bench_append);
criterion_main!(benches);
