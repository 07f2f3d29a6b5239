//! The floor of the request path: the plain types every stage shares — which endpoint was
//! called ([`Endpoint`]), the per-request context the edge layers fill ([`RequestCx`]), the three
//! names of a model ([`names`]), who is calling ([`caller`]), what was decided before any effect
//! ([`plan::Plan`]) and how the request ended ([`record`]).
//!
//! Invariant: nothing here performs an effect or imports a stage (auth, limits, routing,
//! dispatch, settle, observability's recording); stages import this module, never each other.

pub mod caller;
pub mod names;
pub mod plan;
pub mod record;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ferrogate_core::cache::CacheControl;

use crate::limits::rate_headers::RateHeaders;
use crate::observability::cx::ObsCx;
use crate::request::caller::Caller;
use crate::resilience::hints::RouteHints;

/// Which API shape the client asked for; decides response framing, the ledger's endpoint name
/// and the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
    Generate,
    Stream,
    /// Anthropic's `POST /v1/messages`.
    Messages,
    /// Ollama's `POST /api/chat`.
    OllamaChat,
    /// Ollama's `POST /api/generate`.
    OllamaGenerate,
    /// OpenAI's `POST /v1/responses`.
    Responses,
    /// OpenAI's `POST /v1/embeddings`.
    Embeddings,
    /// Ollama's `POST /api/embed`.
    OllamaEmbed,
    /// Ollama's older `POST /api/embeddings`.
    OllamaEmbeddings,
}

impl Endpoint {
    /// The inference endpoint served at `path`; `None` for every other route.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::Chat),
            "/v1/completions" => Some(Endpoint::Completion),
            "/generate" => Some(Endpoint::Generate),
            "/stream" => Some(Endpoint::Stream),
            "/v1/messages" => Some(Endpoint::Messages),
            "/api/chat" => Some(Endpoint::OllamaChat),
            "/api/generate" => Some(Endpoint::OllamaGenerate),
            "/v1/responses" => Some(Endpoint::Responses),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/api/embed" => Some(Endpoint::OllamaEmbed),
            "/api/embeddings" => Some(Endpoint::OllamaEmbeddings),
            _ => None,
        }
    }

    /// The usage ledger's name (`chat.completions`, `completions`, `generate`, `stream`,
    /// `messages`, `api.chat`, `api.generate`, `responses`, `embeddings`, `api.embed`, `api.embeddings`).
    pub fn ledger_name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completion => "completions",
            Endpoint::Generate => "generate",
            Endpoint::Stream => "stream",
            Endpoint::Messages => "messages",
            Endpoint::OllamaChat => "api.chat",
            Endpoint::OllamaGenerate => "api.generate",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::OllamaEmbed => "api.embed",
            Endpoint::OllamaEmbeddings => "api.embeddings",
        }
    }

    /// The metrics `endpoint` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completion => "completion",
            Endpoint::Generate => "generate",
            Endpoint::Stream => "stream",
            Endpoint::Messages => "messages",
            Endpoint::OllamaChat => "ollama_chat",
            Endpoint::OllamaGenerate => "ollama_generate",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::OllamaEmbed => "ollama_embed",
            Endpoint::OllamaEmbeddings => "ollama_embeddings",
        }
    }
}

/// Per-request context, put in the request extensions by the access layer and completed by
/// the layers after it; handlers and the pipeline read it.
#[derive(Debug, Clone)]
pub struct RequestCx {
    pub id: Arc<str>,
    pub started: Instant,
    /// The inference endpoint called, if any.
    pub endpoint: Option<Endpoint>,
    /// The peer, or `X-Forwarded-For` behind a trusted proxy: the access log's `client_ip`.
    pub client_ip: IpAddr,
    /// Set by the auth layer: who is calling, and the request's usage-ledger slot.
    pub caller: Option<Arc<Caller>>,
    /// Set by the limits layer when rate limits may apply: the rate-limit headers to send.
    pub limits: Option<Arc<RequestLimits>>,
    /// The client's routing headers (priority class, tier pin), parsed by the route stage.
    pub hints: RouteHints,
    /// Queued work (a batch line, a background response), run by a job worker: set only by the
    /// worker's context, never from the request, so a client cannot claim it. A tier that
    /// serves only in the background (`tiers.large_background_only`) admits only these.
    pub background: bool,
    /// The client's `Cache-Control` (`no-cache`, `no-store`) for the response cache.
    pub cache_control: CacheControl,
    /// Stage marks, deployment and trace of this request (metrics, spans), shared with the
    /// access layer that settles a request no backend saw.
    pub obs: Arc<ObsCx>,
}

/// Per request when rate limits may apply: the client's address, and the headers the
/// response will carry (set by admission, written by the limits layer).
#[derive(Debug)]
pub struct RequestLimits {
    pub ip: IpAddr,
    pub headers: OnceLock<RateHeaders>,
}

/// Filled by handlers so the access log can name the model and backend; the backend is also
/// returned to the client in `x-ferrogate-backend` when `server.backend_header` is on, and why it
/// was picked in `x-ferrogate-backend-route`.
#[derive(Debug, Clone, Default)]
pub struct RouteLog {
    pub model: String,
    pub backend: names::BackendName,
    /// Why that backend was picked (`x-ferrogate-backend-route: backend=a; reason=prefix;
    /// match=0.83`), formatted only when the header is sent.
    pub backend_route: Option<ferrogate_core::affinity::score::Route>,
}
