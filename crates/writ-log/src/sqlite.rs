//! The embedded default store: one SQLite database in WAL mode with `synchronous=FULL`, so
//! a committed batch survives power loss, and readers never block the writer.
//!
//! Tables: `entries(idx, data)`, `tiles(id, hashes)` keyed by [`TileId::key`],
//! `checkpoints(size, note)` and `meta(key, value)`. Readers use a small pool of
//! connections; the sequencer owns the write connection.
//!
//! WAL checkpoints (copying committed pages into the database file, then syncing it) are
//! split in two so that the WAL stays bounded without stalling appends behind a long copy,
//! which SQLite's automatic checkpoint in the commit would do (copying 16 MB and syncing
//! the file stalled every append behind it for tens to hundreds of milliseconds):
//!
//! - a thread of its own copies committed pages concurrently (`PASSIVE`, every 20 ms);
//! - once the WAL holds 4,096 pages (16 MB), the sequencer itself, right after a commit,
//!   finishes with a `RESTART`: the few pages written since the last passive copy, one
//!   sync, and the next commit starts the WAL over. The copies are frequent so that this
//!   leaves little to copy: every 100 ms left up to 5 MB behind at 18k decisions/s, and the
//!   restart's stall put p99 over HTTP at 9.3 – 11.9 ms; every 20 ms, 6.4 – 8.9 ms
//!   (BENCHMARKS.md, session 12). A copy asked for only just before the restart (at 3,584
//!   pages, on the 100 ms timer otherwise) did not do as well: 10.1 – 12.3 ms.
//!
//! The restart belongs to the sequencer because it is the only writer: a `RESTART` must
//! hold the write lock, which a sequencer committing back to back almost never leaves free
//! for another connection's busy handler to catch (seen in CI: a WAL of 69 MB, every restart
//! from the checkpointer's thread timing out, and the sequencer's own attempts refused
//! because that thread held SQLite's checkpoint lock meanwhile). Both steps take one
//! in-process lock around their checkpoint, so neither meets the other's checkpoint lock
//! and fails with `SQLITE_BUSY`. Durability does not depend on any of this: a commit is
//! durable once its WAL frames are synced.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use crate::Error;
use crate::store::{Batch, EntryVisitor, Store};
use crate::tiles::{TILE_BYTES, TileId};

fn db_err(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, msg) => {
            let detail = msg.unwrap_or_else(|| f.to_string());
            match f.code {
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase => Error::Corrupt(detail),
                _ => Error::Storage(detail),
            }
        }
        other => Error::Storage(other.to_string()),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
";

/// Options of the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Bytes of the database file to memory-map for readers (0 disables).
    pub mmap_size: u64,
    /// Most pages the database may grow to (None: unbounded). Reaching it fails appends
    /// with a storage error, as a full disk would; used to test that path.
    pub max_page_count: Option<u64>,
    /// Open the database read-only (for audit commands).
    pub read_only: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { mmap_size: 1 << 30, max_page_count: None, read_only: false }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    options: SqliteOptions,
    writer: Mutex<Option<Connection>>,
    readers: Mutex<Vec<Connection>>,
    checkpointer: Option<Checkpointer>,
}

/// WAL pages (4 KiB each) past which the sequencer restarts the WAL after its commit (what
/// SQLite's automatic checkpoint used).
const WAL_RESTART_PAGES: i32 = 4096;

