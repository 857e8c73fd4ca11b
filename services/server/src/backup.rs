//! Backup and restore: a consistent, checked copy of a running server's data, and its return
//! into an empty data directory.
//!
//! A backup is a directory of parts and a manifest. Every part is a sequence of frames (a
//! big-endian u32 length, then that many bytes):
//!
//! | part | frames |
//! |---|---|
//! | `events.log` | each stored record of the event log from position 0, as the log keeps it (so its hash chain comes along) |
//! | `audit-<year>.log` | the same, for each year's audit log |
//! | `keys.kv`, `disclosures.kv`, `push.kv` | three per entry: the tree (or `keys`), the key (or file name), the value |
//!
//! `manifest.json` comes last: each part's size and SHA-256, and for the logs their number of
//! records and the hash at the head of their chain. A directory without it is an unfinished
//! backup.
//!
//! **Consistency while the server writes.** The push state is copied first; then the event log
//! up to its head at that moment; then each audit year up to its head after that, so every
//! command in the copy has its audit record; then the household keys, each made before the first
//! event sealed with it, so every household in the copy has its key (unless it was erased
//! meanwhile: then it stays erased); then the record of disclosed reports. Push checkpoints taken
//! before the log's head never point past the copy, so a restored server pushes again from
//! there rather than skipping anything. The read models are not copied: they are rebuilt from
//! the log at the first start. The master key is never copied.

use naast_eventlog::backup::ChainCheck;
use naast_eventlog::storage::TreeEntry;
use naast_eventlog::{EventLog, Options};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// What the manifest's `format` says.
pub const FORMAT: &str = "naast-backup/1";

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";

/// Written into a data directory before a restore begins and removed when it has finished: a
/// server refuses a directory that has it.
pub const RESTORING: &str = "RESTORING";

/// Bytes of a part sent in one message.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Largest frame read back: a record is at most a few MiB (see `naast_eventlog::limits`).
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Records read from a log at a time.
const RECORDS_PER_READ: usize = 1024;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The event log or an audit log could not be read or written, or a copy does not chain.
    #[error("{what}: {source}")]
    Log {
        /// Which log.
        what: String,
        /// What went wrong.
        source: naast_eventlog::Error,
    },
    /// A store beside the log could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The backup is not what its manifest says, or is no backup at all.
    #[error("the backup is damaged or incomplete: {0}")]
    Damaged(String),
    /// The directory to restore into is not empty.
    #[error(
        "{}: restore into an empty or new data directory (this one holds {found})",
        .path.display()
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
        /// A file found in it.
        found: String,
    },
    /// The receiver of the backup went away.
    #[error("the backup was cancelled")]
    Cancelled,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn log_error(what: impl Into<String>) -> impl FnOnce(naast_eventlog::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Log { what, source }
}

/// A copied event log or audit year.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPart {
    /// Its file.
    pub part: String,
    /// Records in it.
    pub events: u64,
    /// The hash of its last record, in hex (zeros when empty).
    pub chain_head: String,
}

/// A copied audit year.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPart {
    /// The year.
    pub year: i32,
    /// Its log.
    #[serde(flatten)]
    pub log: LogPart,
}

/// A copied store of entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntriesPart {
    /// Its file.
    pub part: String,
    /// Entries in it.
    pub entries: u64,
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartSum {
    /// Its name.
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The version of naast that made it.
    pub naast_version: String,
    /// When it began (RFC 3339, UTC).
    pub started_at: String,
    /// The event log.
    pub events: LogPart,
    /// The audit log, year by year.
    pub audit: Vec<AuditPart>,
    /// The wrapped household keys and the master key check.
    pub keys: Option<EntriesPart>,
    /// The record of disclosed effect reports.
    pub disclosures: Option<EntriesPart>,
    /// The push state: checkpoints, ledger, dead letters, FHIR Subscriptions.
    pub push: Option<EntriesPart>,
    /// Every file, with its size and checksum.
    pub parts: Vec<PartSum>,
}

/// What a running server copies.
pub struct Sources {
    /// The event log.
    pub log: EventLog,
    /// The audit log.
    pub auditor: Option<crate::audit::Auditor>,
    /// The household keys.
    pub vault: Option<naast_vault::Vault>,
    /// The push state.
    pub push: Option<naast_push::Store>,
    /// The record of disclosed effect reports.
    pub evaluation: Option<naast_app::evaluation::Evaluation>,
}

