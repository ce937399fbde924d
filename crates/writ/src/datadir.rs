//! The data directory: where `writ` keeps its keys and stores.
//!
//! ```text
//! <data-dir>/
//!   keys/log.key      the log's checkpoint signing key (signed-note private key, mode 0600)
//!   log/log.db        the log store (SQLite, WAL)
//!   log/log.vkey      the log's verifier key (signed-note vkey), safe to publish
//!   log/writer.lock   held by the one process that appends
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use writ_log::{Log, LogOptions, NoteSigner, NoteVerifier, SqliteOptions, SqliteStore};

/// Paths inside one data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir { root: root.to_owned() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn log_key(&self) -> PathBuf {
        self.root.join("keys").join("log.key")
    }

    fn log_vkey(&self) -> PathBuf {
        self.root.join("log").join("log.vkey")
    }

    fn log_db(&self) -> PathBuf {
        self.root.join("log").join("log.db")
    }

    /// Creates the log's key and directories if they do not exist yet. Returns true if it
    /// created them.
    pub fn init_log(&self, origin: Option<&str>) -> Result<bool> {
        if self.log_key().exists() {
            return Ok(false);
        }
        fs::create_dir_all(self.root.join("keys")).with_context(|| format!("creating {}", self.root.display()))?;
        fs::set_permissions(self.root.join("keys"), fs::Permissions::from_mode(0o700))?;
        fs::create_dir_all(self.root.join("log"))?;
        let origin = match origin {
            Some(o) => o.to_owned(),
            None => format!("writ.local/log/{:08x}", fastrand::u32(..)),
        };
        let signer = NoteSigner::generate(&origin)?;
        write_secret(&self.log_key(), signer.to_private_key().as_bytes())?;
        fs::write(self.log_vkey(), format!("{}\n", signer.verifier().to_vkey()))?;
        Ok(true)
    }

    pub fn log_signer(&self) -> Result<NoteSigner> {
        let path = self.log_key();
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the log key {} (run `writ log init`?)", path.display()))?;
        let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!("{} is readable by others (mode {mode:o}); it must be 0600", path.display());
        }
        Ok(NoteSigner::from_private_key(text.trim())?)
    }

    pub fn log_verifier(&self) -> Result<NoteVerifier> {
        let path = self.log_vkey();
        let text = fs::read_to_string(&path).with_context(|| format!("reading {} (no log here?)", path.display()))?;
        Ok(NoteVerifier::from_vkey(text.trim())?)
    }

    /// Opens the log for appending, taking the writer lock so that no second process
    /// appends to the same store.
    pub fn open_log(&self, options: LogOptions) -> Result<(Log, File)> {
        let lock = self.lock()?;
        let signer = self.log_signer()?;
        let store = SqliteStore::open(&self.log_db(), SqliteOptions::default())?;
        let log = Log::open(Arc::new(store), signer, options)?;
        Ok((log, lock))
    }

    /// Opens the log for auditing only; works beside a running writer.
    pub fn open_log_read_only(&self) -> Result<Log> {
        let verifier = self.log_verifier()?;
        let db = self.log_db();
        if !db.exists() {
            bail!("no log store at {}", db.display());
        }
        let store = SqliteStore::open(&db, SqliteOptions { read_only: true, ..SqliteOptions::default() })?;
        Ok(Log::open_read_only(Arc::new(store), verifier)?)
    }

    /// The store alone, read-only, for `writ log verify`.
    pub fn store_read_only(&self) -> Result<SqliteStore> {
        let db = self.log_db();
        if !db.exists() {
            bail!("no log store at {}", db.display());
        }
        Ok(SqliteStore::open(&db, SqliteOptions { read_only: true, ..SqliteOptions::default() })?)
    }

    fn lock(&self) -> Result<File> {
        let path = self.root.join("log").join("writer.lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(_) => bail!("another writ process is writing to {} (lock {})", self.root.display(), path.display()),
        }
    }
}

/// Writes a file readable by its owner only, refusing to overwrite.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}