thread_local! {
    /// Pages in the WAL after the last commit on this thread's writer connection (set by
    /// SQLite's WAL hook; the writer is only used by the thread that commits).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &rusqlite::hooks::Wal, pages: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// How long a connection waits for a lock another holds before it fails with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the sequencer's WAL restart waits for readers of older snapshots.
const RESTART_PATIENCE: Duration = Duration::from_millis(100);

/// How often the checkpointer copies committed pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);

/// The background checkpointer: its thread, the flag that stops it, and the lock that
/// orders its checkpoints with the sequencer's restarts.
struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    // INVARIANT: every checkpoint of this store's connections runs while holding this lock,
    // so no checkpoint meets SQLite's checkpoint lock held by another of ours.
    turn: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(conn: Connection) -> Result<Checkpointer, Error> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let turn = Arc::new(Mutex::new(()));
        let (flag, mine) = (stop.clone(), turn.clone());
        let thread = std::thread::Builder::new()
            .name("writ-log-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                loop {
                    let Ok(stopped) = lock.lock() else { return };
                    let Ok((stopped, _)) = wake.wait_timeout_while(stopped, CHECKPOINT_EVERY, |s| !*s) else {
                        return;
                    };
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    let Ok(_turn) = mine.lock() else { return };
                    // A failed checkpoint is retried at the next tick; the WAL only grows
                    // meanwhile, nothing committed is at risk.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retried");
                    }
                }
            })
            .map_err(|e| Error::Storage(format!("cannot start the checkpointer thread: {e}")))?;
        Ok(Checkpointer { stop, turn, thread: Some(thread) })
    }

    /// Restarts the WAL from the writer's connection, between two of its transactions: it
    /// waits for a passive copy in progress, then for readers of older snapshots, at most
    /// [`RESTART_PATIENCE`] (appends wait meanwhile); if they outlast it, the next commit
    /// tries again.
    fn restart(&self, writer: &Connection) {
        let Ok(_turn) = self.turn.lock() else { return };
        if let Err(e) = writer.busy_timeout(RESTART_PATIENCE) {
            tracing::warn!(error = %e, "cannot bound the WAL restart's wait; not restarted");
            return;
        }
        match writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
            Ok(0) => {}
            Ok(_) => tracing::debug!("WAL restart waited out by a reader; retried after the next commit"),
            Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed; retried after the next commit"),
        }
        if let Err(e) = writer.busy_timeout(BUSY_TIMEOUT) {
            tracing::warn!(error = %e, "cannot restore the writer's busy timeout");
        }
    }

    fn stop(&mut self) {
        if let Ok(mut stopped) = self.stop.0.lock() {
            *stopped = true;
        }
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, unless read-only) the database at `path`.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self, Error> {
        let mut store = SqliteStore {
            path: path.to_owned(),
            options,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            checkpointer: None,
        };
        if !store.options.read_only {
            let conn = store.connect(true)?;
            conn.execute_batch(SCHEMA).map_err(db_err)?;
            // Checkpoints move to their own thread; if it cannot start, SQLite's automatic
            // checkpoint (set in `connect`) stays on.
            if let Ok(checkpointer) = store.connect(true).and_then(Checkpointer::start) {
                conn.execute_batch("PRAGMA wal_autocheckpoint=0;").map_err(db_err)?;
                // After the pragma, which installs a hook of its own.
                conn.wal_hook(Some(note_wal_pages));
                store.checkpointer = Some(checkpointer);
            }
            *store.writer.lock().map_err(|_| poisoned())? = Some(conn);
        }
        // Fail now, not at the first read, if the file is not a readable database.
        let reader = store.connect(false)?;
        reader.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(db_err)?;
        store.give_back(reader);
        Ok(store)
    }

    fn connect(&self, write: bool) -> Result<Connection, Error> {
        let flags = if write && !self.options.read_only {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(db_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        if write {
            // WAL: readers see the last committed batch and never block the sequencer.
            // FULL: the WAL is fsynced at every commit, so a returned batch is durable.
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(db_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Storage(format!("could not enable WAL mode (got {mode})")));
            }
            conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=4096;").map_err(db_err)?;
            if let Some(pages) = self.options.max_page_count {
                conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(())).map_err(db_err)?;
            }
        } else {
            conn.execute_batch("PRAGMA query_only=1;").map_err(db_err)?;
        }
        if self.options.mmap_size > 0 {
            conn.query_row(&format!("PRAGMA mmap_size={}", self.options.mmap_size), [], |_| Ok(())).map_err(db_err)?;
        }
        Ok(conn)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let pooled = self.readers.lock().map_err(|_| poisoned())?.pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.connect(false)?,
        };
        let out = f(&conn);
        self.give_back(conn);
        out
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 16
        {
            pool.push(conn);
        }
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self.writer.lock().map_err(|_| poisoned())?;
        let conn = guard.as_mut().ok_or_else(|| Error::Storage("store is open read-only".into()))?;
        f(conn)
    }
}