/// A piece of a backup as it is sent.
pub enum Piece {
    /// The next bytes of a part.
    Data {
        /// The part.
        part: String,
        /// Its next bytes.
        data: Vec<u8>,
    },
    /// The manifest, in JSON.
    Manifest(String),
}

/// A part being produced: framed, counted, hashed and sent in chunks.
struct PartOut<'a> {
    name: String,
    buffer: Vec<u8>,
    hash: Sha256,
    bytes: u64,
    send: &'a mut dyn FnMut(Piece) -> bool,
}

impl<'a> PartOut<'a> {
    fn new(name: impl Into<String>, send: &'a mut dyn FnMut(Piece) -> bool) -> Self {
        Self {
            name: name.into(),
            buffer: Vec::with_capacity(CHUNK_BYTES + 4096),
            hash: Sha256::new(),
            bytes: 0,
            send,
        }
    }

    fn frame(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| BackupError::Store(format!("an entry of {} is over 4 GiB", self.name)))?;
        self.buffer.extend_from_slice(&len.to_be_bytes());
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackupError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buffer);
        self.hash.update(&data);
        self.bytes += data.len() as u64;
        if (self.send)(Piece::Data {
            part: self.name.clone(),
            data,
        }) {
            Ok(())
        } else {
            Err(BackupError::Cancelled)
        }
    }

    fn finish(mut self) -> Result<PartSum, BackupError> {
        self.flush()?;
        Ok(PartSum {
            name: self.name,
            bytes: self.bytes,
            sha256: hex(&self.hash.finalize()),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies `log` up to position `until` into part `name`.
fn copy_log(
    log: &EventLog,
    until: u64,
    name: &str,
    what: &str,
    send: &mut dyn FnMut(Piece) -> bool,
) -> Result<(LogPart, PartSum), BackupError> {
    let mut out = PartOut::new(name, send);
    let mut check = ChainCheck::new();
    let mut from = 0;
    while from < until {
        let records = log
            .raw_records(from, until, RECORDS_PER_READ)
            .map_err(log_error(what))?;
        if records.is_empty() {
            break;
        }
        for record in &records {
            // Checked here too: a backup of a damaged log fails now, not at its restore.
            check.check(record).map_err(log_error(what))?;
            out.frame(record)?;
        }
        from += records.len() as u64;
    }
    if check.events() != until {
        return Err(BackupError::Damaged(format!(
            "{what}: {} records read, {until} expected",
            check.events()
        )));
    }
    let log_part = LogPart {
        part: name.to_owned(),
        events: check.events(),
        chain_head: hex(&check.last_hash()),
    };
    Ok((log_part, out.finish()?))
}

fn copy_entries(
    entries: &[TreeEntry],
    name: &str,
    send: &mut dyn FnMut(Piece) -> bool,
) -> Result<(EntriesPart, PartSum), BackupError> {
    let mut out = PartOut::new(name, send);
    for (tree, key, value) in entries {
        out.frame(tree.as_bytes())?;
        out.frame(key)?;
        out.frame(value)?;
    }
    Ok((
        EntriesPart {
            part: name.to_owned(),
            entries: entries.len() as u64,
        },
        out.finish()?,
    ))
}

/// Produces a backup of `sources`, handing each piece to `send` (which returns `false` when
/// the receiver has gone). Runs on a thread that may block.
pub fn produce(sources: &Sources, send: &mut dyn FnMut(Piece) -> bool) -> Result<(), BackupError> {
    let started_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut parts = Vec::new();
    // The push state first: its checkpoints then never point past the copied log.
    let push = match &sources.push {
        Some(store) => {
            let entries = store
                .backup_entries()
                .map_err(|e| BackupError::Store(format!("the push store: {e}")))?;
            let (part, sum) = copy_entries(&entries, "push.kv", send)?;
            parts.push(sum);
            Some(part)
        }
        None => None,
    };
    let head = sources.log.head();
    let (events, sum) = copy_log(&sources.log, head, "events.log", "the event log", send)?;
    parts.push(sum);
    let mut audit = Vec::new();
    if let Some(auditor) = &sources.auditor {
        for (year, log) in auditor.partitions() {
            let name = format!("audit-{year}.log");
            let what = format!("the audit log of {year}");
            let (part, sum) = copy_log(&log, log.head(), &name, &what, send)?;
            parts.push(sum);
            audit.push(AuditPart { year, log: part });
        }
    }
    let keys = match &sources.vault {
        Some(vault) => {
            let files = vault
                .backup_files()
                .map_err(|e| BackupError::Store(format!("the key folder: {e}")))?;
            let entries: Vec<TreeEntry> = files
                .into_iter()
                .map(|(name, bytes)| ("keys".to_owned(), name.into_bytes(), bytes))
                .collect();
            let (part, sum) = copy_entries(&entries, "keys.kv", send)?;
            parts.push(sum);
            Some(part)
        }
        None => None,
    };
    let disclosures = match &sources.evaluation {
        Some(evaluation) => {
            let entries = evaluation
                .backup_disclosures()
                .map_err(|e| BackupError::Store(e.to_string()))?;
            let (part, sum) = copy_entries(&entries, "disclosures.kv", send)?;
            parts.push(sum);
            Some(part)
        }
        None => None,
    };
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        naast_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at,
        events,
        audit,
        keys,
        disclosures,
        push,
        parts,
    };
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| BackupError::Store(format!("the manifest: {e}")))?;
    if send(Piece::Manifest(json)) {
        Ok(())
    } else {
        Err(BackupError::Cancelled)
    }
}

/// The frames of a part file, one at a time.
struct Frames {
    reader: BufReader<std::fs::File>,
    path: PathBuf,
}

impl Frames {
    fn open(path: PathBuf) -> Result<Self, BackupError> {
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        Ok(Self {
            reader: BufReader::with_capacity(1024 * 1024, file),
            path,
        })
    }

    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, BackupError> {
        let mut len = [0u8; 4];
        let mut read = 0;
        while read < 4 {
            match self.reader.read(&mut len[read..]) {
                Ok(0) if read == 0 => return Ok(None),
                Ok(0) => return Err(self.damaged("it ends inside a frame's length")),
                Ok(n) => read += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&self.path)(e)),
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(self.damaged("a frame claims more than 64 MiB"));
        }
        let mut frame = vec![0; len];
        self.reader.read_exact(&mut frame).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.damaged("it ends inside a frame")
            } else {
                io(&self.path)(e)
            }
        })?;
        Ok(Some(frame))
    }

    fn damaged(&self, why: &str) -> BackupError {
        BackupError::Damaged(format!("{}: {why}", self.path.display()))
    }

    fn entries(mut self) -> Result<Vec<TreeEntry>, BackupError> {
        let mut entries = Vec::new();
        while let Some(tree) = self.next_frame()? {
            let (Some(key), Some(value)) = (self.next_frame()?, self.next_frame()?) else {
                return Err(self.damaged("an entry lacks its key or value"));
            };
            let tree =
                String::from_utf8(tree).map_err(|_| self.damaged("a tree name is not UTF-8"))?;
            entries.push((tree, key, value));
        }
        Ok(entries)
    }
}

