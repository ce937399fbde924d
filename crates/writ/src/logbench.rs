//! `writ log bench`: durable append throughput under group commit, proof latency at size,
//! and resident memory while the log grows. Prints figures; asserts nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use writ_log::{Log, LogOptions, NoteSigner, SqliteOptions, SqliteStore, verify_consistency, verify_inclusion};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent appenders for the throughput runs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    concurrency: Vec<usize>,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Bytes per entry.
    #[arg(long, default_value_t = 300)]
    entry_size: usize,
    /// Grow the log to this many entries before measuring proofs.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Proofs generated per measurement.
    #[arg(long, default_value_t = 20_000)]
    proofs: usize,
    /// Put the store here (kept) instead of in a temporary directory (removed).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Memory of this process in MiB, from /proc: (anonymous resident, file-backed resident
/// (the store's memory map, reclaimable page cache), peak resident).
fn memory_mib() -> (f64, f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("RssAnon:"), field("RssFile:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Appends from `concurrency` tasks until `stop` says so or `limit` entries were added.
fn append_load(
    rt: &tokio::runtime::Runtime,
    log: &Arc<Log>,
    concurrency: usize,
    size: usize,
    until: Until,
) -> Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            let (log, done, stop) = (log.clone(), done.clone(), stop.clone());
            let limit = match until {
                Until::Count(n) => Some(n),
                Until::Time(_) => None,
            };
            tasks.spawn(async move {
                let mut n = 0u64;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut entry = vec![b'x'; size];
                    let tag = format!("{t}:{n}:");
                    if let Some(head) = entry.get_mut(..tag.len()) {
                        head.copy_from_slice(tag.as_bytes());
                    }
                    log.append(entry).await?;
                    n += 1;
                    let total = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if limit.is_some_and(|l| total >= l) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            });
        }
        if let Until::Time(d) = until {
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    Ok(done.load(Ordering::Relaxed))
}

/// Times `n` calls of `make`, prints p50/p99/max, and keeps the first `keep` results.
fn time_proofs<T>(label: &str, n: usize, keep: usize, mut make: impl FnMut() -> Result<T>) -> Result<Vec<T>> {
    let mut times = Vec::with_capacity(n);
    let mut kept = Vec::with_capacity(keep);
    for _ in 0..n {
        let t = Instant::now();
        let out = make()?;
        times.push(t.elapsed());
        if kept.len() < keep {
            kept.push(out);
        }
    }
    times.sort();
    println!(
        "{label} p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(percentile(&times, 1.0))
    );
    Ok(kept)
}

#[derive(Clone, Copy)]
enum Until {
    Time(Duration),
    Count(u64),
}

pub fn run(args: Args) -> Result<()> {
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("writ-logbench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(&dir.join("bench.db"), SqliteOptions::default())?);
    let signer = NoteSigner::generate("writ.local/bench")?;
    let log = Arc::new(Log::open(store, signer, LogOptions::default())?);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build()?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("writ log bench: {}-byte entries, SQLite WAL synchronous=FULL, {cores} cores", args.entry_size);

    println!("\n== durable appends (group commit), {} s each", args.seconds);
    for &c in &args.concurrency {
        let before = log.stats();
        let t = Instant::now();
        let n = append_load(&rt, &log, c, args.entry_size, Until::Time(Duration::from_secs(args.seconds)))?;
        let secs = t.elapsed().as_secs_f64();
        let after = log.stats();
        let batches = after.batches - before.batches;
        println!(
            "appenders {c:>4}: {:>9.0} entries/s  ({n} entries, {batches} commits, mean {:.1} entries/commit)",
            n as f64 / secs,
            n as f64 / batches.max(1) as f64
        );
    }

    let concurrency = args.concurrency.iter().copied().max().unwrap_or(256);
    if log.size() < args.entries {
        println!("\n== growing the log to {} entries with {concurrency} appenders", args.entries);
        let step = (args.entries / 10).max(1);
        let t = Instant::now();
        while log.size() < args.entries {
            let want = step.min(args.entries - log.size());
            let t0 = Instant::now();
            let n = append_load(&rt, &log, concurrency, args.entry_size, Until::Count(want))?;
            let (anon, file, peak) = memory_mib();
            println!(
                "size {:>10}: {:>9.0} entries/s, RSS anon {anon:.0} MiB + mapped store {file:.0} MiB (peak {peak:.0} MiB)",
                log.size(),
                n as f64 / t0.elapsed().as_secs_f64()
            );
        }
        println!("grew in {:.1} s", t.elapsed().as_secs_f64());
    }

    let size = log.size();
    if size < 2 {
        bail!("the log is too small to measure proofs");
    }
    println!("\n== proofs at size {size} ({} each, warm store)", args.proofs);
    let root = log.root();
    let mut rng = fastrand::Rng::with_seed(7);
    // Warm-up: the same number of proofs, not timed.
    for _ in 0..args.proofs.min(5000) {
        log.inclusion_proof(rng.u64(..size), size)?;
    }
    let samples = time_proofs("inclusion proof:  ", args.proofs, 1000, || {
        let index = rng.u64(..size);
        Ok((index, log.inclusion_proof(index, size)?))
    })?;
    let csamples = time_proofs("consistency proof:", args.proofs, 200, || {
        let old = rng.u64(1..size);
        Ok((old, log.consistency_proof(old, size)?))
    })?;

    // Verification, averaged over the sampled proofs (leaf hashes fetched beforehand).
    let leaves: Vec<_> = samples.iter().map(|(i, _)| log.leaf_hash(*i)).collect::<Result<_, _>>()?;
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        for ((index, proof), leaf) in samples.iter().zip(&leaves) {
            verify_inclusion(*index, size, leaf, proof, &root)?;
        }
    }
    let per = t.elapsed() / (rounds * samples.len()) as u32;
    println!("inclusion verify:  {:.2} µs per proof", us(per));
    let old_roots: Vec<_> = csamples.iter().map(|(o, _)| log.root_at(*o)).collect::<Result<_, _>>()?;
    let t = Instant::now();
    for _ in 0..rounds {
        for ((old, proof), old_root) in csamples.iter().zip(&old_roots) {
            verify_consistency(*old, size, proof, old_root, &root)?;
        }
    }
    let per = t.elapsed() / (rounds * csamples.len()) as u32;
    println!("consistency verify: {:.2} µs per proof", us(per));
    let (anon, file, peak) = memory_mib();
    println!("\nmemory: RSS anon {anon:.0} MiB + mapped store {file:.0} MiB, peak {peak:.0} MiB");

    drop(log);
    if temporary {
        std::fs::remove_dir_all(&dir).ok();
    } else {
        println!("store kept in {}", dir.display());
    }
    Ok(())
}
