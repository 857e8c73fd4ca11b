//! Per-household data keys, so a household can be forgotten without breaking the event log.
//!
//! Every household has its own 256-bit data key. Event payloads of the household are sealed
//! with it (ChaCha20-Poly1305, a random 96-bit nonce per event, the household and event ids as
//! associated data, so a sealed payload cannot be moved to another event or household). The
//! event log hashes what it stores — the sealed bytes — so its chain still verifies after the key
//! is gone.
//!
//! Data keys are kept one file per household under `<dir>/`, each wrapped (sealed) with the
//! master key from the configuration; a key file is durable (written, synced, renamed, directory
//! synced) before the first payload sealed with it is. Erasing a household deletes its key file
//! and syncs the directory: its payloads can no longer be opened by anyone, the service included.
//! (Like any file deletion, this relies on the file system and disk not keeping old blocks
//! readable; the master key wrapping every data key is the second lock.)
//!
//! A payload that does not start with [`MAGIC`] is plaintext (JSON starts with `{`), so a log
//! written before encryption reads as before.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

mod postgres;
mod rotate;
pub use postgres::rotate_master_key_in_postgres;
pub use rotate::{Rotated, rotate_master_key};

/// The first bytes of a sealed payload: a zero byte (no JSON document starts with one) and a
/// version.
pub const MAGIC: &[u8; 4] = b"\0nv1";
const NONCE_BYTES: usize = 12;
/// Associated data of a wrapped data key.
const WRAP_CONTEXT: &[u8] = b"naast household data key v1";

/// Why a payload could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The household was erased: its key is gone, its payloads are unreadable for good.
    #[error("household {0} was erased")]
    Erased(Uuid),
    /// A sealed payload or a key file failed authentication: damaged, or sealed under another
    /// key.
    #[error("{what} does not authenticate: damaged, or sealed under another key")]
    Corrupt {
        /// What failed.
        what: String,
    },
    /// Reading or writing the keys' table in PostgreSQL failed.
    #[error("key store in PostgreSQL: {0}")]
    Database(String),
    /// Reading or writing a key file failed.
    #[error("key store {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A payload is sealed and there is no key store to open it with.
    #[error("the payload is sealed and no key store is configured")]
    NoVault,
    /// The master key is not 32 bytes (base64).
    #[error("the master key must be 32 bytes, given as base64: {0}")]
    MasterKey(String),
    /// The master key given is not the one the key store's keys are wrapped with.
    #[error(
        "the master key given is not the one this key store is locked with (its check file, or a household key, does not open with it)"
    )]
    WrongMasterKey,
    /// A rotation of the master key began and did not finish: nothing may use the store until
    /// it has (the keys are under two master keys meanwhile).
    #[error(
        "a master key rotation was interrupted: run `naast rotate-master-key` again with the same two keys to finish it"
    )]
    RotationUnfinished,
    /// A rotation to another new key was interrupted: that one must be finished first.
    #[error(
        "an interrupted master key rotation is under way to another new key: finish it with that key first"
    )]
    RotatingToAnotherKey,
    /// A change to the key folder could not be made durable: until the process restarts, the
    /// store serves only keys already in use, and makes or destroys none.
    #[error(
        "the key store could not make a change durable ({0}); it makes and destroys no key until restarted"
    )]
    Poisoned(String),
}

/// The master key that wraps every data key.
#[derive(Clone)]
pub struct MasterKey(Key);

impl MasterKey {
    /// A master key from its base64 text (standard alphabet, padding optional; surrounding
    /// whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, VaultError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|e| VaultError::MasterKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(VaultError::MasterKey(format!(
                "{} bytes given",
                bytes.len()
            )));
        }
        Ok(Self(*Key::from_slice(&bytes)))
    }

    /// A new random master key, as base64 (for `naast` to write a development key).
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(ChaCha20Poly1305::generate_key(&mut OsRng))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

/// The key store. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

/// Where the wrapped keys are kept.
enum Place {
    /// One file per household in a folder of the data directory.
    Folder(PathBuf),
    /// A table in the PostgreSQL database the event log is in (see `postgres`).
    Table(Box<postgres::KeyTable>),
}

