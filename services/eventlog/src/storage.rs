//! The storage engine behind the log: one ordered keyspace of byte keys and values.
//!
//! The log needs four things of an engine, and nothing else, so another engine can replace sled:
//! an atomic batch write, a durable sync, a point read and a bounded ordered range scan.
//! [`SledStorage`] is the engine of production; [`MemoryStorage`] keeps everything in a `BTreeMap`
//! for tests and tools that need no disk.

use crate::StorageError;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Why [`Storage::begin_shared_group`] could not begin a group.
#[derive(Debug)]
pub struct GroupRefused {
    /// What went wrong.
    pub error: StorageError,
    /// Whether the engine can go on: nothing was begun, and the next group may try again.
    pub recoverable: bool,
}

/// An ordered key-value engine.
///
/// Only the log's single writer calls [`Storage::write`] and [`Storage::sync`]; reads may come from
/// any thread at any time.
pub trait Storage: Send + Sync + 'static {
    /// Inserts all `entries` atomically: after a crash, either all of them are present or none.
    /// They become visible to reads at once, but are durable only after [`Storage::sync`].
    /// An error means none of them was written.
    fn write(&self, entries: Vec<Entry>) -> Result<(), StorageError>;

    /// Makes every completed [`Storage::write`] durable: on return, they survive a crash of the
    /// process or of the machine. An error means the engine cannot tell what is durable.
    fn sync(&self) -> Result<(), StorageError>;

    /// Removes `keys` atomically, as [`Storage::write`] inserts (durable after a sync).
    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError>;

    /// The value stored under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// The values stored under `keys`, in their order: one round trip where the engine is
    /// across a network (the writer looks up a whole group's event ids this way).
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        keys.iter().map(|key| self.get(key)).collect()
    }

    /// At most `limit` entries with `start <= key < end`, in ascending key order, or descending
    /// (starting from the largest key below `end`) when `reverse` is set.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError>;

    /// Shows `visit` the entries [`Storage::scan`] would return, in its order, without copying
    /// them first; stops early when `visit` returns `false`. Catch-up reads the whole log this
    /// way, decoding each record straight from the engine's buffer.
    fn scan_each(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        for (key, value) in self.scan(start, end, reverse, limit)? {
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// Whether other processes write to this storage too (PostgreSQL behind several naast
    /// nodes). The writer then takes [`Storage::begin_shared_group`]'s lock for each group it
    /// writes, first reading what the others committed past its view, and follows their commits
    /// between groups when [`Storage::watch`] wakes it.
    fn is_shared(&self) -> bool {
        false
    }

    /// Shared engines only: takes the lock that orders every process's commits, so nobody
    /// else's commit can move the log's tail until this group's [`Storage::write`] commits (and
    /// so lets go of it, its entries durable) or [`Storage::end_shared_group`] lets go without
    /// writing. An error says whether the engine can go on (a wait for the lock that timed out:
    /// nothing was begun) or not (the log must then be reopened).
    fn begin_shared_group(&self) -> Result<(), GroupRefused> {
        Ok(())
    }

    /// Shared engines only: lets go of the lock [`Storage::begin_shared_group`] took, writing
    /// nothing. An error means the engine cannot tell whether it still holds it.
    fn end_shared_group(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Shared engines only: calls `wake` whenever another process may have committed (when it
    /// says so, and at least every second in case a message was missed), for as long as the
    /// storage lives.
    fn watch(&self, wake: Box<dyn Fn() + Send + Sync>) {
        drop(wake);
    }
}

/// Everything in memory; `sync` does nothing. Nothing survives the process.
#[derive(Default)]
pub struct MemoryStorage {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is
        // a plain insert or read), so a poisoned lock is still safe to use.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for MemoryStorage {
    fn write(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let mut map = self.map();
        for (key, value) in entries {
            map.insert(key, value);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        let mut map = self.map();
        for key in keys {
            map.remove(&key);
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let map = self.map();
        let range = map.range::<[u8], _>((
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        ));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            range.rev().take(limit).map(clone).collect()
        } else {
            range.take(limit).map(clone).collect()
        })
    }
}

/// sled 0.34.7, used the way its known pitfalls require.
///
/// - `Db::flush` ends in `sync_file_range`, which persists neither the file's length nor the
///   drive's write cache (sled issues #1351, #1077), so [`Storage::sync`] also calls `sync_data`
///   on sled's data file through a handle of our own.
/// - a log message larger than a quarter of sled's segment goes to a file of its own under
///   `blobs/`, which sled never fsyncs, whose failed write it never rolls back, and whose loss in
///   a power cut it silently skips (`blob_io`). So sled must never write one: segments are
///   [`SEGMENT_BYTES`] (sled's largest), and an event's payload is capped
///   ([`crate::limits::MAX_PAYLOAD_BYTES`]) so that even a whole leaf of the largest records
///   (sled splits a leaf past 16 entries) is well below a quarter of a segment. As a last
///   defence, `sync` still fsyncs any blob file that is new or changed, and then the folder.
/// - batches and transactions serialise on a process-wide lock (#1452), so the log has one writer
///   that batches everyone's appends (see `crate::writer`) instead of concurrent batches.
/// - `generate_id` can jump or repeat after recovery (#654): positions come from the last key.
/// - `watch_prefix` fires before data is durable and blocks writers when a watcher lags (#1152):
///   the log broadcasts its own events after the sync instead.
/// - everything lives in one tree under key prefixes, and the page cache has an explicit size.
pub struct SledStorage {
    _db: sled::Db,
    tree: sled::Tree,
    data_file: File,
    dir: PathBuf,
    synced_blobs: Mutex<SyncedBlobs>,
}

/// Blob files already fsynced, with the length they had then.
type SyncedBlobs = HashMap<std::ffi::OsString, u64>;

impl SledStorage {
    /// Opens (or creates) a sled database in `dir` with a page cache of `cache_capacity` bytes.
    ///
    /// Callers hold the directory lock (see `crate::EventLog::open`), so sled's own lock never
    /// blocks here.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self, StorageError> {
        let db = open_sled(dir, cache_capacity)?;
        let tree = db
            .open_tree("eventlog")
            .map_err(|e| StorageError::new("open", e))?;
        let data_file = File::open(dir.join("db")).map_err(|e| StorageError::new("open", e))?;
        // The files sled just created must survive a power cut too.
        sync_dir(dir)?;
        Ok(Self {
            _db: db,
            tree,
            data_file,
            dir: dir.to_owned(),
            synced_blobs: Mutex::new(SyncedBlobs::default()),
        })
    }

    /// The sled tree holding the log, for tools that measure sled itself.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    fn sync_new_blobs(&self) -> Result<(), StorageError> {
        let blobs = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            // No folder, no blob files in it to make durable.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(StorageError::new("sync", e)),
        };
        // Only the syncer calls sync; a poisoned map just means we may fsync a blob twice.
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashMap::new();
        let mut any_new = false;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::new("sync", e))?;
            let name = entry.file_name();
            // The writer may be writing a blob of the next group right now: a blob is synced
            // again whenever its length differs from when it was last synced.
            let file = match File::open(entry.path()) {
                Ok(file) => file,
                // sled removed it meanwhile: nothing to make durable.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::new("sync", e)),
            };
            let len = file
                .metadata()
                .map_err(|e| StorageError::new("sync", e))?
                .len();
            if synced.get(&name) != Some(&len) {
                file.sync_data().map_err(|e| StorageError::new("sync", e))?;
                any_new = true;
            }
            seen.insert(name, len);
        }
        if any_new {
            sync_dir(&blobs)?;
        }
        // Forget blobs sled has garbage-collected, so the map stays small.
        *synced = seen;
        Ok(())
    }
}

