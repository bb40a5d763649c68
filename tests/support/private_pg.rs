//! A PostgreSQL server of a test's own, started from the installed binaries in a temporary
//! directory on a free port, so the test can stop and start it (an outage) without touching
//! the shared server. Stopped and removed when dropped.
//!
//! `initdb` refuses to run as root; as root the cluster belongs to the `postgres` user and
//! every command runs through `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::free_port;

/// A private PostgreSQL cluster, running unless [`PrivatePostgres::stop`] was called.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivatePostgres {
    /// Creates a cluster (trust authentication, no fsync) and starts it on a free port of
    /// 127.0.0.1, its socket in its own directory.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL binaries are installed under `/usr/lib/postgresql/*/bin`, or the
    /// cluster cannot be created or started (with the tool's output).
    #[must_use]
    pub fn start() -> Self {
        let bin = binaries().expect("PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("gatehouse-private-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("a temporary directory for the cluster");
        let server = Self { bin, dir, port: free_port(), as_postgres };
        if as_postgres {
            let status = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&server.dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown of the cluster directory to postgres");
        }
        let data = server.data_dir();
        server.run(
            "initdb",
            &["-D", path(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"],
        );
        server.start_again();
        server
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way an operator or a crash would end it for its clients: a fast
    /// shutdown, which terminates every open connection. Blocks until it is down.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", path(&self.data_dir()), "-m", "fast", "-w", "stop"]);
    }

    /// Starts the (stopped) server again on the same port and data. Blocks until it accepts
    /// connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=50",
            self.port,
            path(&self.dir)
        );
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", path(&self.data_dir()), "-l", path(&log), "-o", &options, "-w", "-t", "30", "start"],
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.command(tool).args(args).output().unwrap_or_else(|e| panic!("running {tool}: {e}"));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default(),
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate: nothing here needs to survive, and a stopped server answers "not running".
        let _ = self.command("pg_ctl").args(["-D", path(&self.data_dir()), "-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The `bin` directory of the newest installed PostgreSQL.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}
