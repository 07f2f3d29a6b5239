//! [`OpenAiBackend`]: the `Backend` impl over an OpenAI-compatible HTTP API.
//!
//! Invariant: every call is bounded in time (connect, first token, inter token, total) and
//! cancellation-safe — dropping a future or stream closes its upstream connection.

use std::time::Duration;

use ::http::{Method, Uri};
use async_trait::async_trait;
use ferrogate_core::stream::StreamTimeouts;
use ferrogate_core::{
    Backend, BackendError, Capabilities, Completion, EmbedOutput, EmbedRequest, EventStream, Health, InferenceRequest,
    TimeoutKind,
};
use tokio::time::Instant;

use super::KIND;
use super::config::OpenAiConfig;
use super::convert::{self, Endpoint, SseChunks};
use crate::http::{self, ClientSettings, RESPONSE_BODY_CAP, Upstream, within};
use crate::stream;

const CAPABILITIES: Capabilities = Capabilities {
    chat: true,
    text_completion: true,
    tools: true,
    images: true,
    usage: true,
    logprobs: true,
    embeddings: true,
};

/// 2,048 inputs of 3,072 floats as JSON text reach ~70 MB.
const EMBED_BODY_CAP: usize = 128 * 1024 * 1024;

pub struct OpenAiBackend {
    name: String,
    http: Upstream,
    /// `base_url` without a trailing slash.
    base: String,
    /// The request URIs, parsed once: a per-request parse is measurable at gateway-overhead scale.
    chat_uri: Uri,
    completions_uri: Uri,
    embeddings_uri: Uri,
    models_uri: Uri,
    timeouts: StreamTimeouts,
    health_timeout: Duration,
    /// Configured model list; when set, `/models` is not asked.
    models: Option<Vec<String>>,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend").field("name", &self.name).field("base", &self.base).finish_non_exhaustive()
    }
}

impl OpenAiBackend {
    /// Builds the backend (no I/O). Fails on the first config problem.
    pub fn new(name: &str, cfg: OpenAiConfig) -> Result<Self, String> {
        if let Some(problem) = cfg.problems().into_iter().next() {
            return Err(format!("backend '{name}': {problem}"));
        }
        let key = cfg.resolve_api_key().map_err(|e| format!("backend '{name}': {e}"))?;
        let http = Upstream::new(&ClientSettings {
            base_url: &cfg.base_url,
            bearer: key.as_deref(),
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
        let parse = |path: &str| http.uri(&base, path).map_err(|e| format!("backend '{name}': {e}"));
        Ok(Self {
            name: name.to_owned(),
            chat_uri: parse(Endpoint::Chat.path())?,
            completions_uri: parse(Endpoint::Completions.path())?,
            embeddings_uri: parse("/embeddings")?,
            models_uri: parse("/models")?,
            // After the URIs, which it makes.
            http,
            base,
            timeouts: cfg.stream_timeouts(),
            health_timeout: Duration::from_millis(cfg.health_timeout_ms),
            models: cfg.models,
        })
    }

    fn post(&self, endpoint: Endpoint, req: &InferenceRequest, body: Vec<u8>) -> http::Call {
        let uri = match endpoint {
            Endpoint::Chat => &self.chat_uri,
            Endpoint::Completions => &self.completions_uri,
        };
        self.http.call(Method::POST, uri).json(body).request_id(&req.request_id).trace(&req.obs)
    }

    async fn complete(&self, req: &InferenceRequest) -> Result<Completion, BackendError> {
        let (endpoint, body) = convert::request_bytes(req, false)?;
        let resp = self.http.send(self.post(endpoint, req, body)).await?;
        let mut body = http::read_body(resp, RESPONSE_BODY_CAP).await?;
        // A chat completion is kept as it came when the client reads chat completions too.
        if req.passthrough && endpoint == Endpoint::Chat {
            match super::passthrough::peek_completion(body) {
                Ok(completion) => return Ok(completion),
                Err(back) => body = back,
            }
        }
        convert::parse_completion(&body)
    }

    /// Sends a streamed request; resolves once the status is known.
    async fn open_stream(&self, req: &InferenceRequest) -> Result<EventStream, BackendError> {
        let (endpoint, body) = convert::request_bytes(req, true)?;
        let resp = self.http.send(self.post(endpoint, req, body).event_stream()).await?;
        if http::is_json(&resp) {
            // The upstream ignored `stream: true` and answered whole.
            let completion = convert::parse_completion(&http::read_body(resp, RESPONSE_BODY_CAP).await?)?;
            return Ok(Box::pin(futures::stream::iter(convert::completion_events(completion))));
        }
        // Chat chunks pass through as they came when the client reads chat chunks too.
        let passthrough = req.passthrough && endpoint == Endpoint::Chat;
        Ok(stream::events(resp, SseChunks::new(passthrough)))
    }

    async fn embeddings(&self, req: &EmbedRequest) -> Result<EmbedOutput, BackendError> {
        let body = serde_json::to_vec(&super::embed::body(req))
            .map_err(|e| BackendError::Internal(format!("cannot encode the request: {e}")))?;
        let call = self.http.call(Method::POST, &self.embeddings_uri).json(body).request_id(&req.request_id);
        let resp = self.http.send(call).await?;
        super::embed::parse(&http::read_body(resp, EMBED_BODY_CAP).await?, req.inputs.len())
    }

    async fn model_list(&self) -> Result<Vec<String>, BackendError> {
        let resp = self.http.send(self.http.call(Method::GET, &self.models_uri)).await?;
        convert::model_ids(&http::read_body(resp, RESPONSE_BODY_CAP).await?)
    }
}

/// With a static model list, any answer short of an auth failure or a 5xx proves the upstream
/// is reachable (it may simply not serve `/models`).
fn health_of(result: Result<Vec<String>, BackendError>, static_models: bool) -> Health {
    match result {
        Ok(_) => Health::Healthy,
        Err(BackendError::Status { status, .. }) if static_models && status < 500 && status != 401 && status != 403 => {
            Health::Healthy
        }
        Err(BackendError::Protocol(_)) if static_models => Health::Healthy,
        Err(e) => Health::Unhealthy(e.to_string()),
    }
}

#[async_trait]
impl Backend for OpenAiBackend {
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
        let events = tokio::time::timeout_at(deadline, self.open_stream(&req))
            .await
            .unwrap_or(Err(BackendError::Timeout(kind)))?;
        Ok(stream::bounded(events, self.timeouts, sent))
    }

    async fn embed(&self, req: EmbedRequest) -> Result<EmbedOutput, BackendError> {
        within(self.timeouts.total, TimeoutKind::Total, self.embeddings(&req)).await
    }

    async fn health(&self) -> Health {
        let result = within(self.health_timeout, TimeoutKind::Total, self.model_list()).await;
        health_of(result, self.models.is_some())
    }

    async fn models(&self) -> Result<Vec<String>, BackendError> {
        match &self.models {
            Some(list) => Ok(list.clone()),
            None => within(self.health_timeout, TimeoutKind::Total, self.model_list()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Result<Vec<String>, BackendError> {
        Err(BackendError::Status { status: s, message: "m".into(), retry_after: None })
    }

    #[test]
    fn health_with_and_without_a_static_model_list() {
        assert_eq!(health_of(Ok(vec![]), false), Health::Healthy);
        assert_eq!(health_of(status(404), true), Health::Healthy);
        assert!(!health_of(status(404), false).is_healthy());
        assert!(!health_of(status(401), true).is_healthy());
        assert!(!health_of(status(502), true).is_healthy());
        assert!(!health_of(Err(BackendError::Connect("refused".into())), true).is_healthy());
    }
}
