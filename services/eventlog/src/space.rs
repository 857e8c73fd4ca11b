//! The free space of the disk a log lives on, and the reserve kept there.
//!
//! A log opened with [`crate::Options::min_free_bytes`] refuses appends ([`crate::Error::DiskFull`])
//! while the file system holding it has less than that free: the writes that grow the data stop
//! *before* the disk is full, so the space left serves what must go on (the audit records of
//! reads, the read models catching up, a clean stop) and the storage engine never meets a full
//! disk in the middle of a write (sled cannot take such a write back; see
//! [`crate::Error::Poisoned`]). Appends are accepted again as soon as space is back: nothing has
//! failed, so nothing needs a restart. Elasticsearch's flood-stage watermark and etcd's space
//! quota work the same way.

use std::path::PathBuf;

/// The free space under one directory, asked of the file system at every append (one `statvfs`,
/// about a microsecond: nothing next to an append's sync, and exact, so that no append slips
/// through on an old reading).
pub(crate) struct Space {
    dir: PathBuf,
    min_free: u64,
    metrics_name: &'static str,
    /// Whether the last append found the disk below the reserve (said once in the log when it
    /// goes below, once when it is back above; each refusal is counted in the metrics).
    low: std::sync::atomic::AtomicBool,
}

impl Space {
    pub(crate) fn new(dir: PathBuf, min_free: u64, metrics_name: &'static str) -> Self {
        Self {
            dir,
            min_free,
            metrics_name,
            low: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `Err(DiskFull)` when the disk has less free than the reserve.
    pub(crate) fn admit(&self) -> crate::Result<()> {
        let Some(free) = free_bytes(&self.dir) else {
            // A file system that cannot tell its free space: the log's own writes will tell.
            return Ok(());
        };
        metrics::gauge!("naast_disk_free_bytes", "log" => self.metrics_name).set(free as f64);
        let low = free < self.min_free;
        if self.low.swap(low, std::sync::atomic::Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    dir = %self.dir.display(),
                    free_bytes = free,
                    min_free_bytes = self.min_free,
                    "the data directory's disk is below its reserve: commands are refused until space is made"
                );
            } else {
                tracing::warn!(
                    free_bytes = free,
                    "the data directory's disk has room again: commands are accepted"
                );
            }
        }
        if low {
            metrics::counter!("naast_limit_refusals_total", "limit" => "disk").increment(1);
            return Err(crate::Error::DiskFull {
                free_bytes: free,
                min_free_bytes: self.min_free,
            });
        }
        Ok(())
    }
}

/// The bytes an unprivileged writer may still use on the file system holding `dir`, or `None`
/// when the file system cannot tell (logged as a warning, once).
pub fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    /// Said once per process: a disk that cannot tell will not start telling.
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    match rustix::fs::statvfs(dir) {
        Ok(stat) => Some(stat.f_bavail.saturating_mul(stat.f_frsize)),
        Err(e) => {
            if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the free space of the data directory's disk: no reserve is kept");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed check

    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_a_small_one_admits() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let refused = Space::new(dir.path().into(), u64::MAX, "test").admit();
        match refused {
            Err(crate::Error::DiskFull {
                free_bytes,
                min_free_bytes,
            }) => {
                assert_eq!(min_free_bytes, u64::MAX);
                assert!(free_bytes > 0);
            }
            other => panic!("{other:?}"),
        }
        Space::new(dir.path().into(), 1, "test").admit().unwrap();
    }
}
