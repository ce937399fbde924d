//! The data directory: where `writ` keeps its keys and stores.
//!
//! ```text
//! <data-dir>/
//!   keys/log.key      the log's checkpoint signing key (signed-note private key, mode 0600)
//!   log/log.db        the log store (SQLite, WAL)
//!   log/log.vkey      the log's verifier key (signed-note vkey), safe to publish
//!   log/writer.lock   held by the one process that appends
//!   keys/writ.keys    writ signing seeds, hex, one per line, oldest first, the last signs (0600);
//!                     changed only by the engine's rotation, which records it in the log
//!   keys/feed.key     the revocation feed's signing seed, hex (0600); its JWKS is
//!                     `trust/feed-keys.json` and `/.well-known/writ-feed-keys.json`
//!   keys/policy.key   the policy-signing key (signed-note private key, 0600)
//!   keys/dev-issuer.json  the development identity issuer's secret (0600): workloads,
//!                         orchestrators, machines, runtimes, attestations
//!   keys/operator-issuer.json  the development operator issuer's secret (0600): operators only
//!   trust/bundle.json     the trust bundle: issuers per SPIFFE trust domain (JWKS)
//!   trust/policy.vkeys    verifier keys trusted to sign policy bundles, one per line
//!   trust/jwks.json       the writ signing keys as a JWKS (public; what enforcement points trust)
//!   trust/feed-keys.json  the revocation feed key as a JWKS (public)
//!   enforce/used.txt      writ ids already used at this enforcement point (`writ verify`),
//!                         locked by each run from reading it to recording its writ
//!   enforce/served-used.json  writs verified by `writ serve` (`/v1/verify`) that could still
//!                         verify, kept by a clean stop and taken back by the next start
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use writ_engine::UsedWrits;
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
            Err(_) => bail!(
                "another writ process is writing to {} (lock {}); if it is `writ serve`, act through its API: add \
                 --url http://127.0.0.1:7070 (its address) or set WRIT_URL",
                self.root.display(),
                path.display()
            ),
        }
    }
}

impl DataDir {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates every key and trust file that is missing (`writ keys generate`). Returns the
    /// names of the files it created.
    pub fn init_all(&self, trust_domain: &str) -> Result<Vec<String>> {
        // Before anything is written: a bad name left keys behind (named after it).
        check_trust_domain(trust_domain)?;
        let mut created = Vec::new();
        if self.init_log(None)? {
            created.push("keys/log.key".to_owned());
        }
        fs::create_dir_all(self.path("trust"))?;
        if !self.path("keys/writ.keys").exists() {
            let seed = writ_engine::WritSigner::generate_seed()?;
            write_secret(&self.path("keys/writ.keys"), hex::encode(seed).as_bytes())?;
            created.push("keys/writ.keys".to_owned());
        }
        if !self.path("keys/feed.key").exists() {
            let seed = writ_engine::WritSigner::generate_seed()?;
            write_secret(&self.path("keys/feed.key"), hex::encode(seed).as_bytes())?;
            created.push("keys/feed.key".to_owned());
        }
        if !self.path("keys/policy.key").exists() {
            let key = NoteSigner::generate(&format!("policy.{trust_domain}"))?;
            write_secret(&self.path("keys/policy.key"), key.to_private_key().as_bytes())?;
            fs::write(self.path("trust/policy.vkeys"), format!("{}\n", key.verifier().to_vkey()))?;
            created.push("keys/policy.key".to_owned());
        }
        use writ_identity::Role;
        // Two development issuers: one for workloads and the rest of the delegation chain,
        // one for operators alone, so that no workload credential can act as an operator.
        for (file, url, roles) in [
            (
                "keys/dev-issuer.json",
                format!("https://dev-issuer.{trust_domain}"),
                &[Role::Workload, Role::Orchestrator, Role::Machine, Role::Runtime, Role::Attestor][..],
            ),
            ("keys/operator-issuer.json", format!("https://operators.{trust_domain}"), &[Role::Operator][..]),
        ] {
            if self.path(file).exists() {
                continue;
            }
            let issuer = writ_identity::DevIssuer::generate(trust_domain, &url)?;
            write_secret(&self.path(file), issuer.to_secret_json().as_bytes())?;
            let mut bundle = match fs::read(self.path("trust/bundle.json")) {
                Ok(b) => writ_identity::TrustBundle::from_json(&b)?,
                Err(_) => writ_identity::TrustBundle::new(),
            };
            bundle.add(issuer.bundle_entry(roles))?;
            fs::write(self.path("trust/bundle.json"), bundle.to_json())?;
            created.push(file.to_owned());
        }
        Ok(created)
    }