struct Inner {
    place: Place,
    master: ChaCha20Poly1305,
    /// Data keys in use, and households known to be erased (`None`); at most
    /// [`MAX_CACHED_KEYS`], then it starts afresh (the files are the truth).
    keys: Mutex<HashMap<Uuid, Option<ChaCha20Poly1305>>>,
    /// Held while a key file is read, made (written and synced) or removed: these take turns,
    /// so one household never gets two keys and a key being read is never remembered after its
    /// erasure, while the keys in memory stay available to everyone else meanwhile.
    files: Mutex<()>,
    /// Set when the key folder could not be synced after a key was made or destroyed: whether
    /// that change survives a power cut is unknown, so no key that is not in use already may be
    /// used (a retry could seal data with a key a power cut takes away).
    poisoned: std::sync::OnceLock<String>,
    /// Test only: the next sync of the key folder fails (a disk fault cannot be caused here).
    #[cfg(test)]
    fail_next_dir_sync: std::sync::atomic::AtomicBool,
    /// Test only: called right after a key file was read, before the key is remembered (a
    /// thread cannot be stopped at that point otherwise).
    #[cfg(test)]
    after_file_read: Mutex<Option<Box<dyn Fn() + Send>>>,
}

/// Keys kept in memory; past this the memory starts afresh and keys are read again from their
/// files as needed.
pub const MAX_CACHED_KEYS: usize = 10_000;

impl Vault {
    /// The key store in `dir` (created if missing), unlocked by `master`.
    pub fn open(dir: &Path, master: &MasterKey) -> Result<Self, VaultError> {
        std::fs::create_dir_all(dir).map_err(|source| VaultError::Io {
            path: dir.to_owned(),
            source,
        })?;
        // The folder itself must survive a power cut (a lost folder reads as every household
        // erased), and so must every key in it, even one whose sync failed before a restart.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        sync_dir(dir)?;
        rotate::check_on_open(dir, master)?;
        Ok(Self::with_place(Place::Folder(dir.to_owned()), master))
    }

    /// The key store in the PostgreSQL database at `url` (its tables made if missing), unlocked
    /// by `master`: for an event log kept there, so every node serves every household.
    pub fn open_postgres(url: &str, master: &MasterKey) -> Result<Self, VaultError> {
        let table = postgres::KeyTable::open(url)?;
        rotate::check_on_open_table(&table, master)?;
        Ok(Self::with_place(Place::Table(Box::new(table)), master))
    }

