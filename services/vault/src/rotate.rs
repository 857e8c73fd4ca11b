//! The master key: a check that the right one is given, and its rotation.
//!
//! The key folder holds `master.check`, a constant sealed with the master key, so a wrong key is
//! refused when the store opens (not at the first household read). A store from before the
//! check had one gets it on its first open, after the key given has opened one household's key.
//!
//! Rotation rewraps every household's data key under a new master key, the service stopped,
//! crash-safe at every step:
//! 1. `rotation.pending` is written (durably), holding the new key's check: from then on the
//!    store refuses to open, so no service runs on keys under two master keys;
//! 2. each key file not yet under the new key is replaced whole (written, synced, renamed);
//!    one already under it is left (a rotation run again after a crash resumes);
//! 3. the folder is synced, `master.check` becomes the new key's, the folder is synced;
//! 4. `rotation.pending` is removed and the folder synced: the store opens with the new key
//!    only.
//!
//! A crash anywhere leaves either the old state (before 1) or a pending rotation that the same
//! command, run again with the same two keys, finishes.

use super::{
    MasterKey, VaultError, households_in, key_path, open_bytes, seal_bytes, sync_dir, unwrap, wrap,
    write_file,
};
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;
use std::path::Path;

pub(crate) const CHECK_FILE: &str = "master.check";
const PENDING_FILE: &str = "rotation.pending";
const CHECK_CONTEXT: &[u8] = b"naast master key check v1";

/// What a rotation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotated {
    /// Household keys rewrapped under the new master key.
    pub rewrapped: usize,
    /// Household keys already under it (a rotation resumed after a crash).
    pub already: usize,
}

/// Where a rotation can be stopped, for the tests of its crash safety.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Before rewrapping the household key with this index.
    Key(usize),
    /// After the check file changed, before the pending mark is removed.
    Finish,
}