/// A part's file name as a backup may name it: no folders, nothing hidden.
fn safe_part_name(name: &str) -> bool {
    !name.is_empty()
        && name != MANIFEST
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// Where the part `name` of a backup in `dir` is, if `name` is one a backup can have (no
/// separators, nothing that leaves `dir`).
fn part_path(dir: &Path, name: &str) -> Result<PathBuf, BackupError> {
    if safe_part_name(name) {
        Ok(dir.join(name))
    } else {
        Err(BackupError::Damaged(format!("a part named {name:?}")))
    }
}

/// Checks the backup in `dir` against `manifest`: every part there with its size and SHA-256,
/// each log's records chained from the first to the head the manifest names, each store's
/// entries all there.
pub fn check(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    if manifest.format != FORMAT {
        return Err(BackupError::Damaged(format!(
            "format {:?}, this naast reads {FORMAT:?}",
            manifest.format
        )));
    }
    for part in &manifest.parts {
        let path = part_path(dir, &part.name)?;
        let mut file = std::fs::File::open(&path).map_err(io(&path))?;
        let mut hash = Sha256::new();
        let bytes = std::io::copy(&mut file, &mut hash).map_err(io(&path))?;
        if bytes != part.bytes || hex(&hash.finalize()) != part.sha256 {
            return Err(BackupError::Damaged(format!(
                "{} is not the file the manifest lists (size or SHA-256 differs)",
                part.name
            )));
        }
    }
    let listed = |name: &str| -> Result<PathBuf, BackupError> {
        if manifest.parts.iter().any(|p| p.name == name) {
            Ok(dir.join(name))
        } else {
            Err(BackupError::Damaged(format!(
                "{name} is not among the parts"
            )))
        }
    };
    let logs = std::iter::once(&manifest.events).chain(manifest.audit.iter().map(|a| &a.log));
    for log in logs {
        let mut frames = Frames::open(listed(&log.part)?)?;
        let mut chain = ChainCheck::new();
        while let Some(record) = frames.next_frame()? {
            chain.check(&record).map_err(log_error(&log.part))?;
        }
        if chain.events() != log.events || hex(&chain.last_hash()) != log.chain_head {
            return Err(BackupError::Damaged(format!(
                "{} holds {} records up to another head than the manifest's {}",
                log.part,
                chain.events(),
                log.events
            )));
        }
    }
    for entries in [&manifest.keys, &manifest.disclosures, &manifest.push]
        .into_iter()
        .flatten()
    {
        let found = Frames::open(listed(&entries.part)?)?.entries()?.len() as u64;
        if found != entries.entries {
            return Err(BackupError::Damaged(format!(
                "{} holds {found} entries, the manifest says {}",
                entries.part, entries.entries
            )));
        }
    }
    Ok(())
}

/// The manifest of the backup in `dir`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Damaged(format!(
                "{} has no {MANIFEST}: it is no backup, or an unfinished one",
                dir.display()
            )));
        }
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text)
        .map_err(|e| BackupError::Damaged(format!("{MANIFEST} cannot be read: {e}")))
}