    fn with_place(place: Place, master: &MasterKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                place,
                master: ChaCha20Poly1305::new(&master.0),
                keys: Mutex::default(),
                files: Mutex::default(),
                poisoned: std::sync::OnceLock::new(),
                #[cfg(test)]
                fail_next_dir_sync: std::sync::atomic::AtomicBool::new(false),
                #[cfg(test)]
                after_file_read: Mutex::default(),
            }),
        }
    }

    /// `plaintext`, the payload of event `event` of `household`, sealed with the household's
    /// key (created, durably, on first use).
    pub fn seal(
        &self,
        household: Uuid,
        event: Uuid,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.seal_with(household, event, plaintext, true)
    }

    /// As [`Vault::seal`], for data derived from a household's events (its read models): only
    /// with the key the household has, never a new one, so nothing of an erased household is
    /// written readable again (`Erased` then). `id` names what is sealed (bound to it as
    /// associated data, so a sealed value cannot be moved to another place).
    pub fn seal_derived(
        &self,
        household: Uuid,
        id: Uuid,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.seal_with(household, id, plaintext, false)
    }

    fn seal_with(
        &self,
        household: Uuid,
        event: Uuid,
        plaintext: &[u8],
        create: bool,
    ) -> Result<Vec<u8>, VaultError> {
        let cipher = self.key(household, create)?;
        seal_bytes(
            &cipher,
            MAGIC,
            &associated(household, event),
            plaintext,
            "sealing",
        )
    }

    /// The plaintext of `payload` of event `event` of `household`: itself when it was never
    /// sealed, else opened with the household's key.
    pub fn open_payload<'a>(
        &self,
        household: Uuid,
        event: Uuid,
        payload: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, VaultError> {
        let Some(rest) = payload.strip_prefix(MAGIC.as_slice()) else {
            return Ok(Cow::Borrowed(payload));
        };
        let corrupt = || VaultError::Corrupt {
            what: format!("the payload of event {event}"),
        };
        // Too short to be sealed: damaged, whether or not the key is still there.
        if rest.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let cipher = self.key(household, false)?;
        open_bytes(&cipher, &associated(household, event), rest)
            .map(Cow::Owned)
            .ok_or_else(corrupt)
    }

    /// Whether `payload` is sealed.
    pub fn is_sealed(payload: &[u8]) -> bool {
        payload.starts_with(MAGIC)
    }

    /// [`Vault::open_payload`] with `vault` when there is one; without one, plaintext reads as
    /// it is and a sealed payload is [`VaultError::NoVault`].
    pub fn open_with<'a>(
        vault: Option<&Self>,
        household: Uuid,
        event: Uuid,
        payload: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, VaultError> {
        match vault {
            Some(vault) => vault.open_payload(household, event, payload),
            None if Self::is_sealed(payload) => Err(VaultError::NoVault),
            None => Ok(Cow::Borrowed(payload)),
        }
    }

    /// Destroys the household's key, durably: its sealed payloads can never be opened again.
    /// Erasing a household without a key (or twice) does nothing more.
    pub fn erase(&self, household: Uuid) -> Result<(), VaultError> {
        let _files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(reason) = self.inner.poisoned.get() {
            return Err(VaultError::Poisoned(reason.clone()));
        }
        let dir = match &self.inner.place {
            Place::Folder(dir) => dir,
            Place::Table(table) => {
                // Forgotten here at once, whatever the database answers.
                self.remember(household, None);
                return table.erase(household);
            }
        };
        let path = key_path(dir, household);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(VaultError::Io { path, source }),
        }
        // Forgotten here at once, whatever the disk does next.
        self.remember(household, None);
        self.sync_keys_dir()?;
        Ok(())
    }

    /// Takes `wrapped`, household `household`'s key as a key folder kept it (wrapped with this
    /// store's master key), into this store's table in PostgreSQL, durably: `true` when it was
    /// not there yet. Refused when the key does not open with the master key, when this store
    /// is a folder, and when the table holds another key for the household or has it erased.
    pub fn adopt_key(&self, household: Uuid, wrapped: &[u8]) -> Result<bool, VaultError> {
        let Place::Table(table) = &self.inner.place else {
            return Err(VaultError::Database(
                "keys are taken into a store in PostgreSQL only".into(),
            ));
        };
        self.unwrap_key(household, wrapped)?;
        if let Some(stored) = table.read(household)? {
            return if stored == wrapped {
                Ok(false)
            } else {
                Err(VaultError::Corrupt {
                    what: format!(
                        "the key of household {household}: the database holds another one"
                    ),
                })
            };
        }
        let stored = table.create(household, wrapped.to_vec())?;
        if stored != wrapped {
            return Err(VaultError::Corrupt {
                what: format!("the key of household {household}: the database holds another one"),
            });
        }
        Ok(true)
    }

    /// The households that have a key file.
    pub fn households(&self) -> Result<Vec<Uuid>, VaultError> {
        match &self.inner.place {
            Place::Folder(dir) => households_in(dir),
            Place::Table(table) => table.households(),
        }
    }

    /// What a backup copies of the key folder: each household's wrapped key and the master key
    /// check, by file name; the master key itself is never among them. Read without holding up
    /// key making: a key file is written whole before it is renamed into place, so none is
    /// copied half written, and one erased meanwhile is simply not there.
    pub fn backup_files(&self) -> Result<Vec<(String, Vec<u8>)>, VaultError> {
        let mut files = Vec::new();
        match &self.inner.place {
            Place::Folder(dir) => {
                for household in households_in(dir)? {
                    // Erased meanwhile: there is nothing to copy.
                    if let Some(bytes) = rotate::read_optional(&key_path(dir, household))? {
                        files.push((format!("{household}.key"), bytes));
                    }
                }
                if let Some(check) = rotate::check_file(dir)? {
                    files.push((rotate::CHECK_FILE.to_owned(), check));
                }
            }
            // The same files, from the table: a backup restores into a key folder.
            Place::Table(table) => {
                for (household, wrapped) in table.all()? {
                    files.push((format!("{household}.key"), wrapped));
                }
                if let Some(check) = table.check()? {
                    files.push((rotate::CHECK_FILE.to_owned(), check));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// The household's cipher; with `create`, made (durably) when there is none yet.
    fn key(&self, household: Uuid, create: bool) -> Result<ChaCha20Poly1305, VaultError> {
        if let Some(cipher) = self.known(household)? {
            return Ok(cipher);
        }
        // Read from its file or made without holding the keys in memory: a new key's two syncs
        // must not hold up every other household's sealing and opening.
        let _files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(cipher) = self.known(household)? {
            return Ok(cipher); // read or made while this call waited
        }
        let dir = match &self.inner.place {
            Place::Folder(dir) => dir,
            Place::Table(table) => {
                let cipher = match table.read(household)? {
                    Some(wrapped) => self.unwrap_key(household, &wrapped)?,
                    // Not remembered: another node may make the key later (only an erasure
                    // is remembered, and the table refuses a key to an erased household).
                    None if !create => return Err(VaultError::Erased(household)),
                    None => {
                        let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                        let wrapped = wrap(&self.inner.master, household, &key)?;
                        // Another node's key when it made one first.
                        let stored = table.create(household, wrapped)?;
                        self.unwrap_key(household, &stored)?
                    }
                };
                self.remember(household, Some(cipher.clone()));
                return Ok(cipher);
            }
        };
        let path = key_path(dir, household);
        let cipher = match std::fs::read(&path) {
            Ok(wrapped) => {
                #[cfg(test)]
                if let Some(hook) = &*self
                    .inner
                    .after_file_read
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                {
                    hook();
                }
                self.unwrap_key(household, &wrapped)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !create {
                    self.remember(household, None);
                    return Err(VaultError::Erased(household));
                }
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                write_file(&path, &wrap(&self.inner.master, household, &key)?)?;
                // Not durable until the folder is synced: the key is used only then.
                self.sync_keys_dir()?;
                ChaCha20Poly1305::new(&key)
            }
            Err(source) => return Err(VaultError::Io { path, source }),
        };
        self.remember(household, Some(cipher.clone()));
        Ok(cipher)
    }

    /// The household's key if it is in memory; `Erased` if it is known to be gone. A poisoned
    /// store gives no key that is not in memory already.
    fn known(&self, household: Uuid) -> Result<Option<ChaCha20Poly1305>, VaultError> {
        let keys = self
            .inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(Some(cipher)) = keys.get(&household) {
            return Ok(Some(cipher.clone()));
        }
        if let Some(reason) = self.inner.poisoned.get() {
            return Err(VaultError::Poisoned(reason.clone()));
        }
        Ok(None)
    }

    /// Keeps what is known of the household's key in memory.
    fn remember(&self, household: Uuid, cipher: Option<ChaCha20Poly1305>) {
        let mut keys = self
            .inner
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(household, cipher);
    }

    /// Syncs the key folder; a failure poisons the store (see [`Inner::poisoned`]).
    fn sync_keys_dir(&self) -> Result<(), VaultError> {
        let Place::Folder(dir) = &self.inner.place else {
            return Ok(()); // a table's changes are durable when committed
        };
        #[cfg(test)]
        let synced = if self
            .inner
            .fail_next_dir_sync
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            Err(VaultError::Io {
                path: dir.clone(),
                source: std::io::Error::other("injected fault"),
            })
        } else {
            sync_dir(dir)
        };
        #[cfg(not(test))]
        let synced = sync_dir(dir);
        synced.inspect_err(|e| {
            let _ = self.inner.poisoned.set(e.to_string());
        })
    }

    fn unwrap_key(&self, household: Uuid, wrapped: &[u8]) -> Result<ChaCha20Poly1305, VaultError> {
        let key = unwrap(&self.inner.master, household, wrapped)?;
        Ok(ChaCha20Poly1305::new(&key))
    }
}

/// The cipher of a master key.
fn cipher(master: &MasterKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&master.0)
}

/// The household's data key `key` wrapped with `master`: a random nonce, then the sealed key,
/// bound to the household.
fn wrap(master: &ChaCha20Poly1305, household: Uuid, key: &Key) -> Result<Vec<u8>, VaultError> {
    seal_bytes(master, &[], &wrap_context(household), key, "wrapping a key")
}

/// The household's data key from its file's bytes, unwrapped with `master`.
fn unwrap(master: &ChaCha20Poly1305, household: Uuid, wrapped: &[u8]) -> Result<Key, VaultError> {
    open_bytes(master, &wrap_context(household), wrapped)
        .filter(|key| key.len() == 32)
        .map(|key| *Key::from_slice(&key))
        .ok_or_else(|| VaultError::Corrupt {
            what: format!("the key of household {household}"),
        })
}

/// `prefix`, then a fresh random nonce, then `msg` sealed with `cipher` under it, bound to
/// `aad`: every sealed thing the store writes (payloads, wrapped keys, the master key check).
/// `what` names it should sealing fail (it cannot for messages of these sizes).
fn seal_bytes(
    cipher: &ChaCha20Poly1305,
    prefix: &[u8],
    aad: &[u8],
    msg: &[u8],
    what: &str,
) -> Result<Vec<u8>, VaultError> {
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg, aad })
        .map_err(|_| VaultError::Corrupt { what: what.into() })?;
    let mut out = Vec::with_capacity(prefix.len() + NONCE_BYTES + sealed.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// What [`seal_bytes`] sealed (after its prefix); `None` when it does not authenticate with
/// `cipher` and `aad` (damaged, or sealed under another key or for another place).
fn open_bytes(cipher: &ChaCha20Poly1305, aad: &[u8], bytes: &[u8]) -> Option<Vec<u8>> {
    let (nonce, sealed) = bytes.split_at_checked(NONCE_BYTES)?;
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
        .ok()
}

/// The households that have a key file in `dir`.
fn households_in(dir: &Path) -> Result<Vec<Uuid>, VaultError> {
    let io = |source| VaultError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".key"))
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            found.push(id);
        }
    }
    Ok(found)
}

