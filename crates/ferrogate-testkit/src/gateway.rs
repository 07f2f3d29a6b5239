//! `TestGateway`: the real server, in process, on an ephemeral port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::tenancy::time::{Clock, SystemClock};

use ferrogate::config;
use ferrogate_server::Running;

/// The default small model, as fetched by `scripts/fetch-models.sh`.
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The larger second model (Gemma 3 270M base).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// A model file in `$FERROGATE_MODEL_DIR` (default `~/.cache/ferrogate/models`). Panics with the
/// fix when missing: tests with the real model must fail, not skip, when it is absent.
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("FERROGATE_MODEL_DIR").map_or_else(config::default_model_dir, PathBuf::from);
    let p = dir.join(file);
    assert!(p.exists(), "model {} is missing: run `make fetch-models` (scripts/fetch-models.sh)", p.display());
    p
}

pub struct TestGateway {
    pub addr: SocketAddr,
    running: Option<Running>,
    pub http: reqwest::Client,
}

impl TestGateway {
    /// Starts a gateway from TOML; `server.listen` is forced to `127.0.0.1:0`.
    pub async fn start(toml: &str) -> TestGateway {
        Self::start_with_clock(toml, Arc::new(SystemClock)).await
    }

    /// As [`TestGateway::start`], with a clock the test controls (key expiry, budget windows).
    pub async fn start_with_clock(toml: &str, clock: Arc<dyn Clock>) -> TestGateway {
        let mut cfg = config::load_str(toml).unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        // Tests read which backend served from `x-ferrogate-backend` (off by default in a real
        // deployment: tests/shape.rs checks that default on a gateway of its own).
        cfg.server.backend_header = true;
        let running = ferrogate::start_with_clock(&cfg, std::future::pending(), clock).await.expect("gateway starts");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        TestGateway { addr: running.addr, running: Some(running), http }
    }

    /// A gateway serving the real SmolLM2 model as deployment `smollm2` with `parallel` slots.
    /// One compute thread: test processes run side by side on 2 cores, and llama.cpp's threads
    /// spin at every barrier, so two 2-thread engines slow each other many times over.
    pub async fn embedded(parallel: usize, extra_toml: &str) -> TestGateway {
        let toml = format!(
            "[backends.smollm2]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = {parallel}\nctx_per_seq = 1024\nthreads = 1\n\
             [deployments.smollm2]\nbackends = [\"smollm2\"]\naliases = [\"default\"]\n{extra_toml}",
            model_path(SMOLLM2).display()
        );
        let gw = Self::start(&toml).await;
        gw.wait_ready(Duration::from_secs(60)).await;
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Polls `/ready` until 200.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(self.url("/ready")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "gateway not ready within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(body).send().await.unwrap()
    }

    /// The separate `/metrics` listener, when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }

    pub fn state(&self) -> &ferrogate_server::AppState {
        &self.running.as_ref().expect("running").state
    }

    /// Graceful shutdown (drain, then stop).
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}