/// Fails when `dir` exists and holds anything.
fn ensure_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(entry) => Err(BackupError::NotEmpty {
                path: dir.to_owned(),
                found: entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_default(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    naast_eventlog::storage::sync_dir(dir)
        .map_err(|e| BackupError::Store(format!("{}: {e}", dir.display())))
}

/// Receives a backup from the server at `url`, calling as `token`, into `dir` (new or empty):
/// writes each part, makes it durable, checks the whole against the manifest, and writes the
/// manifest last.
pub async fn receive(url: &str, token: &str, dir: &Path) -> Result<Manifest, BackupError> {
    use naast_proto::pb::backup_response::Piece as Wire;
    ensure_empty(dir)?;
    crate::config::private_data_dir(dir).map_err(io(dir))?;
    let remote = |e: &dyn std::fmt::Display| BackupError::Store(format!("{url}: {e}"));
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| remote(&e))?
        .connect()
        .await
        .map_err(|e| remote(&e))?;
    let bearer = naast_proto::client::Bearer::new(token).map_err(|e| remote(&e.message()))?;
    let mut client =
        naast_proto::pb::operations_service_client::OperationsServiceClient::with_interceptor(
            channel, bearer,
        )
        .max_decoding_message_size(4 * CHUNK_BYTES);
    let mut stream = client
        .backup(naast_proto::pb::BackupRequest {})
        .await
        .map_err(|e| remote(&e.message()))?
        .into_inner();
    let mut files: std::collections::BTreeMap<String, std::fs::File> = Default::default();
    let mut manifest = None;
    while let Some(piece) = stream.message().await.map_err(|e| remote(&e.message()))? {
        match piece.piece {
            Some(Wire::Data(data)) => {
                if !safe_part_name(&data.part) {
                    return Err(BackupError::Damaged(format!(
                        "the server sent a part named {:?}",
                        data.part
                    )));
                }
                let file = match files.entry(data.part.clone()) {
                    std::collections::btree_map::Entry::Occupied(file) => file.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let path = dir.join(&data.part);
                        slot.insert(std::fs::File::create_new(&path).map_err(io(&path))?)
                    }
                };
                file.write_all(&data.data)
                    .map_err(io(&dir.join(&data.part)))?;
            }
            Some(Wire::Manifest(json)) => {
                manifest = Some(serde_json::from_str::<Manifest>(&json).map_err(|e| {
                    BackupError::Damaged(format!("the server's manifest cannot be read: {e}"))
                })?);
            }
            None => {}
        }
    }
    let manifest = manifest.ok_or_else(|| {
        BackupError::Damaged("the server ended the backup before its manifest".into())
    })?;
    for (name, file) in files {
        file.sync_all().map_err(io(&dir.join(name)))?;
    }
    // Parts the manifest lists but that never came (empty ones) are empty files.
    for part in &manifest.parts {
        let path = part_path(dir, &part.name)?;
        if !path.exists() {
            std::fs::File::create_new(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    check(dir, &manifest)?;
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Store(format!("the manifest: {e}")))?;
    let temporary = dir.join(format!("{MANIFEST}.new"));
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(&json)
        .and_then(|()| file.sync_all())
        .map_err(io(&temporary))?;
    let path = dir.join(MANIFEST);
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    sync_dir(dir)?;
    Ok(manifest)
}

/// Puts the backup in `dir` into `data_dir` (new or empty), once all of it checks out. A
/// [`RESTORING`] marker keeps a server off the directory until the restore has finished; a
/// restore that fails removes what it wrote (the directory was empty), so it can be run again.
pub async fn restore(dir: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    ensure_empty(data_dir)?;
    let manifest = read_manifest(dir)?;
    check(dir, &manifest)?;
    let existed = data_dir.exists();
    let restored = restore_into(dir, data_dir, &manifest).await;
    if restored.is_err() {
        let removed = if existed {
            std::fs::read_dir(data_dir).and_then(|entries| {
                entries.flatten().try_for_each(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    }
                })
            })
        } else {
            std::fs::remove_dir_all(data_dir)
        };
        if let Err(e) = removed {
            tracing::error!(error = %e, data_dir = %data_dir.display(), "cannot remove what a failed restore wrote; empty the directory by hand");
        }
    }
    restored.map(|()| manifest)
}