/// Writes the files of a backup's key folder (see [`Vault::backup_files`]) into `dir`, which
/// must hold no keys yet, each durably. Only household key files and the master key check are
/// accepted, by name: a backup cannot write anywhere else.
pub fn restore_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), VaultError> {
    std::fs::create_dir_all(dir).map_err(|source| VaultError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if !households_in(dir)?.is_empty() || dir.join(rotate::CHECK_FILE).exists() {
        return Err(VaultError::Corrupt {
            what: format!("key folder {}: it holds keys already", dir.display()),
        });
    }
    for (name, bytes) in files {
        backup_file(name)?;
        write_file(&dir.join(name), bytes)?;
    }
    sync_dir(dir)
}

/// What a file of a backup's key folder is: a household's key (`Some`) or the master key check
/// (`None`); any other name is refused.
fn backup_file(name: &str) -> Result<Option<Uuid>, VaultError> {
    if name == rotate::CHECK_FILE {
        return Ok(None);
    }
    name.strip_suffix(".key")
        .and_then(|id| Uuid::parse_str(id).ok())
        .filter(|id| format!("{id}.key") == name)
        .map(Some)
        .ok_or_else(|| VaultError::Corrupt {
            what: format!("the backup's key folder holds {name:?}, which is no key file"),
        })
}

/// Writes the files of a backup's key folder (see [`Vault::backup_files`]) into the keys' table
/// of the PostgreSQL database at `url`, which must hold no keys, no master key check and no
/// erased household yet, in one durable transaction: a restore into PostgreSQL. The keys stay
/// wrapped as they were; the first node to open them checks the master key against the check.
pub fn restore_into_postgres(url: &str, files: &[(String, Vec<u8>)]) -> Result<(), VaultError> {
    let mut keys = Vec::new();
    let mut check = None;
    for (name, bytes) in files {
        match backup_file(name)? {
            Some(household) => keys.push((household, bytes.clone())),
            None => check = Some(bytes.clone()),
        }
    }
    postgres::KeyTable::open(url)?.restore(keys, check)
}

fn key_path(dir: &Path, household: Uuid) -> PathBuf {
    dir.join(format!("{household}.key"))
}

fn associated(household: Uuid, event: Uuid) -> [u8; 32] {
    let mut aad = [0; 32];
    aad[..16].copy_from_slice(household.as_bytes());
    aad[16..].copy_from_slice(event.as_bytes());
    aad
}

fn wrap_context(household: Uuid) -> Vec<u8> {
    let mut aad = WRAP_CONTEXT.to_vec();
    aad.extend_from_slice(household.as_bytes());
    aad
}

/// Writes `bytes` to `path` so that after a crash it is either absent or complete.
/// Writes `bytes` to a new file that replaces `path` whole (written, synced, then renamed into
/// place); durable once the folder is synced.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let io = |source| VaultError::Io {
        path: path.to_owned(),
        source,
    };
    let temporary = path.with_extension("key.new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| VaultError::Io {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
    }

    #[test]
    fn sealed_payloads_open_only_for_their_event_until_erased() {
        let dir = tempfile::tempdir().unwrap();
        let key = master();
        let vault = Vault::open(dir.path(), &key).unwrap();
        let (h, e) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = vault.seal(h, e, b"{\"type\":\"NoteAdded\"}").unwrap();
        assert!(Vault::is_sealed(&sealed));
        assert!(!sealed.windows(7).any(|w| w == b"NoteAdd"), "no plaintext");
        assert_eq!(
            &*vault.open_payload(h, e, &sealed).unwrap(),
            b"{\"type\":\"NoteAdded\"}"
        );
        // Plaintext (written before encryption) reads as it is, with or without a key store;
        // without one, a sealed payload is refused.
        assert_eq!(&*vault.open_payload(h, e, b"{}").unwrap(), b"{}");
        assert_eq!(&*Vault::open_with(None, h, e, b"{}").unwrap(), b"{}");
        assert!(matches!(
            Vault::open_with(None, h, e, &sealed),
            Err(VaultError::NoVault)
        ));
        // Bound to its event and household.
        assert!(matches!(
            vault.open_payload(h, Uuid::now_v7(), &sealed),
            Err(VaultError::Corrupt { .. })
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            vault.open_payload(h, e, &flipped),
            Err(VaultError::Corrupt { .. })
        ));
        // The key survives a restart, and needs the same master key.
        let reopened = Vault::open(dir.path(), &key).unwrap();
        assert!(reopened.open_payload(h, e, &sealed).is_ok());
        assert!(matches!(
            Vault::open(dir.path(), &master()),
            Err(VaultError::WrongMasterKey)
        ));
        // Erased: gone for this vault and any later one.
        vault.erase(h).unwrap();
        assert!(matches!(
            vault.open_payload(h, e, &sealed),
            Err(VaultError::Erased(_))
        ));
        let after = Vault::open(dir.path(), &key).unwrap();
        assert!(matches!(
            after.open_payload(h, e, &sealed),
            Err(VaultError::Erased(_))
        ));
        assert_eq!(
            households_in(dir.path()).unwrap(),
            Vec::<Uuid>::new(),
            "no key file left"
        );
    }

    #[test]
    fn a_key_read_while_it_is_erased_is_not_remembered_after_the_erasure() {
        // A key is read from its file without holding the keys in memory; an erasure that comes
        // while it is read must still win. The reader stops right after reading the file, for
        // long enough that an erasure not made to wait would run in between.
        let dir = tempfile::tempdir().unwrap();
        let key = master();
        let (h, e) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = Vault::open(dir.path(), &key)
            .unwrap()
            .seal(h, e, b"{}")
            .unwrap();
        let cold = Vault::open(dir.path(), &key).unwrap();
        let (read, was_read) = std::sync::mpsc::channel::<()>();
        let read = Mutex::new(read);
        *cold.inner.after_file_read.lock().unwrap() = Some(Box::new(move || {
            let _ = read.lock().unwrap().send(());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }));
        let reader = {
            let (cold, sealed) = (cold.clone(), sealed.clone());
            std::thread::spawn(move || cold.open_payload(h, e, &sealed).is_ok())
        };
        was_read.recv().unwrap();
        cold.erase(h).unwrap();
        assert!(reader.join().unwrap(), "read before the erasure");
        assert!(
            matches!(cold.open_payload(h, e, &sealed), Err(VaultError::Erased(_))),
            "an erased household's key came back"
        );
    }

    #[test]
    fn new_keys_made_at_once_are_one_per_household_and_all_durable() {
        // Many households' first commands at once, and several at once for one household: one
        // key each, and what was sealed opens again after a restart.
        let dir = tempfile::tempdir().unwrap();
        let key = master();
        let vault = Vault::open(dir.path(), &key).unwrap();
        let households: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
        let sealed: Vec<(Uuid, Uuid, Vec<u8>)> = std::thread::scope(|scope| {
            let tasks: Vec<_> = (0..32)
                .map(|i| {
                    let (vault, h) = (vault.clone(), households[i % households.len()]);
                    scope.spawn(move || {
                        let e = Uuid::now_v7();
                        (h, e, vault.seal(h, e, b"{\"n\":1}").unwrap())
                    })
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut held = vault.households().unwrap();
        held.sort();
        let mut expected = households.clone();
        expected.sort();
        assert_eq!(held, expected);
        let reopened = Vault::open(dir.path(), &key).unwrap();
        for (h, e, payload) in &sealed {
            assert_eq!(
                &*reopened.open_payload(*h, *e, payload).unwrap(),
                b"{\"n\":1}"
            );
        }
    }

    proptest::proptest! {
        /// Any bytes in a household's key file, or in a sealed payload after its mark: an error
        /// saying what is damaged, never a panic and never a payload opened.
        #[test]
        fn damaged_key_files_and_payloads_are_refused_never_a_panic(
            key_file in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let vault = Vault::open(dir.path(), &master()).unwrap();
            let (household, event) = (Uuid::now_v7(), Uuid::now_v7());
            std::fs::write(key_path(dir.path(), household), &key_file).unwrap();
            let mut sealed = MAGIC.to_vec();
            sealed.extend_from_slice(&payload);
            let opened = vault.open_payload(household, event, &sealed);
            proptest::prop_assert!(matches!(opened, Err(VaultError::Corrupt { .. })), "{:?}", opened);
            let made = vault.seal(household, event, b"x");
            proptest::prop_assert!(matches!(made, Err(VaultError::Corrupt { .. })), "{:?}", made);
            // With a good key, damaged payloads are refused all the same.
            let good = Uuid::now_v7();
            vault.seal(good, event, b"x").unwrap();
            proptest::prop_assert!(vault.open_payload(good, event, &sealed).is_err());
        }
    }

    #[test]
    fn a_master_key_is_32_bytes_of_base64() {
        assert!(MasterKey::from_base64(&MasterKey::generate_base64()).is_ok());
        assert!(matches!(
            MasterKey::from_base64("c2hvcnQ="),
            Err(VaultError::MasterKey(_))
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(VaultError::MasterKey(_))
        ));
    }

    #[test]
    fn a_key_folder_that_cannot_be_synced_stops_every_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = master();
        let vault = Vault::open(dir.path(), &key).unwrap();
        let (in_use, new) = (Uuid::now_v7(), Uuid::now_v7());
        let first = Uuid::now_v7();
        let sealed = vault.seal(in_use, first, b"al in gebruik").unwrap();

        // The folder sync after a new key fails: the key file may vanish in a power cut, so
        // nothing may be sealed with it, not even by a retry that finds the file on disk.
        vault
            .inner
            .fail_next_dir_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let event = Uuid::now_v7();
        assert!(matches!(
            vault.seal(new, event, b"x"),
            Err(VaultError::Io { .. })
        ));
        assert!(dir.path().join(format!("{new}.key")).exists());
        assert!(matches!(
            vault.seal(new, event, b"x"),
            Err(VaultError::Poisoned(_))
        ));
        // Erasures are refused too: one not made durable must not be reported done.
        assert!(matches!(vault.erase(in_use), Err(VaultError::Poisoned(_))));
        // Keys in use keep serving.
        assert!(vault.seal(in_use, Uuid::now_v7(), b"verder").is_ok());
        assert_eq!(
            vault.open_payload(in_use, first, &sealed).unwrap().as_ref(),
            b"al in gebruik"
        );
        drop(vault);

        // A restart syncs the folder as it is, and takes the key found there.
        let vault = Vault::open(dir.path(), &key).unwrap();
        assert!(vault.seal(new, event, b"x").is_ok());
    }

    #[test]
    fn an_erasure_whose_folder_sync_fails_is_not_reported_done() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path(), &master()).unwrap();
        let household = Uuid::now_v7();
        vault.seal(household, Uuid::now_v7(), b"x").unwrap();
        vault
            .inner
            .fail_next_dir_sync
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(vault.erase(household).is_err());
        // Forgotten in this process at once, whatever the disk keeps.
        assert!(matches!(
            vault.seal_derived(household, Uuid::now_v7(), b"x"),
            Err(VaultError::Poisoned(_) | VaultError::Erased(_))
        ));
    }
}
