//! `writ log …`: audit the log from the shell. Machine-readable output is JSON; the
//! checkpoint is printed as the signed note itself, as `GET /v1/log/checkpoint` serves it.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::Subcommand;
use serde_json::{Value, json};
use writ_log::{Hash, LogOptions, SignedCheckpoint, verify_consistency, verify_inclusion, verify_store};

use crate::datadir::DataDir;

/// Most entries `writ log entries` prints at once.
const MAX_ENTRIES: u64 = 1000;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Create the log's signing key and store in the data directory.
    Init {
        /// The log's origin (checkpoint key name); default `writ.local/log/<random>`.
        #[arg(long)]
        origin: Option<String>,
    },
    /// Append entries, one per line of standard input (or each --entry); prints their
    /// indices and leaf hashes once durable.
    Append {
        /// An entry to append (repeatable). Without any, lines of standard input are used.
        #[arg(long)]
        entry: Vec<String>,
    },
    /// Print the newest signed checkpoint (a C2SP signed note).
    Checkpoint {
        /// Print a JSON object with the parsed fields as well as the note.
        #[arg(long)]
        json: bool,
    },
    /// Print entries `start..end` as JSON.
    Entries {
        #[arg(long)]
        start: u64,
        #[arg(long)]
        end: u64,
    },
    /// Print the inclusion proof of an entry (verified before it is printed).
    Prove {
        #[arg(long)]
        index: u64,
        /// Tree size to prove against; default the newest checkpoint's.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the consistency proof between two tree sizes (verified before it is printed).
    Consistency {
        #[arg(long)]
        from: u64,
        /// Default: the newest checkpoint's size.
        #[arg(long)]
        to: Option<u64>,
    },
    /// Recompute the whole tree from the entries and check every stored node, checkpoint
    /// and the consistency of the checkpoints. Exit status 1 if anything is wrong.
    Verify,
    /// Fill a data directory with a small demo log (for trying the commands above).
    Demo {
        #[arg(long, default_value_t = 1000)]
        entries: u64,
    },
    /// Re-evaluate every recorded decision from its recorded inputs; exit status 1 if
    /// any does not reproduce.
    Replay,
}