async fn restore_into(dir: &Path, data_dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    crate::config::private_data_dir(data_dir).map_err(io(data_dir))?;
    let marker = data_dir.join(RESTORING);
    std::fs::File::create_new(&marker)
        .and_then(|f| f.sync_all())
        .map_err(io(&marker))?;
    sync_dir(data_dir)?;
    restore_log(
        &dir.join(&manifest.events.part),
        data_dir,
        Options::default(),
    )
    .await?;
    for year in &manifest.audit {
        let options = Options {
            metrics_name: "audit",
            ..Options::default()
        };
        restore_log(
            &dir.join(&year.log.part),
            &data_dir.join("audit").join(year.year.to_string()),
            options,
        )
        .await?;
    }
    if let Some(keys) = &manifest.keys {
        let files = key_files(dir, keys)?;
        naast_vault::restore_files(&data_dir.join("keys"), &files)
            .map_err(|e| BackupError::Store(format!("the key folder: {e}")))?;
    }
    for (entries, store) in [
        (&manifest.disclosures, "disclosures"),
        (&manifest.push, "push"),
    ] {
        if let Some(entries) = entries {
            let entries = Frames::open(dir.join(&entries.part))?.entries()?;
            naast_eventlog::storage::restore_trees(&data_dir.join(store), &entries)
                .map_err(|e| BackupError::Store(format!("the {store} store: {e}")))?;
        }
    }
    std::fs::remove_file(&marker).map_err(io(&marker))?;
    sync_dir(data_dir)
}

async fn restore_log(part: &Path, dir: &Path, options: Options) -> Result<(), BackupError> {
    naast_eventlog::backup::restore(dir, options, records(part)?)
        .await
        .map(|_| ())
        .map_err(log_error(part.display().to_string()))
}

/// The files of the key folder the backup in `dir` holds in its part `keys`, by name.
fn key_files(dir: &Path, keys: &EntriesPart) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    Ok(Frames::open(dir.join(&keys.part))?
        .entries()?
        .into_iter()
        .map(|(_, name, bytes)| (String::from_utf8_lossy(&name).into_owned(), bytes))
        .collect())
}

/// The stored records of a log's part, one at a time.
fn records(
    part: &Path,
) -> Result<impl Iterator<Item = naast_eventlog::Result<Vec<u8>>> + use<>, BackupError> {
    let mut frames = Frames::open(part.to_owned())?;
    Ok(std::iter::from_fn(move || match frames.next_frame() {
        Ok(Some(record)) => Some(Ok(record)),
        Ok(None) => None,
        Err(e) => Some(Err(naast_eventlog::Error::Storage(
            naast_eventlog::StorageError::new("read", e),
        ))),
    }))
}