impl Drop for SqliteStore {
    /// Readers close first, so that the writer is the last connection and SQLite folds the
    /// WAL back into the database file on close.
    fn drop(&mut self) {
        if let Some(mut c) = self.checkpointer.take() {
            c.stop();
        }
        if let Ok(mut pool) = self.readers.lock() {
            pool.clear();
        }
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
    }
}

/// A stored note as text. A note altered into invalid UTF-8 is read lossily, so that its
/// signature check fails and the audit reports it at its size, rather than the read failing.
fn note_text(v: rusqlite::types::ValueRef<'_>) -> String {
    String::from_utf8_lossy(v.as_bytes().unwrap_or_default()).into_owned()
}

fn poisoned() -> Error {
    Error::Storage("store lock poisoned".into())
}

fn to_i64(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::OutOfRange(format!("{v} does not fit the store")))
}

fn to_u64(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt(format!("negative value {v} in the store")))
}

impl Store for SqliteStore {
    fn size(&self) -> Result<u64, Error> {
        self.with_reader(|c| {
            let max: Option<i64> = c.query_row("SELECT max(idx) FROM entries", [], |r| r.get(0)).map_err(db_err)?;
            match max {
                None => Ok(0),
                Some(m) => Ok(to_u64(m)? + 1),
            }
        })
    }

