//! Recovering on its own after a store failed on a full disk.
//!
//! The event log keeps a reserve of free space (`[limits] min_free_disk_mb`), so commands stop
//! cleanly before the disk is full and resume by themselves once space is made. When the disk
//! fills anyway (another program filled it past the reserve), a write of the event log, the
//! audit log or the read models can fail in the middle, and sled, which has no rollback, then
//! refuses every later write of that store until it is reopened. Rather than wait for an
//! operator, `naast serve` watches for that: once a store has failed *and* the disk has room
//! again, it stops as on SIGTERM and starts itself again in the same process (`exec`, same
//! arguments, same process id), and the start's recovery (the same that follows a crash) tells
//! what is on disk. Until then it goes on answering what it still can: reads from stores that
//! did not fail, with refusals (`UNAVAILABLE`) where the audit log cannot record an access.

use naast_app::audit::Auditor;
use naast_eventlog::EventLog;
use naast_projections::Projections;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the stores and the disk are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// How long the read models may keep failing before they count as failed for good (they retry
/// from their checkpoint, so a passing fault heals without a restart).
const READ_MODELS_GRACE: Duration = Duration::from_secs(10);

/// Room the disk must have before a restart when no reserve is configured.
const LEAST_ROOM: u64 = 16 * 1024 * 1024;

/// The stores of a running server, watched for a failure that only a restart heals.
pub struct Watch {
    /// The event log.
    pub log: EventLog,
    /// Other logs a command writes to, each with what it is: in PostgreSQL, the record of
    /// disclosed reports (a log whose connection was lost is failed until reopened).
    pub others: Vec<(&'static str, EventLog)>,
    /// The audit log, when calls are audited.
    pub auditor: Option<Auditor>,
    /// The read models.
    pub projections: Projections,
    /// The data directory, whose disk's free space is read.
    pub data_dir: PathBuf,
    /// The reserve the event log keeps, in bytes.
    pub min_free_bytes: u64,
}

impl Watch {
    /// Completes, saying which store failed, once one has failed and the disk has room again.
    pub async fn failed_with_room_again(self) -> String {
        let mut tick = tokio::time::interval(EVERY);
        let mut read_models_failing_since: Option<Instant> = None;
        let mut waiting_said = false;
        loop {
            tick.tick().await;
            // Also when nothing is appended, the gauge tells how full the disk is.
            if let Some(free) = naast_eventlog::space::free_bytes(&self.data_dir) {
                metrics::gauge!("naast_disk_free_bytes", "log" => "events").set(free as f64);
            }
            if self.projections.failing() {
                read_models_failing_since.get_or_insert_with(Instant::now);
            } else {
                read_models_failing_since = None;
            }
            let Some(failed) = self.failure(read_models_failing_since) else {
                continue;
            };
            let room = self.min_free_bytes.max(LEAST_ROOM);
            let free = naast_eventlog::space::free_bytes(&self.data_dir);
            if free.is_some_and(|free| free >= room) {
                return failed;
            }
            if !waiting_said {
                tracing::error!(
                    store = %failed,
                    free_bytes = free.unwrap_or(0),
                    needed_bytes = room,
                    "a store failed; naast restarts itself once the data directory's disk has room again"
                );
                waiting_said = true;
            }
        }
    }

    fn failure(&self, read_models_failing_since: Option<Instant>) -> Option<String> {
        if let Some(reason) = self.log.failure() {
            return Some(format!("the event log ({reason})"));
        }
        if let Some((what, reason)) = self
            .others
            .iter()
            .find_map(|(what, log)| log.failure().map(|reason| (what, reason)))
        {
            return Some(format!("{what} ({reason})"));
        }
        // A partition whose storage failed (not a record refused for what it holds: that
        // must not let a caller restart the service).
        if let Some(reason) = self.auditor.as_ref().and_then(|auditor| {
            auditor
                .partitions()
                .into_iter()
                .find_map(|(_, log)| log.failure())
        }) {
            return Some(format!("the audit log ({reason})"));
        }
        if read_models_failing_since.is_some_and(|since| since.elapsed() >= READ_MODELS_GRACE) {
            return Some("the read models (their writes keep failing)".to_owned());
        }
        None
    }
}

/// Replaces this process with a new run of the same program and arguments (same process id,
/// same environment); returns only if that cannot be done.
#[cfg(unix)]
pub fn restart_in_place() -> std::io::Error {
    use std::os::unix::process::CommandExt;
    match std::env::current_exe() {
        Ok(program) => std::process::Command::new(program)
            .args(std::env::args_os().skip(1))
            .exec(),
        Err(e) => e,
    }
}