/// Puts the backup in `dir` into the PostgreSQL database at `url`, once all of it checks out:
/// the event log, each audit year and the record of disclosed reports into their tables, as
/// they were stored (each link checked again), the wrapped household keys into the keys' table
/// and the push state into its table. The database must hold nothing of naast's, and no naast
/// process may have it open (every node stopped); a mark in it keeps them off until the restore
/// has finished. A restore that fails or is cut short leaves the mark: run it again, and it
/// empties what the last one wrote and starts over.
pub async fn restore_into_postgres(dir: &Path, url: &str) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(dir)?;
    check(dir, &manifest)?;
    let database =
        |e: naast_eventlog::StorageError| BackupError::Store(format!("the database: {e}"));
    let restore = naast_eventlog::postgres::Restore::begin(url).map_err(database)?;
    // One log at a time, each as its sole writer: no node opens the database meanwhile.
    let restoring = Options {
        sole_writer: true,
        restoring: true,
        ..Options::default()
    };
    let part = dir.join(&manifest.events.part);
    let log = EventLog::open_postgres(url, restoring.clone())
        .map_err(log_error("the event log in PostgreSQL"))?;
    naast_eventlog::backup::restore_into(log, records(&part)?)
        .await
        .map_err(log_error(part.display().to_string()))?;
    for year in &manifest.audit {
        let part = dir.join(&year.log.part);
        let table = naast_app::audit::partition_table(year.year);
        let log = EventLog::open_postgres_table(
            url,
            &table,
            Options {
                metrics_name: "audit",
                ..restoring.clone()
            },
        )
        .map_err(log_error(format!("the audit log's table {table}")))?;
        naast_eventlog::backup::restore_into(log, records(&part)?)
            .await
            .map_err(log_error(part.display().to_string()))?;
    }
    if let Some(keys) = &manifest.keys {
        let files = key_files(dir, keys)?;
        naast_vault::restore_into_postgres(url, &files)
            .map_err(|e| BackupError::Store(format!("the keys' table: {e}")))?;
    }
    if let Some(part) = &manifest.disclosures {
        let entries = Frames::open(dir.join(&part.part))?.entries()?;
        let log = EventLog::open_postgres_table(
            url,
            naast_app::evaluation::DISCLOSURES_TABLE,
            Options {
                metrics_name: "disclosures",
                ..restoring.clone()
            },
        )
        .map_err(log_error("the record of disclosed reports in PostgreSQL"))?;
        let written = naast_app::evaluation::restore_disclosures(&log, &entries).await;
        log.close().await;
        written.map_err(|e| BackupError::Store(format!("the record of disclosed reports: {e}")))?;
    }
    if let Some(part) = &manifest.push {
        let entries = Frames::open(dir.join(&part.part))?.entries()?;
        naast_push::Store::open_postgres(url)
            .and_then(|store| store.take_in(&entries))
            .map_err(|e| BackupError::Store(format!("the push state's table: {e}")))?;
    }
    restore.finish().map_err(database)?;
    Ok(manifest)
}

