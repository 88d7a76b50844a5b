//! A node's directory: `maillage.toml`, `node.key` and the `store/`, opened together.

use std::fs;
use std::path::{Path, PathBuf};

use maillage_privacy::{Activity, Indicators};
use maillage_protocol::{Cog, Indicator, Period};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{Config, NodeSection, Role, validate_pivot};
use crate::identity::{Identity, KeyError};
use crate::import::{self, ImportError, Progress};
use crate::store::{Committed, ImportRecord, ImportSummary, LedgerEntry, Store, StoreError};

/// The configuration file's name inside a node directory.
pub const CONFIG_FILE: &str = "maillage.toml";
/// The key file's name inside a node directory.
pub const KEY_FILE: &str = "node.key";
/// The store's folder inside a node directory.
pub const STORE_DIR: &str = "store";

/// A file's length, last change and inode (`None` if it is absent): cheap to compare, to notice
/// that another process rewrote or replaced it.
pub type FileStamp = Option<(u64, std::time::SystemTime, u64)>;

/// The [`FileStamp`] of the file at `path`.
pub fn file_stamp(path: &Path) -> FileStamp {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0;
    Some((meta.len(), meta.modified().ok()?, ino))
}

/// What can go wrong with a node directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No node in this directory.
    #[error(
        "{dir} holds no Maillage node (no {CONFIG_FILE}); create one with: maillage init --dir {dir} --role structure --name \"...\""
    )]
    NotANode {
        /// The directory.
        dir: String,
    },
    /// `init` into a directory that already holds a node.
    #[error("{dir} already holds a Maillage node; refusing to overwrite it (choose another --dir)")]
    AlreadyANode {
        /// The directory.
        dir: String,
    },
    /// `init` into a directory holding other files.
    #[error("{dir} is not empty; choose a new or empty directory for the node")]
    NotEmpty {
        /// The directory.
        dir: String,
    },
    /// A value given to `init` is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The configuration file is unreadable or invalid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The key file.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store.
    #[error("store {path}: {source}")]
    Store {
        /// The store's folder.
        path: String,
        /// The cause.
        source: StoreError,
    },
    /// The store is used by another process.
    #[error(
        "the store {path} is in use by another maillage process (for example `maillage serve`); stop it or wait for it to finish (while `maillage serve` runs, `maillage import` and `maillage release` go through it, and its HTTP API answers GET /status and /indicators)"
    )]
    Locked {
        /// The store's folder.
        path: String,
    },
    /// A file to import.
    #[error("{file}: {source}")]
    Import {
        /// The file.
        file: String,
        /// The cause.
        source: ImportError,
    },
    /// Any other I/O problem.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// What `maillage init` is told.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The node's role.
    pub role: Role,
    /// The organisation's name.
    pub name: String,
    /// COG code of its commune.
    pub code_insee: Option<String>,
    /// SIRET, RNA or RIDET.
    pub pivot: Option<String>,
}

/// An open node directory.
#[derive(Debug)]
pub struct Node {
    dir: PathBuf,
    /// The configuration.
    pub config: Config,
    /// The key pair.
    pub identity: Identity,
    /// The store.
    pub store: Store,
}

/// Hands a copy of what is read through it to a thread that computes its SHA-256 (see
/// [`hashing_thread`]), so that hashing does not slow the reading thread.
struct HashingReader<R> {
    inner: R,
    /// What was read and not handed over yet.
    pending: Vec<u8>,
    full: std::sync::mpsc::SyncSender<Vec<u8>>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// Bytes handed to the hashing thread at a time, and buffers in flight.
const HASH_CHUNK: usize = 256 * 1024;
const HASH_BUFFERS: usize = 4;

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() >= HASH_CHUNK {
            self.hand_over()?;
        }
        Ok(n)
    }
}

impl<R> HashingReader<R> {
    fn hand_over(&mut self) -> std::io::Result<()> {
        let stopped = || std::io::Error::other("the hashing thread stopped");
        let mut next = self.empty.recv().map_err(|_| stopped())?;
        next.clear();
        let full = std::mem::replace(&mut self.pending, next);
        self.full.send(full).map_err(|_| stopped())
    }

