//! [`OllamaBackend`]: the `Backend` impl over Ollama's native API, plus `loaded_models` (`/api/ps`).
//!
//! Invariant: every call is bounded in time and cancellation-safe — dropping a future or
//! stream closes its connection, which makes Ollama stop generating.

use std::time::Duration;

use ::http::{Method, Uri};
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
use crate::http::{self, ClientSettings, RESPONSE_BODY_CAP, Upstream, within};
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
    http: Upstream,
    /// `base_url` without a trailing slash.
    base: String,
    /// The inference URIs, parsed once.
    chat_uri: Uri,
    generate_uri: Uri,
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
        let http = Upstream::new(&ClientSettings {
            base_url: &cfg.base_url,
            bearer: None,
            headers: &cfg.headers,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            pool_idle_per_host: cfg.pool_idle_per_host,
            http2_prior_knowledge: cfg.http2_prior_knowledge,
            http2_connections: cfg.http2_connections,
            proxy: cfg.proxy.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
        })
        .map_err(|e| format!("backend '{name}': {e}"))?;
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        let parse = |e: Endpoint| http.uri(&base, e.path()).map_err(|e| format!("backend '{name}': {e}"));
        Ok(Self {
            name: name.to_owned(),
            chat_uri: parse(Endpoint::Chat)?,
            generate_uri: parse(Endpoint::Generate)?,
            // After the URIs, which it makes.
            http,
            base,
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

    /// Health and embedding paths (off the chat hot path, whose URIs are parsed once).
    fn uri(&self, path: &str) -> Result<Uri, BackendError> {
        self.http.uri(&self.base, path).map_err(BackendError::Internal)
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, BackendError> {
        let resp = self.http.send(self.http.call(Method::GET, &self.uri(path)?)).await?;
        convert::model_names(&http::read_body(resp, RESPONSE_BODY_CAP).await?)
    }

    async fn send(&self, req: &InferenceRequest, stream: bool) -> Result<http::Response, BackendError> {
        let (endpoint, body): (Endpoint, Value) = convert::request_body(req, self.keep_alive.as_ref(), stream)?;
        let uri = match endpoint {
            Endpoint::Chat => &self.chat_uri,
            Endpoint::Generate => &self.generate_uri,
        };
        let call = self.http.call(Method::POST, uri).json(encode(&body)?).request_id(&req.request_id).trace(&req.obs);
        self.http.send(call).await
    }

    async fn complete(&self, req: &InferenceRequest) -> Result<Completion, BackendError> {
        let resp = self.send(req, false).await?;
        convert::parse_completion(&http::read_body(resp, RESPONSE_BODY_CAP).await?)
    }

    /// `NotReady` while a required model is not pulled (or not loaded, if required).
    async fn embeddings(&self, req: &EmbedRequest) -> Result<EmbedOutput, BackendError> {
        let body = encode(&super::embed::body(req, self.keep_alive.as_ref())?)?;
        let call = self.http.call(Method::POST, &self.uri(super::embed::PATH)?).json(body).request_id(&req.request_id);
        let resp = self.http.send(call).await?;
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

fn encode(body: &Value) -> Result<Vec<u8>, BackendError> {
    serde_json::to_vec(body).map_err(|e| BackendError::Internal(format!("cannot encode the request: {e}")))
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
