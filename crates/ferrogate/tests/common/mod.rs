//! Helpers shared by the tests that run real `ferrogate serve` processes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `config` written to `<dir>/<name>.toml`.
fn config_file(dir: &Path, name: &str, config: &str) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, config).unwrap();
    file
}

/// A `ferrogate serve` process; SIGTERM and wait on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Server {
    pub async fn start(dir: &Path, name: &str, config: &str) -> Server {
        Self::start_env(dir, name, config, &[]).await
    }

    /// As [`Server::start`], with extra environment variables (e.g. libfaketime's).
    pub async fn start_env(dir: &Path, name: &str, config: &str, env: &[(&str, &str)]) -> Server {
        Self::start_under(dir, name, &config_file(dir, name, config), env, &[]).await
    }

    /// As [`Server::start`], with the configuration file already in place (`file`).
    pub async fn start_file(dir: &Path, name: &str, file: &Path) -> Server {
        Self::start_under(dir, name, file, &[], &[]).await
    }

    /// As [`Server::start_env`], restricted to the CPUs `cpus` names (`taskset -c`).
    pub async fn start_pinned(dir: &Path, name: &str, config: &str, cpus: &str, env: &[(&str, &str)]) -> Server {
        Self::start_under(dir, name, &config_file(dir, name, config), env, &["taskset", "-c", cpus]).await
    }

    /// Starts `ferrogate serve` through `wrapper` (a command line that runs the binary after it;
    /// empty: the binary itself).
    async fn start_under(dir: &Path, name: &str, file: &Path, env: &[(&str, &str)], wrapper: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{name}.log"));
        let binary = env!("CARGO_BIN_EXE_ferrogate");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["serve", "--config"])
            .arg(file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("FERROGATE_MASTER_KEY")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server { child, url: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/ready", server.url)).await.map(|r| r.status().as_u16()).ok() != Some(200) {
            assert!(Instant::now() < deadline, "{name} not ready:\n{}", std::fs::read_to_string(&server.log).unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// SIGTERM (graceful: drains and flushes the ledger), then waits for the exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
