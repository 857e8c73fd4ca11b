//! A data directory whose event log is in PostgreSQL but whose household keys and audit log
//! are still in the directory (as naast kept them before they moved into the database beside
//! the log): both are taken into the database at start, then removed from the directory.
//!
//! - **Keys**: each key file's wrapped key goes into the keys' table as it is (checked to open
//!   with the master key first), durably; then the files go. A key the table already holds is
//!   left; another key for the same household stops the start (it cannot be told which is right).
//! - **The audit log**: each year's partition is verified, and its records are appended to that
//!   year's table with their own ids, in order, a stream's run of records at a time, so a start
//!   cut short and run again appends nothing twice (a run whose last record is there is there
//!   whole). Their hash chain is the table's from then on. Then the year's directory goes.
//!
//! Start the first node on such a directory before any other node writes, so the records land
//! in their year's table in the order they were written.
//!
//! - **The push state** (what each platform was sent; the FHIR Subscriptions): the node holding
//!   the push lease takes its directory's store into the shared table ([`push_state`]) when the
//!   table holds no push state yet, then removes the directory. Once the table holds any, a
//!   directory is left as it is, with a warning: of several nodes' directories only the last
//!   pusher's is current, and an older one taken in would bring back withdrawn resources and
//!   replayed dead letters. So start first the node that pushed last.

use naast_eventlog::{Direction, EventLog, ExpectedRevision, NewEvent, Options};
use std::path::Path;

/// What was taken into the database.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Household keys taken into the keys' table.
    pub keys: usize,
    /// Audit records appended to their year's table.
    pub audit_records: u64,
}

/// Records read per step from a partition, and most appended in one run.
const CHUNK: usize = 500;

/// Takes the keys and audit years left in `data_dir` into the PostgreSQL database at `url`,
/// whose key store `vault` is.
pub async fn into_postgres(
    data_dir: &Path,
    url: &str,
    vault: Option<&naast_vault::Vault>,
    master: Option<&naast_vault::MasterKey>,
) -> Result<Adopted, String> {
    let mut adopted = Adopted::default();
    let keys = data_dir.join("keys");
    if keys.is_dir() {
        let (Some(vault), Some(master)) = (vault, master) else {
            return Err(format!(
                "{} holds household keys to take into PostgreSQL: give the master key",
                keys.display()
            ));
        };
        adopted.keys = adopt_keys(&keys, vault, master)?;
    }
    let audit = data_dir.join("audit");
    if audit.is_dir() {
        adopted.audit_records = adopt_audit(&audit, url).await?;
    }
    if adopted != Adopted::default() {
        tracing::info!(
            keys = adopted.keys,
            audit_records = adopted.audit_records,
            "household keys and audit records taken from the data directory into PostgreSQL"
        );
    }
    Ok(adopted)
}

/// Takes the push store left in `data_dir` (as a node kept it before the push state moved into
/// the database) into `shared`, then removes it from the directory; how many entries it took.
pub fn push_state(data_dir: &Path, shared: &naast_push::Store) -> Result<u64, String> {
    let dir = data_dir.join("push");
    if !dir.is_dir() {
        return Ok(0);
    }
    let own = naast_push::Store::open(&dir).map_err(|e| e.to_string())?;
    let entries = own.backup_entries().map_err(|e| e.to_string())?;
    drop(own);
    // Taken in when the table holds nothing, or only what a start cut short took from this same
    // directory (then again, each once). Any other state there is newer than this directory's.
    let ours: std::collections::HashSet<_> = entries.iter().collect();
    let held = shared.backup_entries().map_err(|e| e.to_string())?;
    if !held.iter().all(|entry| ours.contains(entry)) {
        tracing::warn!(
            dir = %dir.display(),
            "the database holds push state already: this node's old push directory is left as it is (it is older than what pushed since); remove it once you are sure"
        );
        return Ok(0);
    }
    let taken = shared.take_in(&entries).map_err(|e| e.to_string())?;
    // Every entry is durable in the database (or was there already): the directory may go.
    std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    naast_eventlog::storage::sync_dir(data_dir).map_err(|e| e.to_string())?;
    if taken > 0 {
        tracing::info!(
            entries = taken,
            "the push state taken from the data directory into PostgreSQL"
        );
    }
    Ok(taken)
}

fn adopt_keys(
    dir: &Path,
    vault: &naast_vault::Vault,
    master: &naast_vault::MasterKey,
) -> Result<usize, String> {
    let folder = naast_vault::Vault::open(dir, master).map_err(|e| e.to_string())?;
    let mut taken = 0;
    for (name, bytes) in folder.backup_files().map_err(|e| e.to_string())? {
        let Some(household) = name
            .strip_suffix(".key")
            .and_then(|id| uuid::Uuid::parse_str(id).ok())
        else {
            continue; // the master key check: the table has its own
        };
        if vault
            .adopt_key(household, &bytes)
            .map_err(|e| e.to_string())?
        {
            taken += 1;
        }
    }
    drop(folder);
    // Every key is durable in the database: the files may go (the only copies must be where
    // an erasure destroys them).
    std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        naast_eventlog::storage::sync_dir(parent).map_err(|e| e.to_string())?;
    }
    Ok(taken)
}

async fn adopt_audit(dir: &Path, url: &str) -> Result<u64, String> {
    let years = naast_app::audit::years_in_folder(dir).map_err(|e| e.to_string())?;
    let mut appended = 0;
    for year in years {
        let path = dir.join(year.to_string());
        let from = EventLog::open(&path, Options::default()).map_err(|e| e.to_string())?;
        let report = from.verify().map_err(|e| e.to_string())?;
        if let Some(broken) = report.first_break {
            from.close().await;
            return Err(format!(
                "the audit log of {year} in {} is broken at position {}: {}; it is not taken into PostgreSQL",
                path.display(),
                broken.position,
                broken.reason
            ));
        }
        let to = EventLog::open_postgres_table(
            url,
            &naast_app::audit::partition_table(year),
            Options::default(),
        )
        .map_err(|e| e.to_string())?;
        let copied = copy_records(&from, &to).await;
        from.close().await;
        to.close().await;
        appended += copied?;
        drop(from);
        naast_app::audit::remove_partition(&path, dir)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(appended)
}

/// Appends every record of `from` to `to`, a stream's run at a time, skipping runs `to` holds.
async fn copy_records(from: &EventLog, to: &EventLog) -> Result<u64, String> {
    let mut appended = 0;
    let mut next = 0;
    loop {
        let page = from
            .read_all(next, Direction::Forwards, CHUNK)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(appended);
        };
        next = last.position + 1;
        for run in page.chunk_by(|a, b| a.stream_id == b.stream_id) {
            let Some(last) = run.last() else { continue };
            if to.read_event(last.id).map_err(|e| e.to_string())?.is_some() {
                continue; // taken on an earlier start
            }
            let events = run
                .iter()
                .map(|event| {
                    let mut new = NewEvent::new(event.event_type.clone(), event.payload.to_vec());
                    new.id = event.id;
                    new.schema_version = event.schema_version;
                    new.metadata = event.metadata.clone();
                    new
                })
                .collect();
            to.append(&run[0].stream_id, ExpectedRevision::Any, events)
                .await
                .map_err(|e| e.to_string())?;
            appended += run.len() as u64;
        }
    }
}
