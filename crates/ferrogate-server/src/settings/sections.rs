//! The server's own sections: `[server]` and the `[deployments.NAME]` tables (a leaf: the
//! concerns' own config checks read them).

use std::collections::BTreeMap;
use std::fmt;

use ferrogate_protocol::openai::shape::ShapeLimits;
use serde::{Deserialize, Serialize};

/// `Debug` is written by hand: the static keys never print.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Largest accepted request body; larger → 413.
    pub body_limit_bytes: usize,
    /// Bound of a whole non-streaming request (streams are bounded by the backend's timeouts).
    pub request_timeout_secs: u64,
    /// On SIGTERM/SIGINT: how long in-flight requests and streams may take to finish.
    pub shutdown_grace_secs: u64,
    /// Interval of `: keep-alive` comments on idle SSE streams.
    pub sse_keepalive_secs: u64,
    /// Interval of active backend health checks (feeds `/ready`).
    pub health_check_interval_secs: u64,
    /// Send a one-token request to every deployment at start; `/ready` is 503 until done
    /// (`warmup`).
    pub warmup: bool,
    /// Static Bearer keys for the single-tenant case; empty → no auth.
    pub api_keys: Vec<String>,
    /// Most messages in one chat request; more → 400 (docs/SECURITY.md).
    pub max_messages: usize,
    /// Largest single message (its text and the strings of its other parts), in bytes; larger →
    /// 400.
    pub max_message_bytes: usize,
    /// A streaming client that takes none of the stream's frames for this long is cut off: the
    /// upstream is cancelled, the slot freed, the request settled as `client_stalled`.
    pub client_write_timeout_secs: u64,
    /// Send `x-ferrogate-backend` (the backend that served) and `x-ferrogate-backend-route` (why
    /// it was picked) on responses. Off by default: they show clients the gateway's topology;
    /// useful when debugging routing.
    pub backend_header: bool,
    /// A connection must send a complete request head within this long: after its accept (any
    /// protocol) and, on HTTP/1, after each response — so it also ends an idle kept-alive HTTP/1
    /// connection. Slowloris defence; needs no key.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is shut down (HTTP/2: GOAWAY).
    pub idle_timeout_secs: u64,
    /// The whole request body must arrive within this long after its head; else 408 and close.
    pub body_read_timeout_secs: u64,
    /// Open client connections at most; beyond, a new connection gets 503 and is closed.
    pub max_connections: usize,
    /// Connections the kernel may hold completed but not yet accepted (the listen backlog,
    /// capped by `net.core.somaxconn`): room for a burst of clients connecting at once.
    pub listen_backlog: u32,
    /// `[server.tls]`: serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) instead of plain HTTP.
    pub tls: Option<super::tls::TlsSection>,
    /// How often `serve --config FILE` reads the file to see whether it changed (a Kubernetes
    /// ConfigMap swap included) and reloads it; 0: only on SIGHUP (docs/DEPLOY.md).
    pub config_poll_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            body_limit_bytes: 4 * 1024 * 1024,
            request_timeout_secs: 600,
            shutdown_grace_secs: 30,
            sse_keepalive_secs: 15,
            health_check_interval_secs: 10,
            warmup: false,
            api_keys: Vec::new(),
            max_messages: ShapeLimits::default().max_messages,
            max_message_bytes: ShapeLimits::default().max_message_bytes,
            backend_header: false,
            client_write_timeout_secs: 30,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_read_timeout_secs: 30,
            max_connections: 10_000,
            listen_backlog: 4096,
            tls: None,
            config_poll_ms: 2000,
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("sse_keepalive_secs", &self.sse_keepalive_secs)
            .field("health_check_interval_secs", &self.health_check_interval_secs)
            .field("warmup", &self.warmup)
            .field("api_keys", &format_args!("<{} redacted>", self.api_keys.len()))
            .field("max_messages", &self.max_messages)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("backend_header", &self.backend_header)
            .field("client_write_timeout_secs", &self.client_write_timeout_secs)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("body_read_timeout_secs", &self.body_read_timeout_secs)
            .field("max_connections", &self.max_connections)
            .field("listen_backlog", &self.listen_backlog)
            .field("tls", &self.tls)
            .field("config_poll_ms", &self.config_poll_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    /// Backend names; requests are spread over them by `routing`.
    pub backends: Vec<String>,
    /// How a request picks among `backends`: `p2c` (weighted least outstanding requests, two
    /// random choices; the default), `round_robin`, or `prefix` (the backend holding the
    /// prompt's prefix, scored against the engines' load; `[routing]`, docs/SCALING.md).
    #[serde(default)]
    pub routing: ferrogate_core::affinity::RoutingMode,
    /// Other names clients may use for this deployment.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The model name sent upstream; defaults to the deployment's name.
    #[serde(default)]
    pub upstream_model: Option<String>,
    // --- resilience (docs/GOVERNANCE.md) ---
    /// Backend name → weight (default 1).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// Requests running at once; default: the backends' slots (`queue.backend_concurrency` for
    /// backends that do not report theirs).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Overrides `queue.size`.
    #[serde(default)]
    pub queue_size: Option<usize>,
    /// Overrides `queue.max_wait_ms`.
    #[serde(default)]
    pub queue_max_wait_ms: Option<u64>,
    /// Deployments tried in order when this one fails or is overloaded.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// `max_tokens` above this is lowered to it; requests without one get it.
    #[serde(default)]
    pub max_tokens_cap: Option<u32>,
    /// Pass client fields beyond OpenAI's documented ones (vendor extensions such as vLLM's
    /// `guided_json`) to the upstream; off: a request carrying one is refused with 400.
    #[serde(default)]
    pub extra_body: bool,
    /// Overrides of `[guardrails]` for this deployment (docs/GUARDRAILS.md).
    #[serde(default)]
    pub guardrails: Option<ferrogate_core::guardrails::Overrides>,
    // --- response cache (docs/STATE.md) ---
    /// Answer repeated deterministic requests from the response cache (`[cache]`).
    #[serde(default)]
    pub cache: bool,
    /// How long an answer is served from the cache; default `cache.ttl_secs`.
    #[serde(default)]
    pub cache_ttl_secs: Option<u64>,
    /// Cache sampled requests (temperature > 0 without a seed) too.
    #[serde(default)]
    pub cache_nondeterministic: bool,
    /// Answer paraphrases of answered requests too (the semantic cache; docs/STATE.md).
    #[serde(default)]
    pub semantic_cache: Option<SemanticCacheConfig>,
}

