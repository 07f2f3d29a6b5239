//! [`OllamaBackend`]: the `Backend` impl over Ollama's native API, plus `loaded_models` (`/api/ps`).
//!
//! Invariant: every call is bounded in time and cancellation-safe — dropping a future or
//! stream closes its connection, which makes Ollama stop generating.

use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::stream::StreamTimeouts;
use ferrogate_core::{
    Backend, BackendError, Capabilities, Completion, EmbedOutput, EmbedRequest, EventStream, Health, InferenceRequest,
    TimeoutKind,
};
use serde_json::Value;
use tokio::time::Instant;

use super::KIND;
use super::config::OllamaConfig;
use super::convert::{self, Endpoint, NdjsonLines};
use crate::http::{self, ClientSettings, RESPONSE_BODY_CAP, within};
use crate::stream;

/// Images are passed on as base64 `images` (data: URLs only).
const CAPABILITIES: Capabilities =
    // Ollama's API has no log probabilities.
    Capabilities {
        chat: true,
        text_completion: true,
        tools: true,
        images: true,
        usage: true,
        logprobs: false,
        embeddings: true,
    };

pub struct OllamaBackend {
    name: String,
    http: reqwest::Client,
    /// `base_url` without a trailing slash.
    base: String,
    timeouts: StreamTimeouts,
    health_timeout: Duration,
    /// Sent with every request so the model stays loaded as configured.
    keep_alive: Option<Value>,
    /// Models health requires (pulled, and loaded if `require_loaded`).
    models: Option<Vec<String>>,
    require_loaded: bool,
}

impl std::fmt::Debug for OllamaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaBackend").field("name", &self.name).field("base", &self.base).finish_non_exhaustive()
    }
}

impl OllamaBackend {
    /// Builds the backend (no I/O). Fails on the first config problem.
    pub fn new(name: &str, cfg: OllamaConfig) -> Result<Self, String> {
        if let Some(problem) = cfg.problems().into_iter().next() {
            return Err(format!("backend '{name}': {problem}"));
        }
        let http = http::client(&ClientSettings {
            bearer: None,
            headers: &cfg.headers,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            pool_idle_per_host: cfg.pool_idle_per_host,
            proxy: cfg.proxy.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
        })
        .map_err(|e| format!("backend '{name}': {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            http,
            base: cfg.base_url.trim_end_matches('/').to_owned(),
            timeouts: cfg.stream_timeouts(),
            health_timeout: Duration::from_millis(cfg.health_timeout_ms),
            keep_alive: cfg.keep_alive.as_deref().map(convert::keep_alive),
            models: cfg.models,
            require_loaded: cfg.require_loaded,
        })
    }

    /// Models loaded in memory right now (`/api/ps`).
    pub async fn loaded_models(&self) -> Result<Vec<String>, BackendError> {
        within(self.health_timeout, TimeoutKind::Total, self.list("/api/ps")).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, BackendError> {
        let resp = http::send(self.http.get(self.url(path))).await?;
        convert::model_names(&http::read_body(resp, RESPONSE_BODY_CAP).await?)
    }

    async fn send(&self, req: &InferenceRequest, stream: bool) -> Result<reqwest::Response, BackendError> {
        let (endpoint, body): (Endpoint, Value) = convert::request_body(req, self.keep_alive.as_ref(), stream)?;
        let rb = self.http.post(self.url(endpoint.path())).json(&body);
        http::send(http::with_trace(http::with_request_id(rb, &req.request_id), &req.obs)).await
    }

    async fn complete(&self, req: &InferenceRequest) -> Result<Completion, BackendError> {
        let resp = self.send(req, false).await?;
        convert::parse_completion(&http::read_body(resp, RESPONSE_BODY_CAP).await?)
    }

    /// `NotReady` while a required model is not pulled (or not loaded, if required).
    async fn embeddings(&self, req: &EmbedRequest) -> Result<EmbedOutput, BackendError> {
        let body = super::embed::body(req, self.keep_alive.as_ref())?;
        let rb = self.http.post(self.url(super::embed::PATH)).json(&body);
        let resp = http::send(http::with_request_id(rb, &req.request_id)).await?;
        super::embed::parse(&http::read_body(resp, 128 * 1024 * 1024).await?, req.inputs.len())
    }

    async fn readiness(&self, wanted: &[String]) -> Health {
        let pulled = match within(self.health_timeout, TimeoutKind::Total, self.list("/api/tags")).await {
            Ok(list) => list,
            Err(e) => return Health::Unhealthy(e.to_string()),
        };
        if let Some(m) = convert::first_missing(wanted, &pulled) {
            return Health::NotReady(format!("model {m} is not pulled"));
        }
        if !self.require_loaded {
            return Health::Healthy;
        }
        match self.loaded_models().await {
            Ok(loaded) => convert::first_missing(wanted, &loaded)
                .map_or(Health::Healthy, |m| Health::NotReady(format!("model {m} is not loaded"))),
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }
}

#[async_trait]
impl Backend for OllamaBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn chat(&self, req: InferenceRequest) -> Result<Completion, BackendError> {
        within(self.timeouts.total, TimeoutKind::Total, self.complete(&req)).await
    }

    async fn chat_stream(&self, req: InferenceRequest) -> Result<EventStream, BackendError> {
        let sent = Instant::now();
        let (deadline, kind) = stream::head_deadline(&self.timeouts, sent);
        let resp = tokio::time::timeout_at(deadline, self.send(&req, true))
            .await
            .unwrap_or(Err(BackendError::Timeout(kind)))?;
        Ok(stream::bounded(stream::events(resp, NdjsonLines::new()), self.timeouts, sent))
    }

    async fn embed(&self, req: EmbedRequest) -> Result<EmbedOutput, BackendError> {
        within(self.timeouts.total, TimeoutKind::Total, self.embeddings(&req)).await
    }

    async fn health(&self) -> Health {
        self.readiness(self.models.as_deref().unwrap_or(&[])).await
    }

    /// Models pulled on the server (`/api/tags`).
    async fn models(&self) -> Result<Vec<String>, BackendError> {
        within(self.health_timeout, TimeoutKind::Total, self.list("/api/tags")).await
    }
}