    fn read_secret(&self, rel: &str) -> Result<String> {
        let path = self.path(rel);
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run `writ keys generate`?)", path.display()))?;
        let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!("{} is readable by others (mode {mode:o}); it must be 0600", path.display());
        }
        Ok(text)
    }

    pub fn writ_seeds(&self) -> Result<Vec<[u8; 32]>> {
        let text = self.read_secret("keys/writ.keys")?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(l.trim(), &mut seed).context("keys/writ.keys holds a malformed key")?;
                Ok(seed)
            })
            .collect()
    }

    /// Adds a new writ signing key; the old ones stay published so outstanding writs verify.
    /// Returns every key, oldest first. Only through the engine's rotation, which records it
    /// (see the [`writ_engine::WritKeyStore`] implementation below).
    fn rotate_writ_key(&self) -> Result<Vec<[u8; 32]>> {
        let mut seeds = self.writ_seeds()?;
        seeds.push(writ_engine::WritSigner::generate_seed()?);
        self.write_writ_seeds(&seeds)?;
        Ok(seeds)
    }

    /// Removes the newest writ signing key (a rotation that could not be recorded); the
    /// first key is never removed.
    fn remove_newest_writ_key(&self) -> Result<()> {
        let mut seeds = self.writ_seeds()?;
        if seeds.len() < 2 {
            anyhow::bail!("keys/writ.keys holds one key: it is not removed");
        }
        seeds.pop();
        self.write_writ_seeds(&seeds)
    }

    /// The revocation feed's signing key (`keys/feed.key`), for the control plane named
    /// `issuer`; its JWKS is published as `trust/feed-keys.json`.
    pub fn feed_signer(&self, issuer: &str) -> Result<writ_engine::FeedSigner> {
        let text = self.read_secret("keys/feed.key")?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).context("keys/feed.key holds a malformed key")?;
        let signer = writ_engine::FeedSigner::from_seed(issuer, &seed)?;
        replace_file(&self.path("trust/feed-keys.json"), format!("{:#}\n", signer.jwks()).as_bytes())?;
        Ok(signer)
    }

    /// Replaces `keys/writ.keys` atomically (a new file, then a rename).
    fn write_writ_seeds(&self, seeds: &[[u8; 32]]) -> Result<()> {
        let text: Vec<String> = seeds.iter().map(hex::encode).collect();
        let tmp = self.path("keys/writ.keys.new");
        let _ = fs::remove_file(&tmp);
        write_secret(&tmp, text.join("\n").as_bytes())?;
        fs::rename(&tmp, self.path("keys/writ.keys"))?;
        Ok(())
    }

    pub fn policy_signer(&self) -> Result<NoteSigner> {
        Ok(NoteSigner::from_private_key(self.read_secret("keys/policy.key")?.trim())?)
    }

    pub fn policy_verifiers(&self) -> Result<Vec<NoteVerifier>> {
        let path = self.path("trust/policy.vkeys");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(NoteVerifier::from_vkey(l.trim())?)).collect()
    }

    pub fn dev_issuer(&self) -> Result<writ_identity::DevIssuer> {
        Ok(writ_identity::DevIssuer::from_secret_json(&self.read_secret("keys/dev-issuer.json")?)?)
    }

    /// The development issuer of operator credentials (trusted for the operator role only).
    pub fn operator_issuer(&self) -> Result<writ_identity::DevIssuer> {
        Ok(writ_identity::DevIssuer::from_secret_json(&self.read_secret("keys/operator-issuer.json")?)?)
    }

    /// Mints an operator credential for `subject` valid `ttl` seconds.
    pub fn mint_operator(&self, subject: &writ_core::SpiffeId, ttl: u64) -> Result<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        Ok(self.operator_issuer()?.issue(writ_identity::IssueRequest {
            subject,
            audience: vec!["writ".into()],
            ttl_secs: ttl,
            extra_claims: serde_json::Map::new(),
            now,
        })?)
    }

    pub fn trust_bundle(&self) -> Result<writ_identity::TrustBundle> {
        let path = self.path("trust/bundle.json");
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(writ_identity::TrustBundle::from_json(&bytes)?)
    }

    /// Opens the engine over this directory's log (taking the writer lock).
    pub fn open_engine(&self) -> Result<(writ_engine::Engine, File)> {
        self.open_engine_with(writ_engine::EngineConfig::default())
    }

    /// Opens the engine with `config` (taking the writer lock).
    pub fn open_engine_with(&self, config: writ_engine::EngineConfig) -> Result<(writ_engine::Engine, File)> {
        let (log, lock) = self.open_log(LogOptions::default())?;
        let engine = writ_engine::Engine::open(writ_engine::EngineParts {
            config,
            trust_bundle: self.trust_bundle()?,
            policy_keys: self.policy_verifiers()?,
            writ_signer: writ_engine::WritSigner::from_seeds("writ", &self.writ_seeds()?)?,
            log: Arc::new(log),
            clock: Arc::new(writ_engine::SystemClock),
        })
        .map_err(|e| match e {
            // The key store and the log disagree: say which file, not the demo-log hint.
            writ_engine::EngineError::Key(_) => anyhow::Error::new(e).context(format!(
                "opening the engine over {}: keys/writ.keys does not match the key rotations the log records",
                self.root.display()
            )),
            other => anyhow::Error::new(other).context(format!(
                "opening the engine over {} (a log written by `writ log demo` or `writ log append` holds no engine records: use another --data-dir)",
                self.root.display()
            )),
        })?;
        Ok((engine, lock))
    }
}

