//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, the server
//! listening on a Unix socket in that directory only (no TCP port to collide on), stopped and
//! removed when dropped. PostgreSQL comes from the Debian packages (`ops/test.sh` installs
//! `postgresql`); run as root, the server runs as the `postgres` user, as PostgreSQL requires.
//!
//! [`Cluster::start_with_tls`] also listens on a loopback port, with TLS only: a certificate for
//! `localhost` from a CA made for the cluster (with `openssl`), and no unencrypted connection
//! over TCP allowed (`hostssl` alone in `pg_hba.conf`).

#![allow(clippy::expect_used)] // a test harness: failing to start is a failed test, said loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running throwaway cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    /// The loopback port it takes TLS connections on.
    tls_port: Option<u16>,
    /// Whether a standby streams from it ([`Cluster::start_with_standby`]), and whether it
    /// has taken over ([`Cluster::fail_over`]).
    standby: Option<Standby>,
}

/// The standby of a cluster started with one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standby {
    Streaming,
    Stopped,
    Promoted,
}

static DATABASES: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Initialises and starts a cluster; panics, naming what is missing, when PostgreSQL is
    /// not installed or does not start.
    pub fn start() -> Self {
        Self::start_listening(false)
    }

    /// [`Cluster::start`], also taking TLS connections (and only those) on a loopback port.
    pub fn start_with_tls() -> Self {
        Self::start_listening(true)
    }

    /// [`Cluster::start`], with a hot standby (made with `pg_basebackup`, on a socket directory
    /// of its own) that replicates synchronously: the primary's `synchronous_standby_names` is
    /// `*`, so a commit that waits for its flush (`synchronous_commit` on) waits for the
    /// standby's too. [`Cluster::failover_url`] reaches whichever of the two takes writes.
    pub fn start_with_standby() -> Self {
        let mut cluster = Self::start_listening(false);
        let (dir, standby, socket) = (
            cluster.dir.path().to_owned(),
            cluster.standby_data(),
            cluster.standby_socket(),
        );
        cluster.standby = Some(Standby::Streaming);
        std::fs::create_dir(&socket).expect("the standby's socket directory");
        if cluster.as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&socket));
        }
        cluster.run_as_server(
            "pg_basebackup",
            &[
                "-h",
                path_str(&dir),
                "-U",
                "naast",
                "-D",
                path_str(&standby),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        cluster.run_standby();
        cluster.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        );
        cluster.psql("postgres", "SELECT pg_reload_conf()");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while cluster.psql("postgres", "SELECT sync_state FROM pg_stat_replication") != "sync" {
            assert!(
                std::time::Instant::now() < deadline,
                "the standby did not become synchronous"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        cluster
    }

    /// The URL of `database` that reaches whichever of the primary and its standby takes
    /// writes (both hosts, `target_session_attrs=read-write`), as a node is given it where the
    /// database fails over.
    pub fn failover_url(&self, database: &str) -> String {
        let encode = |path: &Path| path_str(path).replace('/', "%2F");
        format!(
            "postgresql://naast@{},{}/{database}?target_session_attrs=read-write",
            encode(self.dir.path()),
            encode(&self.standby_socket())
        )
    }

    fn run_standby(&self) {
        let options = format!(
            "-k {} -c listen_addresses='' -c max_connections=200",
            path_str(&self.standby_socket())
        );
        self.pg_ctl_start(&self.standby_data(), "standby.log", &options);
    }

    /// Stops the standby (`fast`), so that it receives nothing until [`Cluster::fail_over`]:
    /// a commit that waits for it waits until then (and is lost with the primary), one that
    /// does not wait for it is on the primary alone.
    pub fn stop_standby(&mut self) {
        assert!(
            self.standby == Some(Standby::Streaming),
            "the cluster has no standby streaming"
        );
        self.run_as_server(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.standby_data()),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
        self.standby = Some(Standby::Stopped);
    }

    /// The primary dies (`immediate`, as a crash) and its standby (started again first, when
    /// stopped) is promoted: the standby takes writes from then on.
    pub fn fail_over(&mut self) {
        let stopped = match self.standby {
            Some(Standby::Streaming) => false,
            Some(Standby::Stopped) => true,
            _ => panic!("the cluster has no standby to fail over to"),
        };
        let data = self.data();
        self.run_as_server(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
        if stopped {
            self.run_standby();
        }
        let standby = self.standby_data();
        self.run_as_server("pg_ctl", &["-D", path_str(&standby), "-w", "promote"]);
        self.standby = Some(Standby::Promoted);
    }

    fn standby_data(&self) -> PathBuf {
        self.dir.path().join("standby")
    }

    fn standby_socket(&self) -> PathBuf {
        self.dir.path().join("standby-socket")
    }

    /// The socket directory of the server that takes writes.
    fn serving_socket(&self) -> PathBuf {
        match self.standby {
            Some(Standby::Promoted) => self.standby_socket(),
            _ => self.dir.path().to_owned(),
        }
    }

    fn start_listening(tls: bool) -> Self {
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
        let mut cluster = Self {
            dir,
            bin,
            as_postgres,
            tls_port: None,
            standby: None,
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
        if tls {
            cluster.make_certificates();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            cluster.tls_port = Some(port);
        }
        cluster.run_server();
        cluster
    }

    /// A CA, and a certificate it signed for `localhost` with its key in the data directory;
    /// TCP connections allowed with TLS only.
    fn make_certificates(&self) {
        let dir = self.dir.path();
        let data = self.data();
        let openssl = |args: &[&str]| {
            run(Command::new("openssl").current_dir(dir).args(args));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=naast test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .expect("the certificate's extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        for file in ["server.crt", "server.key"] {
            std::fs::copy(dir.join(file), data.join(file)).expect("the server's certificate");
            let path = data.join(file);
            run(Command::new("chmod").arg("600").arg(&path));
            if self.as_postgres {
                run(Command::new("chown").arg("postgres:").arg(&path));
            }
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
    }

    /// The CA file that signed the TLS certificate (of a cluster started with TLS).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The URL of `database` over TLS to `host` (`localhost`, which the certificate names, or
    /// another name of the loopback address), without the TLS options.
    pub fn tcp_url(&self, host: &str, database: &str) -> String {
        let port = self.tls_port.expect("the cluster was started with TLS");
        format!("postgresql://naast@{host}:{port}/{database}")
    }

    /// Starts the server on the cluster's data. The WAL writer is slowed to its slowest (10 s),
    /// so what was committed asynchronously and never flushed stays in memory long enough for
    /// a crash ([`Cluster::crash_and_restart`]) to lose it: only a real synchronous commit
    /// saves it.
    fn run_server(&self) {
        let data = self.data();
        let mut options = format!(
            "-k {} -c max_connections=200 -c wal_writer_delay=10s -c wal_writer_flush_after=0",
            path_str(self.dir.path())
        );
        match self.tls_port {
            Some(port) => options.push_str(&format!(
                " -c listen_addresses=127.0.0.1 -p {port} -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
            )),
            None => options.push_str(" -c listen_addresses=''"),
        }
        self.pg_ctl_start(&data, "server.log", &options);
    }

    /// Starts the server on `data` with `options`, its log in `log` of the cluster's directory,
    /// and waits until it takes connections.
    fn pg_ctl_start(&self, data: &Path, log: &str, options: &str) {
        let log = self.dir.path().join(log);
        self.run_as_server(
            "pg_ctl",
            &[
                "-D",
                path_str(data),
                "-l",
                path_str(&log),
                "-o",
                options,
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
        match self.tls_port {
            // The socket's name has the port in it.
            Some(port) => format!("postgresql://naast@{socket}:{port}/{database}"),
            None => format!("postgresql://naast@{socket}/{database}"),
        }
    }

    /// A new, empty database: its URL.
    pub fn database(&self) -> String {
        self.url(&self.new_database())
    }

    /// A new, empty database: its name.
    pub fn new_database(&self) -> String {
        let name = format!(
            "naast_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new(self.bin.join("createdb"))
            .args(["-h", path_str(self.dir.path()), "-U", "naast"])
            .args(self.tls_port.map(|port| format!("-p{port}")))
            .arg(&name));
        name
    }

    /// Runs `sql` in `database` with `psql` (as the test's user, `naast`, on the server that
    /// takes writes); what it printed,
    /// unaligned and without headers.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let socket = self.serving_socket();
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", path_str(&socket), "-U", "naast", "-At", "-v"])
            .arg("ON_ERROR_STOP=1")
            .args(self.tls_port.map(|port| format!("-p{port}")))
            .args(["-d", database, "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
        // Stopping is best effort: a cluster already gone is fine.
        let standby = self.standby.map(|_| self.standby_data());
        for data in std::iter::once(self.data()).chain(standby) {
            let _ = self
                .as_server("pg_ctl")
                .args(["-D", path_str(&data), "-m", "immediate", "-w", "stop"])
                .output();
        }
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