/// Refuses a store with a pending rotation or locked with another master key; gives a store
/// without a check file one (after `master` opened one of its household keys, if any).
pub(crate) fn check_on_open(dir: &Path, master: &MasterKey) -> Result<(), VaultError> {
    if dir.join(PENDING_FILE).exists() {
        return Err(VaultError::RotationUnfinished);
    }
    if !opens_store(dir, master)? {
        return Err(VaultError::WrongMasterKey);
    }
    if !dir.join(CHECK_FILE).exists() {
        write_file(&dir.join(CHECK_FILE), &check_value(master)?)?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// As [`check_on_open`], for the keys' table in PostgreSQL: the check row, or (none yet) the
/// first household's key, must open with `master`; the check is stored when missing.
pub(crate) fn check_on_open_table(
    table: &crate::postgres::KeyTable,
    master: &MasterKey,
) -> Result<(), VaultError> {
    let opens = match table.check()? {
        Some(check) => checks(master, &check),
        None => match table.all()?.into_iter().next() {
            Some((household, wrapped)) => {
                unwrap(&ChaCha20Poly1305::new(&master.0), household, &wrapped).is_ok()
            }
            None => true,
        },
    };
    if !opens {
        return Err(VaultError::WrongMasterKey);
    }
    table.set_check(check_value(master)?)?;
    // Another process may have stored its check first: it must be this key's.
    match table.check()? {
        Some(check) if checks(master, &check) => Ok(()),
        _ => Err(VaultError::WrongMasterKey),
    }
}

/// Rewraps every household key in `dir` from `old` to `new` (see the module's steps); run again
/// with the same keys after a crash, it finishes what was begun.
pub fn rotate_master_key(
    dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Rotated, VaultError> {
    rotate_stopping(dir, old, new, &mut |_| Ok(()))
}

/// [`rotate_master_key`], calling `stop` at each step (an error there ends the rotation as a
/// crash would).
pub(crate) fn rotate_stopping(
    dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
    stop: &mut dyn FnMut(Step) -> Result<(), VaultError>,
) -> Result<Rotated, VaultError> {
    if old.0 == new.0 {
        return Err(VaultError::MasterKey(
            "the new master key is the one in use".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|source| VaultError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let pending = dir.join(PENDING_FILE);
    match read_optional(&pending)? {
        Some(bytes) if !checks(new, &bytes) => return Err(VaultError::RotatingToAnotherKey),
        // Resumed: the check file is the old key's, or already the new one's.
        Some(_) => {
            if !opens_store(dir, old)? && !opens_store(dir, new)? {
                return Err(VaultError::WrongMasterKey);
            }
        }
        None => {
            if !opens_store(dir, old)? {
                return Err(VaultError::WrongMasterKey);
            }
            write_file(&pending, &check_value(new)?)?;
            sync_dir(dir)?;
        }
    }
    let (old_cipher, new_cipher) = (ChaCha20Poly1305::new(&old.0), ChaCha20Poly1305::new(&new.0));
    let mut done = Rotated::default();
    let mut households = households_in(dir)?;
    households.sort();
    for (index, household) in households.into_iter().enumerate() {
        stop(Step::Key(index))?;
        let path = key_path(dir, household);
        let wrapped = std::fs::read(&path).map_err(|source| VaultError::Io {
            path: path.clone(),
            source,
        })?;
        if unwrap(&new_cipher, household, &wrapped).is_ok() {
            done.already += 1;
            continue;
        }
        let key = unwrap(&old_cipher, household, &wrapped)?;
        write_file(&path, &wrap(&new_cipher, household, &key)?)?;
        done.rewrapped += 1;
    }
    sync_dir(dir)?;
    write_file(&dir.join(CHECK_FILE), &check_value(new)?)?;
    sync_dir(dir)?;
    stop(Step::Finish)?;
    std::fs::remove_file(&pending).map_err(|source| VaultError::Io {
        path: pending.clone(),
        source,
    })?;
    sync_dir(dir)?;
    Ok(done)
}

/// Whether `master` is the store's key: its check file opens with it, or (no check file yet) a
/// household key does, or there is none to tell.
fn opens_store(dir: &Path, master: &MasterKey) -> Result<bool, VaultError> {
    if let Some(bytes) = read_optional(&dir.join(CHECK_FILE))? {
        return Ok(checks(master, &bytes));
    }
    let Some(household) = households_in(dir)?.into_iter().min() else {
        return Ok(true);
    };
    let path = key_path(dir, household);
    let wrapped = std::fs::read(&path).map_err(|source| VaultError::Io { path, source })?;
    Ok(unwrap(&ChaCha20Poly1305::new(&master.0), household, &wrapped).is_ok())
}

/// The master key check's bytes in key folder `dir`, if it has one.
pub(crate) fn check_file(dir: &Path) -> Result<Option<Vec<u8>>, VaultError> {
    read_optional(&dir.join(CHECK_FILE))
}

/// The bytes of `path`, or `None` when there is no such file.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, VaultError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VaultError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The check of `master`: the check context sealed with it.
pub(crate) fn check_value(master: &MasterKey) -> Result<Vec<u8>, VaultError> {
    seal_bytes(
        &ChaCha20Poly1305::new(&master.0),
        &[],
        CHECK_CONTEXT,
        CHECK_CONTEXT,
        "sealing the master key check",
    )
}

pub(crate) fn checks(master: &MasterKey, bytes: &[u8]) -> bool {
    open_bytes(&ChaCha20Poly1305::new(&master.0), CHECK_CONTEXT, bytes)
        .is_some_and(|plain| plain == CHECK_CONTEXT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check
    use super::*;
    use crate::Vault;
    use uuid::Uuid;

    fn master() -> MasterKey {
        MasterKey::from_base64(&MasterKey::generate_base64()).unwrap()
    }

    /// Five households' payloads sealed under `key` in `dir`.
    fn sealed(dir: &Path, key: &MasterKey) -> Vec<(Uuid, Uuid, Vec<u8>)> {
        let vault = Vault::open(dir, key).unwrap();
        (0..5)
            .map(|i| {
                let (h, e) = (Uuid::now_v7(), Uuid::now_v7());
                let text = format!("{{\"n\":{i}}}");
                (h, e, vault.seal(h, e, text.as_bytes()).unwrap())
            })
            .collect()
    }

    fn all_open(dir: &Path, key: &MasterKey, payloads: &[(Uuid, Uuid, Vec<u8>)]) {
        let vault = Vault::open(dir, key).unwrap();
        for (i, (h, e, payload)) in payloads.iter().enumerate() {
            assert_eq!(
                &*vault.open_payload(*h, *e, payload).unwrap(),
                format!("{{\"n\":{i}}}").as_bytes()
            );
        }
    }

    #[test]
    fn a_rotated_store_opens_with_the_new_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (master(), master());
        let payloads = sealed(dir.path(), &old);
        assert_eq!(
            rotate_master_key(dir.path(), &old, &new).unwrap(),
            Rotated {
                rewrapped: 5,
                already: 0
            }
        );
        all_open(dir.path(), &new, &payloads);
        assert!(matches!(
            Vault::open(dir.path(), &old),
            Err(VaultError::WrongMasterKey)
        ));
        // A wrong old key, or the same key twice, changes nothing.
        assert!(matches!(
            rotate_master_key(dir.path(), &master(), &old),
            Err(VaultError::WrongMasterKey)
        ));
        assert!(matches!(
            rotate_master_key(dir.path(), &new, &new),
            Err(VaultError::MasterKey(_))
        ));
        all_open(dir.path(), &new, &payloads);
    }

    #[test]
    fn a_rotation_stopped_at_any_step_is_refused_until_run_again_then_complete() {
        let steps = (0..5).map(Step::Key).chain([Step::Finish]);
        for at in steps {
            let dir = tempfile::tempdir().unwrap();
            let (old, new) = (master(), master());
            let payloads = sealed(dir.path(), &old);
            let stopped = rotate_stopping(dir.path(), &old, &new, &mut |step| {
                if step == at {
                    Err(VaultError::Poisoned("stopped".into()))
                } else {
                    Ok(())
                }
            });
            assert!(stopped.is_err(), "{at:?}");
            // Neither key opens a store under two keys.
            for key in [&old, &new] {
                assert!(
                    matches!(
                        Vault::open(dir.path(), key),
                        Err(VaultError::RotationUnfinished)
                    ),
                    "{at:?}"
                );
            }
            // Not resumed towards another key.
            assert!(matches!(
                rotate_master_key(dir.path(), &old, &master()),
                Err(VaultError::RotatingToAnotherKey)
            ));
            let resumed = rotate_master_key(dir.path(), &old, &new).unwrap();
            let before = match at {
                Step::Key(i) => i,
                Step::Finish => 5,
            };
            assert_eq!(
                resumed,
                Rotated {
                    rewrapped: 5 - before,
                    already: before
                },
                "{at:?}"
            );
            all_open(dir.path(), &new, &payloads);
        }
    }

    #[test]
    fn a_store_without_a_check_file_gets_one_only_for_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = master();
        let payloads = sealed(dir.path(), &key);
        std::fs::remove_file(dir.path().join(CHECK_FILE)).unwrap();
        assert!(matches!(
            Vault::open(dir.path(), &master()),
            Err(VaultError::WrongMasterKey)
        ));
        assert!(!dir.path().join(CHECK_FILE).exists());
        all_open(dir.path(), &key, &payloads);
        assert!(dir.path().join(CHECK_FILE).exists());
    }
}