pub fn run(dir: &DataDir, cmd: LogCommand) -> Result<ExitCode> {
    match cmd {
        LogCommand::Init { origin } => {
            let created = dir.init_log(origin.as_deref())?;
            let v = dir.log_verifier()?;
            print_json(&json!({ "created": created, "origin": v.name(), "vkey": v.to_vkey() }))?;
        }
        LogCommand::Append { entry } => append(dir, entry)?,
        LogCommand::Checkpoint { json } => {
            let log = dir.open_log_read_only()?;
            let cp = log.latest_checkpoint().context("the log has no checkpoint yet")?;
            if json {
                print_json(&checkpoint_json(&cp))?;
            } else {
                print!("{}", cp.note());
            }
        }
        LogCommand::Entries { start, end } => {
            if end < start || end - start > MAX_ENTRIES {
                bail!("--end must be at least --start and at most {MAX_ENTRIES} more");
            }
            let log = dir.open_log_read_only()?;
            let entries = log.entries(start, end)?;
            let out: Vec<Value> = entries
                .iter()
                .zip(start..)
                .map(|(e, index)| {
                    let mut v = json!({
                        "index": index,
                        "leaf_hash": Hash::leaf(e).to_base64(),
                        "entry_base64": B64.encode(e),
                    });
                    if let (Ok(parsed), Some(obj)) = (serde_json::from_slice::<Value>(e), v.as_object_mut()) {
                        obj.insert("entry".into(), parsed);
                    }
                    v
                })
                .collect();
            print_json(&Value::Array(out))?;
        }
        LogCommand::Prove { index, size } => {
            let log = dir.open_log_read_only()?;
            let size = match (size, log.latest_checkpoint()) {
                (Some(s), _) => s,
                (None, Some(cp)) => cp.checkpoint().size,
                (None, None) => bail!("the log has no checkpoint yet; pass --size"),
            };
            let proof = log.inclusion_proof(index, size)?;
            // The leaf from the entry's bytes, the root from the tree, which every checkpoint
            // the log signed for this size must agree with: the proof is checked against what
            // the log signed.
            let entry = log.entries(index, index + 1)?;
            let leaf = Hash::leaf(entry.first().context("entry missing")?);
            let root = log.root_at(size)?;
            let signed = signed_at(&log, size, &root)?;
            verify_inclusion(index, size, &leaf, &proof, &root)?;
            let mut out = json!({
                "index": index,
                "tree_size": size,
                "leaf_hash": leaf.to_base64(),
                "root": root.to_base64(),
                "root_signed": signed.is_some(),
                "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
            });
            if let (Some(cp), Some(obj)) = (signed, out.as_object_mut()) {
                obj.insert("checkpoint".into(), json!(cp.note()));
            }
            print_json(&out)?;
        }
        LogCommand::Consistency { from, to } => {
            let log = dir.open_log_read_only()?;
            let to = match to {
                Some(t) => t,
                None => log.latest_checkpoint().context("the log has no checkpoint yet; pass --to")?.checkpoint().size,
            };
            // Between a size and itself the proof is empty and the roots are equal (RFC 9162
            // §2.1.4.2): nothing was appended since, which is an answer, not an error.
            let proof = if from == to && from > 0 { Vec::new() } else { log.consistency_proof(from, to)? };
            let (r1, r2) = (log.root_at(from)?, log.root_at(to)?);
            signed_at(&log, from, &r1)?;
            signed_at(&log, to, &r2)?;
            verify_consistency(from, to, &proof, &r1, &r2)?;
            print_json(&json!({
                "from": from,
                "to": to,
                "from_root": r1.to_base64(),
                "to_root": r2.to_base64(),
                "proof": proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
            }))?;
        }
        LogCommand::Verify => {
            let verifier = dir.log_verifier()?;
            let store = dir.store_read_only()?;
            let report = verify_store(&store, &verifier)?;
            let problems: Vec<Value> = report
                .problems
                .iter()
                .map(|p| json!({ "kind": p.kind, "index": p.index, "level": p.level, "detail": p.detail }))
                .collect();
            print_json(&json!({
                "ok": report.ok(),
                "entries": report.entries,
                "tiles": report.tiles,
                "checkpoints": report.checkpoints,
                "consistency_proofs": report.consistency_proofs,
                "root": report.root.to_base64(),
                "problems": problems,
            }))?;
            if !report.ok() {
                return Ok(ExitCode::from(1));
            }
        }
        LogCommand::Demo { entries } => demo(dir, entries)?,
        LogCommand::Replay => return crate::engcmd::replay_log(dir),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn checkpoint_json(cp: &SignedCheckpoint) -> Value {
    let c = cp.checkpoint();
    json!({ "origin": c.origin, "size": c.size, "root": c.root.to_base64(), "note": cp.note() })
}

fn print_json(v: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn append(dir: &DataDir, entries: Vec<String>) -> Result<()> {
    dir.init_log(None)?;
    let (log, _lock) =
        dir.open_log(LogOptions { checkpoint_interval: std::time::Duration::ZERO, ..LogOptions::default() })?;
    let lines: Vec<String> =
        if entries.is_empty() { std::io::stdin().lock().lines().collect::<Result<_, _>>()? } else { entries };
    let mut out = std::io::stdout().lock();
    for line in lines {
        let a = log.append_blocking(line.into_bytes())?;
        writeln!(out, "{}", json!({ "index": a.index, "leaf_hash": a.leaf_hash.to_base64() }))?;
    }
    log.checkpoint_now_blocking()?;
    Ok(())
}

fn demo(dir: &DataDir, n: u64) -> Result<()> {
    let created = dir.init_log(Some("writ.local/demo-log"))?;
    let (log, _lock) = dir.open_log(LogOptions::default())?;
    let log = std::sync::Arc::new(log);
    let start = log.size();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build()?;
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64u64 {
            let log = log.clone();
            tasks.spawn(async move {
                let mut i = start + t;
                while i < start + n {
                    let action = ["read", "write", "deploy"].get((i % 3) as usize).copied();
                    let entry = json!({
                        "kind": "decision",
                        "n": i,
                        "principal": format!("spiffe://demo.example/agent/{}", i % 7),
                        "action": action,
                        "outcome": if i % 5 == 0 { "deny" } else { "allow" },
                    });
                    log.append(serde_json::to_vec(&entry)?).await?;
                    i += 64;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    let cp = rt.block_on(log.checkpoint_now())?;
    eprintln!(
        "{} the demo log in {}: {} entries",
        if created { "created" } else { "extended" },
        dir.root().display(),
        cp.checkpoint().size
    );
    print_json(&checkpoint_json(&cp))
}

/// The newest checkpoint the store holds for tree size `size`, once every one it holds for
/// that size verified against the log key and named `root` (the root of the stored tree):
/// a signed checkpoint that says otherwise means the log was altered, and is an error
/// (found in review: only the latest checkpoint was compared, so an older signed one that
/// contradicted the tree went unremarked).
fn signed_at(log: &writ_log::Log, size: u64, root: &Hash) -> Result<Option<SignedCheckpoint>> {
    let mut newest = None;
    for (stored, note) in log.store().checkpoints()? {
        if stored != size {
            continue;
        }
        let (signed, _) = SignedCheckpoint::open(note.as_bytes(), log.verifier(), &[]).map_err(|e| {
            anyhow::anyhow!("corrupt store: the checkpoint stored for size {size} does not verify: {e}")
        })?;
        if signed.checkpoint().size != size || signed.checkpoint().root != *root {
            bail!(
                "corrupt store: a checkpoint the log signed for size {size} names another tree than the store holds \
                 (root {} signed, {} stored)",
                signed.checkpoint().root.to_base64(),
                root.to_base64()
            );
        }
        newest = Some(signed);
    }
    Ok(newest)
}
