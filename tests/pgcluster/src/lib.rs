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

    /// Runs `sql` in `database` with `psql` (as the test's user, `naast`); what it printed,
    /// unaligned and without headers.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", path_str(self.dir.path()), "-U", "naast", "-At", "-v"])
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
