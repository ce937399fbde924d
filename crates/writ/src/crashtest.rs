//! The crash test of the log's durability promise: an append is acknowledged only once it
//! is durable.
//!
//! `writ-dev log crashtest` starts a child process (`writ-dev log crash-child`) that appends from
//! many concurrent tasks and prints each acknowledgement (`ack <index> <leaf hex>`) and each
//! published checkpoint (`cp <size> <root hex>`) as it happens. The driver SIGKILLs the
//! child at a random moment, reopens the store as a restarted server would, and checks
//! that every acknowledged append is present with its leaf hash, that the whole tree
//! verifies, and that the new tree is consistent with every checkpoint published before
//! any of the crashes. Then it goes again on the same store.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use writ_log::{Hash, LogOptions, verify_consistency, verify_store};

use crate::datadir::DataDir;

#[derive(clap::Args)]
pub struct Args {
    /// Kill-and-reopen rounds.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// Concurrent appenders in the child.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Shortest time the child runs before it is killed, in milliseconds.
    #[arg(long, default_value_t = 30)]
    min_ms: u64,
    /// Longest time the child runs before it is killed, in milliseconds.
    #[arg(long, default_value_t = 600)]
    max_ms: u64,
    /// Keep the store in this directory instead of a temporary one.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

pub fn child(dir: &DataDir, concurrency: usize) -> Result<()> {
    let options = LogOptions { checkpoint_interval: Duration::from_millis(10), ..LogOptions::default() };
    let (log, _lock) = dir.open_log(options)?;
    let log = Arc::new(log);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build()?;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            let log = log.clone();
            tasks.spawn(async move {
                let pad = "p".repeat(240);
                for n in 0u64.. {
                    let entry = format!("{{\"task\":{t},\"n\":{n},\"pad\":\"{pad}\"}}").into_bytes();
                    let a = log.append(entry).await?;
                    // stdout is line-buffered: once this returns, the line is in the pipe.
                    println!("ack {} {}", a.index, a.leaf_hash.to_hex());
                }
                anyhow::Ok(())
            });
        }
        let reporter = log.clone();
        tasks.spawn(async move {
            let mut last = u64::MAX;
            loop {
                if let Some(cp) = reporter.latest_checkpoint()
                    && cp.checkpoint().size != last
                {
                    last = cp.checkpoint().size;
                    println!("cp {} {}", last, cp.checkpoint().root.to_hex());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })
}

struct Seen {
    acks: Vec<(u64, Hash)>,
    checkpoints: Vec<(u64, Hash)>,
}

fn parse_line(line: &str, seen: &mut Seen) -> Result<()> {
    let mut parts = line.split(' ');
    let (Some(kind), Some(n), Some(h), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        bail!("unexpected line from the child: {line:?}");
    };
    let n: u64 = n.parse()?;
    let h = Hash::from_hex(h).context("bad hash from the child")?;
    match kind {
        "ack" => seen.acks.push((n, h)),
        "cp" => seen.checkpoints.push((n, h)),
        _ => bail!("unexpected line from the child: {line:?}"),
    }
    Ok(())
}

pub fn run(_dir: &DataDir, args: Args) -> Result<ExitCode> {
    if args.min_ms > args.max_ms {
        bail!("--min-ms must not exceed --max-ms");
    }
    let (root, temporary) = match &args.keep {
        Some(p) => (p.clone(), false),
        None => {
            let p =
                std::env::temp_dir().join(format!("writ-crashtest-{}-{:08x}", std::process::id(), fastrand::u32(..)));
            (p, true)
        }
    };
    let dir = DataDir::new(&root);
    dir.init_log(Some("writ.local/crashtest"))?;
    let exe = std::env::current_exe()?;
    let mut seen = Seen { acks: Vec::new(), checkpoints: Vec::new() };
    let started = Instant::now();
    for round in 1..=args.rounds {
        let mut child = Command::new(&exe)
            .args(["log", "--data-dir"])
            .arg(&root)
            .args(["crash-child", "--concurrency", &args.concurrency.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the child")?;
        let stdout = child.stdout.take().context("no child stdout")?;
        let reader = std::thread::spawn(move || -> Result<Seen> {
            let mut s = Seen { acks: Vec::new(), checkpoints: Vec::new() };
            for line in BufReader::new(stdout).lines() {
                parse_line(&line?, &mut s)?;
            }
            Ok(s)
        });
        let wait = fastrand::u64(args.min_ms..=args.max_ms);
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().context("SIGKILL")?;
        let status = child.wait()?;
        let got = reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
        if status.success() {
            bail!("round {round}: the child exited on its own before it was killed");
        }
        let acked_now = got.acks.len();
        seen.acks.extend(got.acks);
        seen.checkpoints.extend(got.checkpoints);
        let size = check(&dir, &seen).with_context(|| format!("round {round} (killed after {wait} ms)"))?;
        println!(
            "round {round}: killed after {wait} ms; {acked_now} acknowledged this round, {} in all; \
             log size {size}; {} checkpoints checked: ok",
            seen.acks.len(),
            seen.checkpoints.len()
        );
        std::io::stdout().flush()?;
    }
    println!(
        "crashtest passed: {} rounds, {} acknowledged appends all present, {} checkpoints consistent, {:.1}s",
        args.rounds,
        seen.acks.len(),
        seen.checkpoints.len(),
        started.elapsed().as_secs_f64()
    );
    if temporary {
        std::fs::remove_dir_all(&root).ok();
    }
    Ok(ExitCode::SUCCESS)
}

/// Reopens the store as a restarted writer would and checks everything seen so far.
fn check(dir: &DataDir, seen: &Seen) -> Result<u64> {
    let (log, _lock) = dir.open_log(LogOptions::default()).context("reopening after the crash")?;
    let size = log.size();
    let root = log.root();
    for (index, leaf) in &seen.acks {
        if *index >= size {
            bail!("acknowledged entry {index} is missing: the log has {size} entries");
        }
        if log.leaf_hash(*index)? != *leaf {
            bail!("acknowledged entry {index} has a different leaf hash after the crash");
        }
    }
    for (cp_size, cp_root) in &seen.checkpoints {
        if *cp_size > size {
            bail!("checkpoint of size {cp_size} was published but the log now has {size} entries");
        }
        if log.root_at(*cp_size)? != *cp_root {
            bail!("the tree of size {cp_size} no longer has the root its checkpoint signed");
        }
        if *cp_size > 0 && *cp_size < size {
            let proof = log.consistency_proof(*cp_size, size)?;
            verify_consistency(*cp_size, size, &proof, cp_root, &root)?;
        }
    }
    let report = verify_store(log.store().as_ref(), log.verifier())?;
    if !report.ok() {
        bail!("the store does not verify: {:?}", report.problems);
    }
    Ok(size)
}
