//! Redis for tests: the machine's shared Redis (`FERROGATE_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`) with a unique key prefix per test, so tests run in parallel without
//! seeing each other's counters; and a private `redis-server` on a free port that a test may kill
//! and restart (never the shared one, which other tests use).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The shared Redis's URL.
pub fn shared_url() -> String {
    std::env::var("FERROGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses: `fgtest:<name>:<uuid>:`.
pub fn unique_prefix(name: &str) -> String {
    format!("fgtest:{name}:{}:", uuid::Uuid::new_v4().simple())
}

/// A `redis-server` of this test only, on `127.0.0.1:<free port>`, without persistence. Killed
/// on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it and waits until it answers `PING`.
    pub async fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = PrivateRedis { port, child: None };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: as a crash or a network cut looks to clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `SIGSTOP`: the server keeps its connections and port but answers nothing (a hung Redis).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            crate::process::signal(c.id(), crate::process::Signal::Stop);
        }
    }

    /// `SIGCONT` after [`PrivateRedis::pause`]: it answers what was queued, then new commands.
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            crate::process::signal(c.id(), crate::process::Signal::Cont);
        }
    }

    /// Starts the server again on the same port (after [`PrivateRedis::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port).await {
            assert!(Instant::now() < deadline, "private redis-server on port {} did not start", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Whether a Redis on `127.0.0.1:port` answers `PING`.
pub async fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if s.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await, Ok(Ok(_)))
        && &buf == b"+PONG\r\n"
}
