//! A PostgreSQL of one test: `initdb` into a temp dir, `postgres` on a free port of 127.0.0.1,
//! no fsync. A test may pause it (`SIGSTOP` to the postmaster and every backend: connections stay
//! open and simply stop answering, as a hung database looks to clients) and resume it. Never the
//! machine's shared PostgreSQL, which other tests use.
//!
//! The server binaries are found in `FERROGATE_PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout). PostgreSQL refuses to run as root: when the
//! tests run as root, `initdb` and `postgres` run as the `postgres` user.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Signal, descendants, signal};

pub struct PrivatePostgres {
    pub port: u16,
    child: Child,
    paused: bool,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// initdb, start, and wait until it accepts a query.
    pub async fn start() -> PrivatePostgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let owner = run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), owner)
            .current_dir(dir.path())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = command(&bin.join("postgres"), owner)
            .current_dir(dir.path())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=50", "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("postgres.log")).unwrap())
            .spawn()
            .expect("postgres starts");
        let pg = PrivatePostgres { port, child, paused: false, dir };
        pg.wait_answering(Duration::from_secs(30)).await;
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its `postgres` database, to read back what the gateway stored (the ledger).
    pub fn database(&self) -> crate::TestDatabase {
        crate::TestDatabase::existing_postgres(self.url())
    }

    /// The server log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// `SIGSTOP` to the postmaster and every process under it: open connections stop answering,
    /// new ones are accepted by the kernel but never greeted.
    pub fn pause(&mut self) {
        signal(self.child.id(), Signal::Stop);
        for pid in descendants(self.child.id()) {
            signal(pid, Signal::Stop);
        }
        self.paused = true;
    }

    /// `SIGCONT` to them all.
    pub fn resume(&mut self) {
        for pid in descendants(self.child.id()) {
            signal(pid, Signal::Cont);
        }
        signal(self.child.id(), Signal::Cont);
        self.paused = false;
    }

    async fn wait_answering(&self, within: Duration) {
        use sqlx::Connection;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(mut c) = sqlx::postgres::PgConnection::connect(&self.url()).await
                && sqlx::query("SELECT 1").execute(&mut c).await.is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "private postgres did not start:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        // Immediate shutdown: the postmaster ends its backends, then itself.
        signal(self.child.id(), Signal::Quit);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROGATE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL server binaries (initdb): install postgresql or set FERROGATE_PG_BIN")
}

/// The `postgres` user's uid and gid when this process is root, else `None` (run as ourselves).
fn run_as() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1))?;
    if euid != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find(|l| l.starts_with("postgres:")).expect("a `postgres` user to run PostgreSQL as");
    let fields: Vec<&str> = entry.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(program);
    if let Some((uid, gid)) = owner {
        c.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    c
}