    /// Hands over what is left; the hashing thread then returns the digest.
    fn finish(mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.hand_over()?;
        }
        Ok(())
    }
}

/// A [`HashingReader`] over `inner` and the body of its hashing thread, which returns the
/// SHA-256 of everything read once the reader is finished (or dropped).
fn hashing_reader<R>(inner: R) -> (HashingReader<R>, impl FnOnce() -> [u8; 32] + Send) {
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
    for _ in 0..HASH_BUFFERS {
        let _ = empty_tx.send(Vec::with_capacity(HASH_CHUNK + (1 << 16)));
    }
    let reader = HashingReader {
        inner,
        pending: Vec::with_capacity(HASH_CHUNK + (1 << 16)),
        full: full_tx,
        empty: empty_rx,
    };
    let hash = move || {
        let mut hash = Sha256::new();
        for chunk in full_rx {
            hash.update(&chunk);
            // The reader may be gone already (finished or failed).
            let _ = empty_tx.send(chunk);
        }
        hash.finalize().into()
    };
    (reader, hash)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a new file and waits until it is on disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    let mut file = fs::File::create(path).map_err(io_error(path))?;
    std::io::Write::write_all(&mut file, bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

fn is_lock_error(error: &StoreError) -> bool {
    match error {
        StoreError::Locked => true,
        StoreError::Sled(sled::Error::Io(io)) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
        }
        _ => false,
    }
}

fn open_store(path: &Path) -> Result<Store, NodeError> {
    // sled's background flusher may hold the lock a moment after a store is dropped, so a lock
    // error is retried briefly before it is reported as another process using the store.
    let mut attempts = 0;
    loop {
        match Store::open(path) {
            Ok(store) => return Ok(store),
            Err(e) if is_lock_error(&e) && attempts < 10 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if is_lock_error(&e) => {
                return Err(NodeError::Locked {
                    path: path.display().to_string(),
                });
            }
            Err(source) => {
                return Err(NodeError::Store {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
}

/// What an import did or why it was refused, as `maillage import --json` prints it (and the
/// daemon's `POST /import` answers): `{"ok": true, "file", "summary", "warnings"}`, or
/// `{"ok": false, "file", "message"}` with, when rows were invalid, `"errors"` (line, column,
/// value, message) and `"unlisted_errors"`.
pub fn import_report(
    file: &str,
    result: &Result<(ImportSummary, Vec<String>), NodeError>,
) -> serde_json::Value {
    match result {
        Ok((summary, warnings)) => {
            serde_json::json!({"ok": true, "file": file, "summary": summary, "warnings": warnings})
        }
        Err(e) => {
            let mut report =
                serde_json::json!({"ok": false, "file": file, "message": e.to_string()});
            if let NodeError::Import {
                source: ImportError::Rows { errors, unlisted },
                ..
            } = e
            {
                report["errors"] = errors
                    .iter()
                    .map(|e| serde_json::json!({"line": e.line, "column": e.column, "value": e.value, "message": e.message}))
                    .collect();
                report["unlisted_errors"] = serde_json::json!(unlisted);
            }
            report
        }
    }
}

impl Node {
    /// Creates a node directory. The key and configuration are assembled in a sibling folder and
    /// renamed into place, so an interrupted `init` never leaves a half-made node behind; the
    /// store is created when the node is first opened.
    pub fn init(dir: &Path, options: InitOptions) -> Result<Node, NodeError> {
        let shown = dir.display().to_string();
        if dir.join(CONFIG_FILE).exists() || dir.join(KEY_FILE).exists() {
            return Err(NodeError::AlreadyANode { dir: shown });
        }
        if dir.exists() && fs::read_dir(dir).map_err(io_error(dir))?.next().is_some() {
            return Err(NodeError::NotEmpty { dir: shown });
        }
        if options.name.trim().is_empty() {
            return Err(NodeError::Invalid(
                "--name is empty: give the organisation's name".into(),
            ));
        }
        if let Some(code) = &options.code_insee {
            Cog::get()
                .commune(code)
                .map_err(|e| NodeError::Invalid(format!("--code-insee: {e}")))?;
        }
        if let Some(pivot) = &options.pivot {
            validate_pivot(pivot).map_err(|e| NodeError::Invalid(format!("--pivot: {e}")))?;
        }

        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = parent.join(format!(".{name}.init-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging).map_err(io_error(&staging))?;
        let built = (|| {
            let identity = Identity::generate()?;
            identity.write_new(&staging.join(KEY_FILE))?;
            let config = Config {
                node: NodeSection {
                    role: options.role,
                    name: options.name.trim().to_owned(),
                    code_insee: options.code_insee.clone(),
                    pivot: options.pivot.clone(),
                },
                privacy: Default::default(),
                network: Default::default(),
            };
            let config_path = staging.join(CONFIG_FILE);
            write_synced(&config_path, config.to_commented_toml().as_bytes())?;
            // The store is created by the first open, after the rename: opening it here and
            // again after the rename would race with sled's background flusher for the lock.
            Ok::<_, NodeError>(())
        })();
        if let Err(e) = built {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
        // rename(2) replaces an empty directory and refuses a non-empty one.
        if let Err(e) = fs::rename(&staging, dir) {
            let _ = fs::remove_dir_all(&staging);
            return Err(NodeError::Io {
                path: shown,
                source: e,
            });
        }
        Self::open(dir)
    }

    /// Reads a node's configuration and key without opening its store, for commands that only
    /// talk to other nodes (and so may run while `maillage serve` holds the store).
    pub fn open_identity(dir: &Path) -> Result<(Config, Identity), NodeError> {
        let config = Self::read_config(dir)?;
        let identity = Identity::read(&dir.join(KEY_FILE))?;
        Ok((config, identity))
    }

    fn read_config(dir: &Path) -> Result<Config, NodeError> {
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            return Err(NodeError::NotANode {
                dir: dir.display().to_string(),
            });
        }
        let text = fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
        toml::from_str(&text).map_err(|e| NodeError::Config {
            path: config_path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Opens an existing node directory.
    pub fn open(dir: &Path) -> Result<Node, NodeError> {
        let config = Self::read_config(dir)?;
        let config_path = dir.join(CONFIG_FILE);
        if !config_path.exists() {
            return Err(NodeError::NotANode {
                dir: dir.display().to_string(),
            });
        }
        let _ = config_path;
        let identity = Identity::read(&dir.join(KEY_FILE))?;
        let store = open_store(&dir.join(STORE_DIR))?;
        Ok(Node {
            dir: dir.to_path_buf(),
            config,
            identity,
            store,
        })
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Imports an activity-report file: all or nothing, durable when it returns.
    /// Returns what was stored and the warnings about the file.
    pub fn import_file(
        &self,
        path: &Path,
        progress: &mut dyn Progress,
    ) -> Result<(ImportSummary, Vec<String>), NodeError> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.import(path, &path.display().to_string(), &name, progress)
    }

    /// Imports a file received from elsewhere (see [`Node::import_file`]), recorded and
    /// reported under `name`, the name it had there.
    pub fn import_file_as(
        &self,
        path: &Path,
        name: &str,
        progress: &mut dyn Progress,
    ) -> Result<(ImportSummary, Vec<String>), NodeError> {
        self.import(path, name, name, progress)
    }

    fn import(
        &self,
        path: &Path,
        shown: &str,
        name: &str,
        progress: &mut dyn Progress,
    ) -> Result<(ImportSummary, Vec<String>), NodeError> {
        let shown = shown.to_owned();
        let file = fs::File::open(path).map_err(io_error(path))?;
        let mut staging = self
            .store
            .begin_import()
            .map_err(|source| self.store_error(source))?;
        // An error here drops `staging`, which deletes the staging file: nothing is stored.
        let import_error = |source| NodeError::Import {
            file: shown.clone(),
            source,
        };
        let t0 = std::time::Instant::now();
        let (reader, hash) = hashing_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let (reading, sha256) = std::thread::scope(|scope| {
            let hashing = scope.spawn(hash);
            let mut reader = reader;
            let reading =
                import::read_rows(&mut reader, &mut |frame| staging.push(frame), progress)
                    .and_then(|reading| Ok((reading, reader.finish()?)));
            // The reader is finished or dropped: the hashing thread ends.
            let sha256 = hashing.join();
            match (reading, sha256) {
                (Ok((reading, ())), Ok(sha256)) => Ok((reading, sha256)),
                (Err(e), _) => Err(e),
                (Ok(_), Err(_)) => Err(ImportError::Io(std::io::Error::other(
                    "the hashing thread failed",
                ))),
            }
        })
        .map_err(import_error)?;
        tracing::debug!(elapsed = ?t0.elapsed(), "import: rows read, checked and staged");
        // The rows of each activity, checked together once every row is staged.
        let mut errors = reading.errors;
        let (_, found) = staging
            .check(&import::check_activity)
            .map_err(|source| self.store_error(source))?;
        for e in found {
            errors.merge(e);
        }
        tracing::debug!(elapsed = ?t0.elapsed(), "import: activities checked");
        errors.finish().map_err(import_error)?;
        let record = ImportRecord {
            file: name.to_owned(),
            sha256: hex::encode(sha256),
            at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            summary: ImportSummary::default(),
        };
        let summary = self
            .store
            .commit_import(staging, record)
            .map_err(|source| self.store_error(source))?;
        Ok((summary, reading.warnings))
    }

    /// The exact indicators of a period, computed straight from the stored records.
    pub fn indicators(&self, period: Period, which: &[Indicator]) -> Result<Indicators, NodeError> {
        self.store
            .indicators(period, which)
            .map_err(|source| self.store_error(source))
    }

    /// Every stored activity of a period.
    pub fn activities_in(&self, period: Period) -> Result<Vec<Activity>, NodeError> {
        self.store
            .activities_in(period)
            .map_err(|source| self.store_error(source))
    }

    /// The stored release of a period, in its wire bytes.
    pub fn stored_release(&self, period: Period) -> Result<Option<Vec<u8>>, NodeError> {
        self.store
            .release(period)
            .map_err(|source| self.store_error(source))
    }

    /// Stores a period's release with its budget spend (see [`Store::commit_release`]).
    pub fn commit_release(
        &self,
        period: Period,
        release: &[u8],
        entry: &LedgerEntry,
    ) -> Result<Committed, NodeError> {
        self.store
            .commit_release(period, release, entry)
            .map_err(|source| self.store_error(source))
    }

    /// The budget ledger.
    pub fn ledger(&self) -> Result<Vec<(String, LedgerEntry)>, NodeError> {
        self.store
            .ledger()
            .map_err(|source| self.store_error(source))
    }

    fn store_error(&self, source: StoreError) -> NodeError {
        NodeError::Store {
            path: self.store_path(),
            source,
        }
    }

    fn store_path(&self) -> String {
        self.dir.join(STORE_DIR).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded SHA-256 is the file's, whether it is handed to the hashing thread in one
    /// piece or in many.
    #[test]
    fn an_import_records_the_sha256_of_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let node = Node::init(
            &dir.path().join("node"),
            InitOptions {
                role: Role::Structure,
                name: "t".into(),
                code_insee: None,
                pivot: None,
            },
        )?;
        let mut big = String::from("activite_id,date,type,duree,beneficiaire_id\n");
        for i in 0..20_000 {
            big.push_str(&format!(
                "a{i},2026-10-{:02},individuel,30,p{i}\n",
                i % 28 + 1
            ));
        }
        assert!(big.len() > 2 * HASH_CHUNK);
        let small = "activite_id,date,type,duree\nz,2026-10-01,individuel,5\n".to_owned();
        for (name, text) in [("big.csv", &big), ("small.csv", &small)] {
            let path = dir.path().join(name);
            std::fs::write(&path, text)?;
            node.import_file(&path, &mut ())?;
            let last = node.store.imports()?.pop().ok_or("no import recorded")?;
            assert_eq!(last.file, name);
            assert_eq!(last.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        }
        Ok(())
    }
}
