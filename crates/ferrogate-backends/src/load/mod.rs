//! Reading an engine's own load for engine-aware routing (`core::affinity`): requests running
//! and waiting, and KV-cache use, from wherever the engine tells it — Prometheus `/metrics`
//! (vLLM, llama.cpp server with `--metrics`, SGLang with `--enable-metrics`, TGI), Ollama's
//! `/api/ps` (which model is loaded; nothing about queues), or the embedded engine's stats.
//!
//! Invariant: a reading is bounded in time (`Scraper::new`'s timeout) and never blocks a
//! request: the binary's scrape loop calls it and stores the result in the target's
//! `LoadCell`; a failed reading is an `Err` the loop logs and the picker never sees.

mod metrics;
mod ollama;

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::Backend;
use ferrogate_core::affinity::EngineLoad;

use crate::BackendConfig;

pub use metrics::parse as parse_metrics;
pub use ollama::parse as parse_ollama_ps;

/// Where one backend's load is read.
#[derive(Clone)]
pub enum Probe {
    /// Prometheus text exposition at this URL.
    Metrics(String),
    /// Ollama's `/api/ps` at this URL.
    OllamaPs(String),
    /// An engine in this process (its `Backend::stats`).
    InProcess(Arc<dyn Backend>),
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Metrics(u) => write!(f, "Metrics({u})"),
            Probe::OllamaPs(u) => write!(f, "OllamaPs({u})"),
            Probe::InProcess(b) => write!(f, "InProcess({})", b.name()),
        }
    }
}

/// The probe of a configured backend: an OpenAI-compatible server's `/metrics` beside its
/// `/v1` (`http://h:8000/v1` → `http://h:8000/metrics`), Ollama's `/api/ps`, the embedded
/// engine's stats; `None` for an embeddings-only engine.
pub fn probe_for(cfg: &BackendConfig, backend: &Arc<dyn Backend>) -> Option<Probe> {
    match cfg {
        BackendConfig::Openai(c) => Some(Probe::Metrics(metrics_url(&c.base_url))),
        BackendConfig::Ollama(c) => Some(Probe::OllamaPs(format!("{}/api/ps", c.base_url.trim_end_matches('/')))),
        BackendConfig::Embedded(_) => Some(Probe::InProcess(Arc::clone(backend))),
        BackendConfig::EmbeddedEmbeddings(_) => None,
    }
}

/// `/metrics` at the server root of an OpenAI-compatible base URL.
pub fn metrics_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let root = base.strip_suffix("/v1").unwrap_or(base);
    format!("{root}/metrics")
}

/// Reads probes over a client of its own (short timeouts, no proxy: engines are scraped where
/// the gateway reaches them directly).
#[derive(Clone)]
pub struct Scraper {
    http: reqwest::Client,
}

impl Scraper {
    /// Each reading gives up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| format!("load scraper client: {e}"))?;
        Ok(Self { http })
    }

    /// The engine's load now; `model` is the upstream model name (Ollama's probe asks whether
    /// it is loaded).
    pub async fn read(&self, probe: &Probe, model: &str) -> Result<EngineLoad, String> {
        match probe {
            Probe::Metrics(url) => metrics::parse(&self.text(url).await?),
            Probe::OllamaPs(url) => ollama::parse(&self.text(url).await?, model),
            Probe::InProcess(b) => in_process(b.as_ref()),
        }
    }

    async fn text(&self, url: &str) -> Result<String, String> {
        let res = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = res.status();
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {}", status.as_u16()));
        }
        res.text().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

/// The embedded engine's stats: busy slots run, the waiting queue waits, KV cells in use.
fn in_process(b: &dyn Backend) -> Result<EngineLoad, String> {
    let s = b.stats().ok_or_else(|| format!("backend '{}' reports no engine stats", b.name()))?;
    let kv_usage = (s.kv_cells_total > 0).then(|| s.kv_cells_used as f32 / s.kv_cells_total as f32);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(EngineLoad { running: clamp(s.slots_busy), waiting: clamp(s.queue_depth), kv_usage })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use ferrogate_core::backend::*;
    use ferrogate_core::obs::BackendStats;

    /// An in-process engine as the scrape sees it: only its stats matter.
    struct Engine(Option<BackendStats>);

    #[async_trait]
    impl Backend for Engine {
        fn name(&self) -> &str {
            "engine"
        }
        fn kind(&self) -> &'static str {
            "embedded"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                chat: true,
                text_completion: true,
                tools: false,
                images: false,
                usage: true,
                logprobs: false,
                embeddings: false,
            }
        }
        async fn chat(&self, _: InferenceRequest) -> Result<Completion, BackendError> {
            Err(BackendError::Internal("unused".into()))
        }
        async fn chat_stream(&self, _: InferenceRequest) -> Result<EventStream, BackendError> {
            Err(BackendError::Internal("unused".into()))
        }
        async fn health(&self) -> Health {
            Health::Healthy
        }
        async fn models(&self) -> Result<Vec<String>, BackendError> {
            Ok(vec![])
        }
        fn stats(&self) -> Option<BackendStats> {
            self.0
        }
    }

    #[tokio::test]
    async fn the_embedded_engine_reports_busy_slots_its_queue_and_kv_cells() {
        let stats = BackendStats {
            slots_total: 4,
            slots_busy: 3,
            queue_depth: 2,
            kv_cells_used: 1024,
            kv_cells_total: 4096,
            ..BackendStats::default()
        };
        let scraper = Scraper::new(Duration::from_secs(1)).unwrap();
        let probe = Probe::InProcess(Arc::new(Engine(Some(stats))));
        let l = scraper.read(&probe, "m").await.unwrap();
        assert_eq!((l.running, l.waiting, l.kv_usage), (3, 2, Some(0.25)));
        assert!(scraper.read(&Probe::InProcess(Arc::new(Engine(None))), "m").await.is_err());
    }

    #[test]
    fn the_metrics_url_sits_at_the_server_root() {
        assert_eq!(metrics_url("http://127.0.0.1:8000/v1"), "http://127.0.0.1:8000/metrics");
        assert_eq!(metrics_url("http://h:8000/v1/"), "http://h:8000/metrics");
        assert_eq!(metrics_url("http://h/proxy"), "http://h/proxy/metrics");
    }
}