/// Opens (or creates) a sled database in `dir` with a page cache of `cache_capacity` bytes.
///
/// sled's background threads hold its file (and its lock) a little while after the last handle
/// of a database is dropped, so reopening within the same process can briefly find sled's lock
/// taken; this waits that out (up to 10 s). Callers must rule out another process themselves,
/// as [`crate::EventLog::open`] does with its `LOCK` file.
pub fn open_sled(dir: &Path, cache_capacity: u64) -> Result<sled::Db, StorageError> {
    // sled refuses another segment size than the one a database was created with.
    let segment = persisted_segment_size(dir).unwrap_or(SEGMENT_BYTES);
    if segment < SEGMENT_BYTES {
        tracing::warn!(
            dir = %dir.display(),
            segment,
            "this database was created with small segments: records over a quarter of one go to unsynced blob files; move the data to a new directory (naast backup and restore) to end that"
        );
    }
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_capacity)
        .segment_size(segment);
    let started = std::time::Instant::now();
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(StorageError::new("open", e)),
        }
    }
}

/// sled's segment size for new databases: its largest (16 MiB), so that messages up to 4 MiB stay
/// in its log instead of going to blob files.
pub const SEGMENT_BYTES: usize = 16 * 1024 * 1024;

/// The segment size sled recorded for the database in `dir` (its `conf` file), if it has one.
fn persisted_segment_size(dir: &Path) -> Option<usize> {
    // Text lines followed by four bytes of CRC, which need not be UTF-8.
    let bytes = std::fs::read(dir.join("conf")).ok()?;
    let conf = String::from_utf8_lossy(&bytes);
    conf.lines()
        .find_map(|line| line.strip_prefix("segment_size:"))
        .and_then(|size| size.trim().parse().ok())
}

