//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, the server
//! listening on a Unix socket in that directory only (no TCP port to collide on), stopped and
//! removed when dropped. PostgreSQL comes from the Debian packages (`ops/test.sh` installs
//! `postgresql`); run as root, the server runs as the `postgres` user, as PostgreSQL requires.

#![allow(clippy::expect_used)] // a test harness: failing to start is a failed test, said loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running throwaway cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Initialises and starts a cluster; panics, naming what is missing, when PostgreSQL is
    /// not installed or does not start.
    pub fn start() -> Self {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL is not installed: `apt-get install postgresql` (ops/test.sh does)")
        });
        let dir = tempfile::Builder::new()
            .prefix("naast-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let cluster = Self {
            dir,
            bin,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run_as_server(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "naast",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.run_server();
        cluster
    }

    /// Starts the server on the cluster's data. The WAL writer is slowed to its slowest (10 s),
    /// so what was committed asynchronously and never flushed stays in memory long enough for
    /// a crash ([`Cluster::crash_and_restart`]) to lose it: only a real synchronous commit
    /// saves it.
    fn run_server(&self) {
        let data = self.data();
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200 -c wal_writer_delay=10s -c wal_writer_flush_after=0",
            path_str(self.dir.path())
        );
        let log = self.dir.path().join("server.log");
        self.run_as_server(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would (`immediate`: no checkpoint, WAL not yet flushed
    /// lost) and starts it again, which recovers from what the WAL kept on disk.
    pub fn crash_and_restart(&self) {
        let data = self.data();
        self.run_as_server(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
        self.run_server();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The URL of `database` on this cluster, over its socket.
    pub fn url(&self, database: &str) -> String {
        let socket = path_str(self.dir.path()).replace('/', "%2F");
        format!("postgresql://naast@{socket}/{database}")
    }

    /// A new, empty database: its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "naast_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new(self.bin.join("createdb"))
            .args(["-h", path_str(self.dir.path()), "-U", "naast"])
            .arg(&name));
        self.url(&name)
    }

    /// Runs `program` of the cluster's binaries with `args`, as the server's user.
    fn run_as_server(&self, program: &str, args: &[&str]) {
        run(self.as_server(program).args(args));
    }

    /// `program` of the cluster's binaries, to be run as the server's user.
    fn as_server(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        // Stopping is best effort: a cluster already gone is fine.
        let _ = self
            .as_server("pg_ctl")
            .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The directory of PostgreSQL's server programs: the newest Debian version's, else the one on
/// `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let debian = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(debian)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