/// The writ signing keys of the data directory (`keys/writ.keys`, published as
/// `trust/jwks.json`): what `writ keys rotate` and `POST /v1/keys/rotate` hand to
/// [`writ_engine::Engine::rotate_writ_key_with`].
impl writ_engine::WritKeyStore for DataDir {
    fn add(&self) -> Result<Vec<[u8; 32]>, String> {
        self.rotate_writ_key().map_err(|e| format!("{e:#}"))
    }

    fn remove_newest(&self) -> Result<(), String> {
        self.remove_newest_writ_key().map_err(|e| format!("{e:#}"))
    }

    fn published(&self, jwks: &serde_json::Value) -> Result<(), String> {
        self.publish_jwks(jwks).map_err(|e| format!("{e:#}"))
    }
}

/// Where a stopping `writ serve` keeps the writs its `/v1/verify` used.
const SERVED_USED: &str = "enforce/served-used.json";

impl DataDir {
    /// The published writ signing keys (`trust/jwks.json`), as enforcement points read them.
    pub fn published_jwks(&self) -> Result<serde_json::Value> {
        // Named relative to the data directory: the verification loop's problems are shown
        // to any caller (`/v1/health`, `/readyz`, a refused decision's detail), and the
        // machine's paths are not theirs to see.
        let text = fs::read(self.path("trust/jwks.json")).context("reading trust/jwks.json in the data directory")?;
        serde_json::from_slice(&text).context("parsing trust/jwks.json in the data directory")
    }

    /// Publishes the writ signing keys (`trust/jwks.json`), replacing the file whole.
    pub fn publish_jwks(&self, jwks: &serde_json::Value) -> Result<()> {
        replace_file(&self.path("trust/jwks.json"), serde_json::to_string_pretty(jwks)?.as_bytes())
    }

    /// Takes back the writs a clean stop of `writ serve` kept as used: the file is removed
    /// (durably) before this returns, so that a later crash cannot bring back a set that
    /// misses what this run verifies. `None` when there is none (a first start, or the last
    /// run was killed) or it cannot be read: the used set is then lost.
    pub fn take_served_used(&self) -> Result<Option<UsedWrits>> {
        let path = self.path(SERVED_USED);
        let kept = match fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            read => read
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str::<UsedWrits>(&text).map_err(|e| e.to_string())),
        };
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        sync_dir(&self.path("enforce"))?;
        match kept {
            Ok(kept) => Ok(Some(kept)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "the used writs kept at the last stop are unreadable");
                Ok(None)
            }
        }
    }

    /// Keeps the writs `writ serve` verified and its refuse-issued-before horizon, for the
    /// next start (a clean stop): `enforce/served-used.json`, a [`UsedWrits`].
    pub fn keep_served_used(&self, kept: &UsedWrits) -> Result<()> {
        fs::create_dir_all(self.path("enforce"))?;
        replace_file(&self.path(SERVED_USED), &serde_json::to_vec(kept)?)
    }
}

/// Replaces `path` whole and durably: a temporary file beside it, synced, renamed over it,
/// and the directory synced.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
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

/// Refuses a trust domain a SPIFFE ID cannot carry (SPIFFE-ID §2.1: lowercase letters,
/// digits, dots, dashes and underscores), before any key is named after it.
pub fn check_trust_domain(trust_domain: &str) -> Result<()> {
    let id = writ_core::SpiffeId::parse(&format!("spiffe://{trust_domain}/operator/admin"))
        .with_context(|| format!("the trust domain {trust_domain:?} is not a SPIFFE trust domain name"))?;
    // `x/y` parses as trust domain `x` and a longer path: the name must be the whole domain.
    if id.trust_domain() != trust_domain {
        bail!("the trust domain {trust_domain:?} is not a SPIFFE trust domain name (no `/`, `:` or `@`)");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    /// The used writs a clean stop keeps come back once, and the record is gone after; a
    /// record that does not parse counts as lost (the caller then refuses older writs), and
    /// is removed too.
    #[test]
    fn served_used_writs_are_taken_back_once_and_garbage_counts_as_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        assert_eq!(dir.take_served_used().unwrap(), None);
        let kept =
            UsedWrits { used: vec![("w-1".to_owned(), 1_000), ("w-2".to_owned(), 2_000)], refuse_issued_before: 900 };
        dir.keep_served_used(&kept).unwrap();
        assert_eq!(dir.take_served_used().unwrap(), Some(kept));
        assert_eq!(dir.take_served_used().unwrap(), None);
        for garbage in ["", "{not json", r#"{"used": [["w-1", "soon"]]}"#, r#"{"used": [], "more": 1}"#] {
            fs::write(dir.path(SERVED_USED), garbage).unwrap();
            assert_eq!(dir.take_served_used().unwrap(), None, "{garbage:?}");
            assert!(!dir.path(SERVED_USED).exists());
        }
    }
}