/// An entry of a sled store as a backup copies it: the tree's name, the key and the value.
pub type TreeEntry = (String, Vec<u8>, Vec<u8>);

/// Every entry of `tree`, for a backup of a store beside the log (each entry as it is at the
/// moment it is read).
pub fn tree_entries(tree: &sled::Tree) -> Result<Vec<TreeEntry>, StorageError> {
    let name = String::from_utf8_lossy(&tree.name()).into_owned();
    tree.iter()
        .map(|item| {
            item.map(|(key, value)| (name.clone(), key.to_vec(), value.to_vec()))
                .map_err(|e| StorageError::new("read", e))
        })
        .collect()
}

/// Writes `entries` (see [`tree_entries`]) into a new sled store in `dir`, which must hold none
/// of its trees' entries yet, and makes them durable: the restore of such a store.
pub fn restore_trees(dir: &Path, entries: &[TreeEntry]) -> Result<(), StorageError> {
    let db = open_sled(dir, 16 * 1024 * 1024)?;
    let mut trees: BTreeMap<&str, sled::Batch> = BTreeMap::new();
    for (tree, key, value) in entries {
        trees
            .entry(tree.as_str())
            .or_default()
            .insert(key.as_slice(), value.as_slice());
    }
    for (name, batch) in trees {
        let tree = db
            .open_tree(name)
            .map_err(|e| StorageError::new("open", e))?;
        if !tree.is_empty() {
            return Err(StorageError::new(
                "restore",
                format!("{}: tree {name} holds entries already", dir.display()),
            ));
        }
        tree.apply_batch(batch)
            .map_err(|e| StorageError::new("write", e))?;
    }
    db.flush().map_err(|e| StorageError::new("sync", e))?;
    sync_dir(dir)
}

/// Makes the entries of directory `dir` (files made, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::new("sync", e))
}

impl Storage for SledStorage {
    fn write(&self, entries: Vec<Entry>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for (key, value) in entries {
            batch.insert(key, value);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageError::new("write", e))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.tree
            .flush()
            .map_err(|e| StorageError::new("sync", e))?;
        self.data_file
            .sync_data()
            .map_err(|e| StorageError::new("sync", e))?;
        self.sync_new_blobs()
    }

    fn remove(&self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(key);
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| StorageError::new("write", e))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.tree
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StorageError::new("read", e))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::new();
        self.scan_each(start, end, reverse, limit, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            true
        })?;
        Ok(entries)
    }

    fn scan_each(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        if start >= end {
            return Ok(());
        }
        let range = self.tree.range(start..end);
        let items: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        for item in items.take(limit) {
            let (key, value) = item.map_err(|e| StorageError::new("read", e))?;
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}