    fn write_batch(&self, batch: &Batch<'_>) -> Result<(), Error> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err)?;
            {
                let max: Option<i64> = tx
                    .prepare_cached("SELECT max(idx) FROM entries")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(db_err)?;
                let size = match max {
                    None => 0,
                    Some(m) => to_u64(m)? + 1,
                };
                if size != batch.first_index {
                    return Err(Error::Storage(format!(
                        "batch starts at {} but the store holds {size} entries (another writer?)",
                        batch.first_index
                    )));
                }
                if batch.leaves.len() != batch.entries.len() {
                    return Err(Error::Storage("batch has a leaf hash count different from its entry count".into()));
                }
                let mut put =
                    tx.prepare_cached("INSERT INTO entries (idx, leaf, data) VALUES (?1, ?2, ?3)").map_err(db_err)?;
                for (i, (data, leaf)) in batch.entries.iter().zip(batch.leaves).enumerate() {
                    put.execute(params![to_i64(batch.first_index + i as u64)?, &leaf.0[..], data]).map_err(db_err)?;
                }
                let mut put = tx.prepare_cached("INSERT INTO tiles (id, hashes) VALUES (?1, ?2)").map_err(db_err)?;
                for (id, bytes) in batch.tiles {
                    put.execute(params![id.key(), bytes]).map_err(db_err)?;
                }
                if let Some((size, note)) = batch.checkpoint {
                    // Never replace: a second, different checkpoint for a size is an error.
                    let size = to_i64(size)?;
                    tx.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![size, note]))
                        .map_err(db_err)?;
                }
            }
            tx.commit().map_err(db_err)?;
            // Past the threshold, restart the WAL before the next batch, so that it stays
            // bounded. The batch above is durable whatever this does.
            if let Some(checkpointer) = &self.checkpointer
                && WAL_PAGES.with(Cell::get) >= WAL_RESTART_PAGES
            {
                checkpointer.restart(conn);
                WAL_PAGES.with(|p| p.set(0));
            }
            Ok(())
        })
    }

    fn tile(&self, id: TileId) -> Result<Option<Vec<u8>>, Error> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached("SELECT hashes FROM tiles WHERE id = ?1").map_err(db_err)?;
            let bytes: Option<Vec<u8>> = stmt.query_row([id.key()], |r| r.get(0)).optional().map_err(db_err)?;
            match bytes {
                Some(b) if b.len() != TILE_BYTES => Err(Error::Corrupt(format!(
                    "tile {}/{} is {} bytes, expected {TILE_BYTES}",
                    id.level,
                    id.index,
                    b.len()
                ))),
                other => Ok(other),
            }
        })
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
        self.with_reader(|c| {
            let mut stmt = c
                .prepare_cached("SELECT idx, data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")
                .map_err(db_err)?;
            let mut rows = stmt.query(params![to_i64(start)?, to_i64(end)?]).map_err(db_err)?;
            let mut out = Vec::new();
            let mut expect = start;
            while let Some(row) = rows.next().map_err(db_err)? {
                let idx = to_u64(row.get(0).map_err(db_err)?)?;
                if idx != expect {
                    return Err(Error::Corrupt(format!("entry {expect} is missing")));
                }
                out.push(row.get(1).map_err(db_err)?);
                expect += 1;
            }
            if expect != end {
                return Err(Error::OutOfRange(format!("entries {expect}..{end} are not in the log")));
            }
            Ok(out)
        })
    }

    fn scan_entries(&self, f: &mut EntryVisitor<'_>) -> Result<(), Error> {
        self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT idx, data, leaf FROM entries ORDER BY idx").map_err(db_err)?;
            let mut rows = stmt.query([]).map_err(db_err)?;
            while let Some(row) = rows.next().map_err(db_err)? {
                let idx = to_u64(row.get(0).map_err(db_err)?)?;
                let data = row.get_ref(1).map_err(db_err)?.as_blob().map_err(|e| Error::Corrupt(e.to_string()))?;
                let leaf = row.get_ref(2).map_err(db_err)?.as_blob().map_err(|e| Error::Corrupt(e.to_string()))?;
                f(idx, data, leaf)?;
            }
            Ok(())
        })
    }

    fn tile_ids(&self) -> Result<Vec<TileId>, Error> {
        self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT id FROM tiles ORDER BY id").map_err(db_err)?;
            let keys = stmt.query_map([], |r| r.get::<_, i64>(0)).map_err(db_err)?;
            let mut out = Vec::new();
            for key in keys {
                let key = to_u64(key.map_err(db_err)?)?;
                out.push(TileId { level: (key >> 56) as u32, index: key & ((1 << 56) - 1) });
            }
            Ok(out)
        })
    }

    fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), Error> {
        self.with_writer(|c| {
            c.execute("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)", params![to_i64(size)?, note])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        self.with_reader(|c| {
            let row: Option<(i64, String)> = c
                .query_row("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, note_text(r.get_ref(1)?)))
                })
                .optional()
                .map_err(db_err)?;
            row.map(|(s, n)| Ok((to_u64(s)?, n))).transpose()
        })
    }

    fn checkpoints(&self) -> Result<Vec<(u64, String)>, Error> {
        self.with_reader(|c| {
            let mut stmt = c.prepare("SELECT size, note FROM checkpoints ORDER BY size").map_err(db_err)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, note_text(r.get_ref(1)?)))).map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (s, n) = row.map_err(db_err)?;
                out.push((to_u64(s)?, n));
            }
            Ok(out)
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, Error> {
        self.with_reader(|c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(db_err)
        })
    }

    fn meta_prefixed(&self, prefix: &str) -> Result<Vec<(String, String)>, Error> {
        self.with_reader(|c| {
            // substr compares bytes exactly (no LIKE wildcards or case folding in the prefix).
            let mut stmt = c
                .prepare("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")
                .map_err(db_err)?;
            let rows =
                stmt.query_map([prefix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), Error> {
        self.with_writer(|c| {
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    /// Two writes, each synced: a row of `meta` (the database takes a commit: not read-only,
    /// not locked by another writer, not corrupt), then a block in a file beside it,
    /// removed again. The second is needed because the first may land in WAL space that
    /// is already allocated, which neither a full disk nor a file made immutable refuses,
    /// while the next append that grows the WAL fails.
    fn probe(&self) -> Result<(), Error> {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        self.set_meta("write_probe", &at.to_string())?;
        let mut name = self.path.clone().into_os_string();
        name.push("-probe");
        let path = PathBuf::from(name);
        let written = std::fs::File::create(&path).and_then(|mut f| {
            std::io::Write::write_all(&mut f, &[0u8; 4096])?;
            f.sync_all()
        });
        let removed = std::fs::remove_file(&path);
        written.and(removed).map_err(|e| Error::Storage(format!("the store's file system refuses writes: {e}")))
    }
}