/// Refuses a data directory a restore has not finished in.
pub fn refuse_unfinished_restore(data_dir: &Path) -> Result<(), String> {
    if data_dir.join(RESTORING).exists() {
        return Err(format!(
            "{}: a restore into this data directory did not finish; empty it and run naast restore again",
            data_dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    #[test]
    fn part_names_stay_inside_the_backup() {
        for good in ["events.log", "audit-2026.log", "keys.kv"] {
            assert!(safe_part_name(good), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", MANIFEST, "a\0b"] {
            assert!(!safe_part_name(bad), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Any bytes as a part of a backup, a manifest or a store's entries: an error naming
        /// the damage, never a panic.
        #[test]
        fn any_bytes_as_a_backup_are_refused_or_read_never_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("events.log"), &bytes).unwrap();
            std::fs::write(dir.path().join("keys.kv"), &bytes).unwrap();
            std::fs::write(dir.path().join(MANIFEST), &bytes).unwrap();
            let _ = Frames::open(dir.path().join("keys.kv")).unwrap().entries();
            let _ = read_manifest(dir.path());
            let mut hash = Sha256::new();
            hash.update(&bytes);
            let manifest = Manifest {
                format: FORMAT.into(),
                naast_version: "0".into(),
                started_at: String::new(),
                events: LogPart { part: "events.log".into(), events: 1, chain_head: hex(&[0; 32]) },
                audit: Vec::new(),
                keys: Some(EntriesPart { part: "keys.kv".into(), entries: 1 }),
                disclosures: None,
                push: None,
                parts: ["events.log", "keys.kv"]
                    .into_iter()
                    .map(|name| PartSum {
                        name: name.into(),
                        bytes: bytes.len() as u64,
                        sha256: hex(&hash.clone().finalize()),
                    })
                    .collect(),
            };
            // Checksums match, so what is checked is the content: random bytes do not chain
            // as one record of a log (nor frame as one entry).
            proptest::prop_assert!(check(dir.path(), &manifest).is_err());
        }
    }

    /// A backup of a real log with a few events, written to `dir` as `naast backup` would.
    async fn backup_of_a_log(dir: &Path) -> Manifest {
        let data = tempfile::tempdir().unwrap();
        let log = EventLog::open(data.path(), Options::default()).unwrap();
        for i in 0..5 {
            log.append(
                "pgo-1",
                naast_eventlog::ExpectedRevision::Any,
                vec![naast_eventlog::NewEvent::new(
                    "Noted",
                    format!("{{\"i\":{i}}}").into_bytes(),
                )],
            )
            .await
            .unwrap();
        }
        let sources = Sources {
            log: log.clone(),
            auditor: None,
            vault: None,
            push: None,
            evaluation: None,
        };
        let mut manifest = None;
        let mut send = |piece: Piece| {
            match piece {
                Piece::Data { part, data } => {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join(part))
                        .unwrap();
                    file.write_all(&data).unwrap();
                }
                Piece::Manifest(json) => manifest = Some(serde_json::from_str(&json).unwrap()),
            }
            true
        };
        produce(&sources, &mut send).unwrap();
        log.close().await;
        manifest.unwrap()
    }

    #[tokio::test]
    async fn a_changed_record_is_caught_even_when_its_checksum_is_made_to_match() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = backup_of_a_log(dir.path()).await;
        assert_eq!(manifest.events.events, 5);
        check(dir.path(), &manifest).unwrap();
        // One byte of the third record changed, and the manifest's size and SHA-256 made to
        // match: the chain still gives it away.
        let path = dir.path().join("events.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let mut at = 0;
        for _ in 0..2 {
            at += 4 + u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        }
        bytes[at + 4 + 20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let sum = manifest
            .parts
            .iter_mut()
            .find(|p| p.name == "events.log")
            .unwrap();
        sum.sha256 = hex(&Sha256::digest(&bytes));
        let refused = check(dir.path(), &manifest).unwrap_err();
        assert!(
            matches!(
                &refused,
                BackupError::Log {
                    source: naast_eventlog::Error::Corrupt { position: 2, .. },
                    ..
                }
            ),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_manifest_that_miscounts_or_names_another_head_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = backup_of_a_log(dir.path()).await;
        let mut fewer = manifest.clone();
        fewer.events.events = 4;
        let mut other_head = manifest.clone();
        other_head.events.chain_head = hex(&[7; 32]);
        let mut unlisted = manifest.clone();
        unlisted.keys = Some(EntriesPart {
            part: "keys.kv".into(),
            entries: 0,
        });
        for bad in [fewer, other_head, unlisted] {
            assert!(matches!(
                check(dir.path(), &bad),
                Err(BackupError::Damaged(_))
            ));
        }
    }

    #[test]
    fn a_part_cut_short_is_damaged_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.kv");
        let mut sent = Vec::new();
        let mut send = |piece: Piece| {
            if let Piece::Data { data, .. } = piece {
                sent.extend(data);
            }
            true
        };
        let entries = vec![("t".to_owned(), b"k".to_vec(), b"value".to_vec())];
        copy_entries(&entries, "x.kv", &mut send).unwrap();
        std::fs::write(&path, &sent).unwrap();
        assert_eq!(
            Frames::open(path.clone()).unwrap().entries().unwrap(),
            entries
        );
        for cut in 1..sent.len() {
            std::fs::write(&path, &sent[..cut]).unwrap();
            assert!(matches!(
                Frames::open(path.clone()).unwrap().entries(),
                Err(BackupError::Damaged(_))
            ));
        }
    }
}