/// `[deployments.NAME] semantic_cache = { embedding = "minilm", threshold = 0.90 }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticCacheConfig {
    /// The deployment that embeds the last user message (one serving embeddings).
    pub embedding: String,
    /// Cosine similarity at or above which an earlier answer is served.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// How long an answer is served; default `cache.ttl_secs`.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Measured on tests/data/paraphrases.json with all-MiniLM-L6-v2 (docs/STATE.md): 23 of 30
/// paraphrases served, 2 of 30 hard negatives.
fn default_threshold() -> f32 {
    0.90
}

/// `[cache]`: the response cache shared by the deployments that opt in (`cache = true`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Bound of the in-process cache, in bytes of cached answers.
    pub max_bytes: u64,
    /// Default time an answer is served.
    pub ttl_secs: u64,
    /// Shared through Redis (`redis://…`) by every replica, behind the in-process cache.
    pub redis_url: Option<crate::tenancy::config::Secret>,
    /// Prefix of the cache's Redis keys.
    pub key_prefix: String,
    /// The semantic cache's index in PostgreSQL with pgvector (`postgres://…`), shared by every
    /// replica; unset: in process.
    pub semantic_database_url: Option<crate::tenancy::config::Secret>,
    /// In-process semantic index: entries kept per scope (conversation prefix), oldest out first.
    pub semantic_per_scope: usize,
    /// In-process semantic index: scopes kept at most.
    pub semantic_max_scopes: usize,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            ttl_secs: 3600,
            redis_url: None,
            key_prefix: "fgc:".into(),
            semantic_database_url: None,
            semantic_per_scope: 64,
            semantic_max_scopes: 100_000,
        }
    }
}

impl DeploymentConfig {
    /// This deployment's cache policy under `[cache]`.
    pub fn cache_policy(&self, c: &CacheSection) -> ferrogate_core::cache::CachePolicy {
        ferrogate_core::cache::CachePolicy {
            enabled: self.cache,
            ttl: std::time::Duration::from_secs(self.cache_ttl_secs.unwrap_or(c.ttl_secs)),
            cache_nondeterministic: self.cache_nondeterministic,
        }
    }

    /// This deployment's semantic-cache policy, if it has one.
    pub fn semantic_policy(&self, c: &CacheSection) -> Option<ferrogate_core::cache::SemanticPolicy> {
        self.semantic_cache.as_ref().map(|s| ferrogate_core::cache::SemanticPolicy {
            embedding: s.embedding.clone(),
            threshold: s.threshold,
            ttl: std::time::Duration::from_secs(s.ttl_secs.unwrap_or(c.ttl_secs)),
        })
    }
}
