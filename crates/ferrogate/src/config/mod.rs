//! Configuration: TOML file, then `FERROGATE_…` environment overrides (`__` separates levels:
//! `FERROGATE_SERVER__LISTEN=0.0.0.0:8080`), then CLI flags. Raw serde structs are checked into
//! a [`Config`]; every problem is reported at once so an operator fixes them in one go.
//!
//! Invariant: an invalid configuration never starts a server.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod jobs;
mod lines;
pub mod structure;

use ferrogate_backends::BackendConfig;
use ferrogate_backends::embedded::source::hub_file;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use serde::{Deserialize, Serialize};

pub use ferrogate_server::guardrails::config::{GuardrailSettings, GuardrailsConfig};
pub use ferrogate_server::limits::config::{LimitSettings, LimitsConfig};
pub use ferrogate_server::observability::config::{DashboardConfig, MetricsConfig, ObservabilityConfig, TracingConfig};
pub use ferrogate_server::resilience::config::{BreakerSection, QueueSection, Resilience, RetrySection, TiersSection};
pub use ferrogate_server::settings::{ActiveConfig, CacheSection, DeploymentConfig, ServerConfig, Settings};
pub use ferrogate_server::tenancy::config::{PriceConfig, Secret, TenancyConfig, TenancySettings};

/// The default model file, served when the configuration names no backend at all.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const DEFAULT_DEPLOYMENT: &str = "smollm2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `info,ferrogate_engine=debug`. `RUST_LOG` wins if set.
    pub level: String,
    /// Log prompt and response text at settle (one `request content` line, redacted: e-mail
    /// addresses, key-like tokens and long digit runs masked). Off by default.
    pub prompts: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".into(), prompts: false }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: ServerConfig,
    log: LogConfig,
    /// Where relative model paths resolve; default `~/.cache/ferrogate/models`.
    model_dir: Option<PathBuf>,
    backends: BTreeMap<String, BackendConfig>,
    /// The embedded models' load budget (docs/SCALING.md, "Hot and cold models").
    engine: ferrogate_backends::PoolConfig,
    deployments: BTreeMap<String, DeploymentConfig>,
    tenancy: TenancyConfig,
    /// USD per million tokens, by deployment (cost budgets).
    prices: BTreeMap<String, PriceConfig>,
    /// Rate limits: rules, shared store, failure policy, trusted proxies.
    limits: LimitsConfig,
    // --- resilience: backpressure, breakers, retries, tiered routing ---
    queue: QueueSection,
    breaker: BreakerSection,
    retry: RetrySection,
    tiers: TiersSection,
    /// Engine-aware routing: the prefix scorer and the engine-load scrape.
    routing: ferrogate_core::affinity::ScorerConfig,
    metrics: MetricsConfig,
    tracing: TracingConfig,
    dashboard: DashboardConfig,
    /// Prompt-injection and PII checks (docs/GUARDRAILS.md).
    guardrails: GuardrailsConfig,
    /// The response cache (docs/STATE.md).
    cache: CacheSection,
    /// Webhook delivery (docs/JOBS.md).
    webhooks: jobs::WebhooksConfig,
    /// Files + Batches (docs/JOBS.md).
    batches: jobs::BatchesConfig,
    /// The Responses and Conversations APIs' state (docs/STATE.md).
    conversations: ferrogate_server::settings::ConversationsSection,
}

/// A checked configuration: the server's run-time [`Settings`], and what only start-up reads —
/// the backends to build, where model files live, how to log.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    pub log: LogConfig,
    pub model_dir: PathBuf,
    pub backends: BTreeMap<String, BackendConfig>,
    /// The pool the embedded backends load their models into, with `[engine]`'s budget: a handle
    /// shared by clones of this config; a reload builds into the start's pool, so `[engine]`
    /// needs a restart.
    pub engines: ferrogate_backends::ModelPool,
    /// `[webhooks]`.
    pub webhooks: jobs::WebhooksConfig,
    /// `[batches]`.
    pub batches: jobs::BatchesConfig,
    /// The merged file and environment as read (reloads compare sections of it).
    pub tree: Tree,
}

/// The configuration as read, before checking: what a reload compares to tell which sections
/// changed. Holds secrets, so its `Debug` prints none of it.
#[derive(Clone, Default)]
pub struct Tree(Option<figment::value::Value>);

impl Tree {
    /// The value at a dotted `path` (`server.listen`), `None` when unset.
    pub fn find(&self, path: &str) -> Option<&figment::value::Value> {
        self.0.as_ref()?.find_ref(path)
    }

    /// Whether `path` is set to the same value in both (unset in both counts as the same).
    pub fn same_at(&self, other: &Tree, path: &str) -> bool {
        self.find(path) == other.find(path)
    }
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tree(..)")
    }
}

impl std::ops::Deref for Config {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl std::ops::DerefMut for Config {
    fn deref_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

/// Every problem found, one per line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem{}):", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where models live when `model_dir` is not set: `$FERROGATE_MODEL_DIR` is read through the
/// env provider; this is the fallback.
pub fn default_model_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/ferrogate/models")
}

/// Loads `path` (optional) and the environment, applies `listen` from the CLI, and checks it all.
pub fn load(path: Option<&Path>, listen: Option<&str>) -> Result<Config, ConfigErrors> {
    let mut fig = Figment::new();
    let mut text = String::new();
    if let Some(p) = path {
        if !p.exists() {
            return Err(ConfigErrors(vec![format!("config file {} does not exist", p.display())]));
        }
        text = std::fs::read_to_string(p)
            .map_err(|e| ConfigErrors(vec![format!("config file {} cannot be read: {e}", p.display())]))?;
        fig = fig.merge(Toml::string(&text));
    }
    fig = fig.merge(env_provider());
    if let Some(l) = listen {
        fig = fig.merge(Serialized::default("server.listen", l));
    }
    let mut cfg = checked(&fig, &text, |raw| {
        if let Some(k) = std::env::var(ferrogate_server::tenancy::config::MASTER_KEY_ENV).ok().filter(|k| !k.is_empty())
        {
            raw.tenancy.master_key = Some(Secret::new(k));
        }
    })?;
    cfg.settings.active.source = path.map(|p| p.display().to_string());
    Ok(cfg)
}

/// `sha256:<hex>` of a configuration file's text: the version `/admin/v1/config` shows.
pub fn version_of(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Loads a configuration given as TOML text (tests, embedding), without environment overrides.
pub fn load_str(toml: &str) -> Result<Config, ConfigErrors> {
    checked(&Figment::new().merge(Toml::string(toml)), toml, |_| {})
}

/// Every problem at once: the structural ones (serde's), then the checks on what is left; each
/// with the line of `text` that sets its key, when there is one.
fn checked(fig: &Figment, text: &str, adjust: impl FnOnce(&mut RawConfig)) -> Result<Config, ConfigErrors> {
    let found = structure::extract::<RawConfig>(fig);
    let mut errs: Vec<String> = found.problems.iter().map(|p| format!("{}: {}", p.path, p.message)).collect();
    if let Some(mut raw) = found.value {
        adjust(&mut raw);
        match check(raw) {
            Ok(mut cfg) if errs.is_empty() => {
                cfg.tree = Tree(fig.extract::<figment::value::Value>().ok());
                cfg.settings.active =
                    ActiveConfig { version: version_of(text), origin: "start", ..ActiveConfig::default() };
                return Ok(cfg);
            }
            Ok(_) => {}
            Err(more) => errs.extend(more.0.into_iter().filter(|e| !about_removed(e, &found.removed))),
        }
    }
    let mut errs: Vec<(Option<usize>, String)> = errs.into_iter().map(|e| with_line(text, e)).collect();
    errs.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    Err(ConfigErrors(errs.into_iter().map(|(_, e)| e).collect()))
}

/// A later check's complaint about an entry structural checking already reported and removed.
fn about_removed(error: &str, removed: &[String]) -> bool {
    removed.iter().filter_map(|r| r.split_once('.')).any(|(_, name)| error.contains(&format!("'{name}'")))
}

/// `line 5: backends.ol.kind: …` when the problem's leading key path is set in the file. For
/// `backends.up: base_url '…' …` the field named next is tried first (`backends.up.base_url`).
fn with_line(text: &str, error: String) -> (Option<usize>, String) {
    let key = error.split([':', ' ']).next().unwrap_or_default();
    let rest = error[key.len()..].trim_start_matches(':').trim_start();
    let field: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let line = lines::line_of(text, &format!("{key}.{field}")).filter(|_| !field.is_empty());
    match line.or_else(|| lines::line_of(text, key)).filter(|_| key.contains('.')) {
        Some(n) => (Some(n), format!("line {n}: {error}")),
        None => (None, error),
    }
}

/// `FERROGATE_MODEL_DIR` and nested keys (`FERROGATE_SERVER__LISTEN`); other `FERROGATE_*`
/// variables (test settings, the CLI's `FERROGATE_URL`) are not configuration keys and are
/// ignored here. `FERROGATE_MASTER_KEY` is read by [`load`] itself. The filter sees the key as
/// written (`MODEL_DIR`): figment lowercases only after it, so the comparison ignores case.
fn env_provider() -> Env {
    Env::prefixed("FERROGATE_").split("__").filter(is_config_key)
}

fn is_config_key(key: &figment::value::UncasedStr) -> bool {
    key.as_str().eq_ignore_ascii_case("model_dir") || key.as_str().contains('.')
}

fn check(mut raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut errs = Vec::new();
    if raw.backends.is_empty() && raw.deployments.is_empty() {
        add_default_model(&mut raw);
    }
    let model_dir = raw.model_dir.clone().unwrap_or_else(default_model_dir);
    let listen = raw.server.listen.parse::<SocketAddr>().map_err(|e| {
        errs.push(format!("server.listen: '{}' is not an address like 127.0.0.1:8080 ({e})", raw.server.listen));
    });
    check_server(&raw.server, &mut errs);
    if let Some(tls) = &raw.server.tls {
        ferrogate_server::tls::check(tls, &mut errs);
    }
    for (name, backend) in &mut raw.backends {
        if name.contains('@') {
            errs.push(format!(
                "backends.{name}: '@' is reserved in backend names (discovered backends are <name>@<address>)"
            ));
        }
        // `hf://…` sources are fetched at start (`compose::fetch_models`), not looked up here.
        let local = |e: &ferrogate_backends::EngineConfig| hub_file(&e.model_path).is_none();
        if let BackendConfig::Embedded(engine) = backend
            && local(engine)
            && engine.model_path.is_relative()
        {
            engine.model_path = model_dir.join(&engine.model_path);
        }
        if let BackendConfig::Embedded(engine) = backend
            && local(engine)
            && !engine.model_path.is_file()
        {
            errs.push(format!(
                "backends.{name}: model file {} not found (run `make fetch-models`, or set model_path/model_dir)",
                engine.model_path.display()
            ));
        }
        errs.extend(backend.validate(name));
    }
    check_engine(&raw, &mut errs);
    check_deployments(&raw, &mut errs);
    let names: Vec<&str> = raw.deployments.keys().map(String::as_str).collect();
    let tenancy = ferrogate_server::tenancy::config::check(&raw.tenancy, &raw.prices, &names, &mut errs);
    let models: Vec<_> = raw
        .deployments
        .iter()
        .map(|(name, d)| ferrogate_server::limits::config::ModelNames { name, aliases: &d.aliases })
        .collect();
    let limits = ferrogate_server::limits::config::check(&raw.limits, &models, &mut errs);
    if let Some(url) = &raw.limits.redis_url
        && let Err(e) = ferrogate_store::redis_limits::check_url(url.expose())
    {
        errs.push(format!("limits.redis_url: {e}"));
    }
    if raw.breaker.shared && raw.limits.redis_url.is_none() {
        errs.push("breaker.shared needs limits.redis_url (the replicas tell each other through that Redis)".into());
    }
    let resilience =
        Resilience { queue: raw.queue, breaker: raw.breaker, retry: raw.retry, tiers: raw.tiers, routing: raw.routing };
    ferrogate_server::resilience::config::check(&resilience, &raw.deployments, &mut errs);
    let obs = ferrogate_server::observability::config::check(
        raw.metrics,
        raw.tracing,
        raw.dashboard,
        raw.log.prompts,
        &mut errs,
    );
    let overrides = raw.deployments.iter().map(|(n, d)| (n.clone(), d.guardrails)).collect();
    let guardrails = ferrogate_server::guardrails::config::check(raw.guardrails, &overrides, &mut errs);
    check_cache(&raw.cache, &mut errs);
    jobs::check(&raw.webhooks, &raw.batches, &mut errs);
    raw.conversations.check(&mut errs);
    match listen {
        Ok(listen) if errs.is_empty() => Ok(Config {
            settings: Settings {
                server: raw.server,
                listen,
                deployments: raw.deployments,
                tenancy,
                limits,
                resilience,
                obs,
                guardrails,
                cache: raw.cache,
                conversations: raw.conversations,
                active: ActiveConfig::default(),
            },
            log: raw.log,
            model_dir,
            backends: raw.backends,
            engines: ferrogate_backends::ModelPool::new(raw.engine),
            webhooks: raw.webhooks,
            batches: raw.batches,
            tree: Tree::default(),
        }),
        _ => Err(ConfigErrors(errs)),
    }
}

/// `[engine]` and the embedded models' load settings: a budget of at least one model (or byte)
/// that holds every pinned model (never unloaded: `hot` without a `keep_alive`).
fn check_engine(raw: &RawConfig, errs: &mut Vec<String>) {
    let e = &raw.engine;
    if e.max_loaded_models == Some(0) || e.max_loaded_bytes == Some(0) {
        errs.push("engine.max_loaded_models and engine.max_loaded_bytes must be at least 1 when set".into());
    }
    let embedded = raw.backends.iter().filter_map(|(n, b)| match b {
        BackendConfig::Embedded(c) => Some((n, c)),
        _ => None,
    });
    let mut pinned = 0;
    for (name, c) in embedded {
        if c.load_timeout_ms == 0 {
            errs.push(format!("backends.{name}: load_timeout_ms must be at least 1"));
        }
        pinned += usize::from(c.idle_limit().is_none());
    }
    if let Some(max) = e.max_loaded_models.filter(|max| pinned > *max) {
        errs.push(format!(
            "engine.max_loaded_models is {max} but {pinned} embedded models are never unloaded (load = \"hot\" \
             without keep_alive): give some load = \"on_demand\" or a keep_alive"
        ));
    }
}

fn check_cache(c: &CacheSection, errs: &mut Vec<String>) {
    if c.max_bytes == 0 {
        errs.push("cache.max_bytes must be greater than 0".into());
    }
    if c.ttl_secs == 0 || c.ttl_secs > 30 * 86_400 {
        errs.push("cache.ttl_secs must be between 1 and 2592000 (30 days)".into());
    }
    if let Some(url) = &c.redis_url
        && let Err(e) = ferrogate_store::redis_limits::check_url(url.expose())
    {
        errs.push(format!("cache.redis_url: {e}"));
    }
}

fn add_default_model(raw: &mut RawConfig) {
    let embedded = serde_json::json!({ "kind": "embedded", "model_path": DEFAULT_MODEL_FILE });
    match serde_json::from_value::<BackendConfig>(embedded) {
        Ok(backend) => raw.backends.insert(DEFAULT_DEPLOYMENT.into(), backend),
        Err(e) => {
            tracing::error!(error = %e, "built-in default backend does not deserialize");
            return;
        }
    };
    raw.deployments.insert(
        DEFAULT_DEPLOYMENT.into(),
        DeploymentConfig {
            backends: vec![DEFAULT_DEPLOYMENT.into()],
            aliases: vec!["default".into()],
            ..DeploymentConfig::default()
        },
    );
}

/// Upper bound of `server.max_connections`.
const MAX_CONNECTIONS_CAP: usize = 1_000_000;
/// Upper bound of the accept side's timeouts: beyond a day is a typo, and deadlines are
/// `Instant + timeout`, which must not overflow.
const MAX_ACCEPT_TIMEOUT_SECS: u64 = 86_400;

fn check_server(s: &ServerConfig, errs: &mut Vec<String>) {
    let positive = [
        ("body_limit_bytes", s.body_limit_bytes as u64),
        ("request_timeout_secs", s.request_timeout_secs),
        ("sse_keepalive_secs", s.sse_keepalive_secs),
        ("health_check_interval_secs", s.health_check_interval_secs),
        ("max_messages", s.max_messages as u64),
        ("client_write_timeout_secs", s.client_write_timeout_secs),
        ("max_message_bytes", s.max_message_bytes as u64),
        ("header_read_timeout_secs", s.header_read_timeout_secs),
        ("idle_timeout_secs", s.idle_timeout_secs),
        ("body_read_timeout_secs", s.body_read_timeout_secs),
        ("max_connections", s.max_connections as u64),
        ("listen_backlog", u64::from(s.listen_backlog)),
    ];
    for (field, v) in positive {
        if v == 0 {
            errs.push(format!("server.{field} must be greater than 0"));
        }
    }
    // The kernel takes an int and caps it at net.core.somaxconn (at most 65,535 before Linux 5.4).
    if s.listen_backlog > 65_535 {
        errs.push(format!("server.listen_backlog must be at most 65535 (got {})", s.listen_backlog));
    }
    // A tokio semaphore holds at most `usize::MAX >> 3` permits; a million is already more
    // descriptors than a default process may open.
    if s.max_connections > MAX_CONNECTIONS_CAP {
        errs.push(format!("server.max_connections must be at most {MAX_CONNECTIONS_CAP}"));
    }
    let timeouts = [
        ("header_read_timeout_secs", s.header_read_timeout_secs),
        ("idle_timeout_secs", s.idle_timeout_secs),
        ("body_read_timeout_secs", s.body_read_timeout_secs),
    ];
    for (field, v) in timeouts {
        if v > MAX_ACCEPT_TIMEOUT_SECS {
            errs.push(format!("server.{field} must be at most {MAX_ACCEPT_TIMEOUT_SECS} (one day)"));
        }
    }
    if s.api_keys.iter().any(|k| k.len() < 8) {
        errs.push("server.api_keys: every key must be at least 8 characters".into());
    }
}

fn check_deployments(raw: &RawConfig, errs: &mut Vec<String>) {
    if raw.deployments.is_empty() {
        errs.push("no deployments: add a [deployments.NAME] table naming a backend".into());
    }
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, d) in &raw.deployments {
        if d.backends.is_empty() {
            errs.push(format!("deployments.{name}.backends must name at least one backend"));
        }
        for b in &d.backends {
            if !raw.backends.contains_key(b) {
                let names: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
                let hint = structure::did_you_mean(b, &names);
                errs.push(format!("deployments.{name}.backends: no backend named '{b}'{hint} (known: {})", known(raw)));
            }
        }
        if d.cache_ttl_secs.is_some_and(|t| t == 0 || t > 30 * 86_400) {
            errs.push(format!("deployments.{name}.cache_ttl_secs must be between 1 and 2592000 (30 days)"));
        }
        for n in std::iter::once(name.as_str()).chain(d.aliases.iter().map(String::as_str)) {
            if n.is_empty() {
                errs.push(format!("deployments.{name}: empty model name"));
            } else if let Some(other) = names.insert(n, name) {
                errs.push(format!("model name '{n}' is used by deployments '{other}' and '{name}'"));
            }
        }
    }
}

fn known(raw: &RawConfig) -> String {
    let names: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn from_toml(s: &str) -> Result<Config, ConfigErrors> {
        load_str(s)
    }

    /// Issue 17: the derived `Debug` printed `server.api_keys` (and URLs with credentials).
    #[test]
    fn the_model_budget_must_hold_every_pinned_model() {
        let model = DEFAULT_MODEL_FILE;
        let toml = |engine: &str, second: &str| {
            format!(
                "model_dir = \"/nonexistent\"\n{engine}\n[backends.a]\nkind = \"embedded\"\nmodel_path = \"{model}\"\n\
                 [backends.b]\nkind = \"embedded\"\nmodel_path = \"{model}\"\n{second}\n\
                 [deployments.m]\nbackends = [\"a\", \"b\"]\n"
            )
        };
        let errs = |t: String| from_toml(&t).err().map(|e| e.0.join("\n")).unwrap_or_default();
        let two_hot = errs(toml("[engine]\nmax_loaded_models = 1", ""));
        assert!(two_hot.contains("engine.max_loaded_models is 1 but 2"), "{two_hot}");
        let one_cold = errs(toml("[engine]\nmax_loaded_models = 1", "load = \"on_demand\""));
        assert!(!one_cold.contains("max_loaded_models"), "{one_cold}");
        let zero = errs(toml("[engine]\nmax_loaded_models = 0", "load = \"on_demand\"\nload_timeout_ms = 0"));
        assert!(zero.contains("must be at least 1 when set") && zero.contains("backends.b: load_timeout_ms"), "{zero}");
    }

    #[test]
    fn at_is_reserved_in_backend_names() {
        let t = "[backends.\"a@b\"]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\n\
                 [deployments.m]\nbackends = [\"a@b\"]\n";
        let e = from_toml(t).err().map(|e| e.0.join("\n")).unwrap_or_default();
        assert!(e.contains("'@' is reserved"), "{e}");
    }

    #[test]
    fn debug_of_the_whole_config_prints_no_secret() {
        let cfg = from_toml(
            r#"
            [server]
            api_keys = ["sk-static-secret-1"]
            [tenancy]
            master_key = "master-secret-0123456789"
            database_url = "postgres://u:db-secret@127.0.0.1/x"
            [limits]
            redis_url = "redis://:redis-secret@127.0.0.1:6379"
            [backends.up]
            kind = "openai"
            base_url = "https://u:url-secret@example.com/v1"
            api_key = "sk-upstream-secret"
            proxy = "http://p:proxy-secret@proxy:3128"
            headers = { "api-key" = "header-secret" }
            [deployments.m]
            backends = ["up"]
            "#,
        )
        .unwrap();
        let printed = format!("{cfg:?}");
        for secret in ["static-secret", "master-secret", "db-secret", "redis-secret", "url-secret", "upstream-secret"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        assert!(!printed.contains("proxy-secret") && !printed.contains("header-secret"), "{printed}");
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errs = from_toml(
            r#"
            [server]
            listen = "nope"
            sse_keepalive_secs = 0
            [backends.up]
            kind = "openai"
            base_url = "http://127.0.0.1:9/v1"
            [deployments.a]
            backends = ["missing"]
            [deployments.b]
            backends = ["up"]
            aliases = ["a"]
            "#,
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        assert!(all.contains("server.listen"), "{all}");
        assert!(all.contains("sse_keepalive_secs"), "{all}");
        assert!(all.contains("no backend named 'missing'"), "{all}");
        assert!(all.contains("model name 'a'"), "{all}");
        assert_eq!(errs.0.len(), 4, "{all}");
    }

    #[test]
    fn accept_side_problems_are_listed_with_the_others() {
        let errs = from_toml(
            "[server]\nheader_read_timeout_secs = 0\nidle_timeout_secs = 100000\nbody_read_timeout_secs = 0\n\
             max_connections = 2000000\nsse_keepalive_secs = 0\nlisten_backlog = 70000\n",
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        let fields = ["header_read_timeout_secs", "idle_timeout_secs", "body_read_timeout_secs", "max_connections"];
        for field in fields.iter().chain(&["listen_backlog"]) {
            assert!(all.contains(&format!("server.{field}")), "{field}: {all}");
        }
        assert_eq!(errs.0.len(), 6, "{all}");
        let ok = from_toml("").unwrap();
        assert_eq!(
            (ok.server.header_read_timeout_secs, ok.server.idle_timeout_secs, ok.server.body_read_timeout_secs),
            (10, 60, 30)
        );
        assert_eq!(ok.server.max_connections, 10_000);
        assert_eq!(ok.server.listen_backlog, 4096);
    }

    #[test]
    fn tenancy_problems_are_listed_with_the_others() {
        let errs = from_toml(
            r#"
            [server]
            listen = "nope"
            [tenancy]
            master_key = "short"
            database_url = "mysql://u:secret@h/db"
            ledger_flush_interval_ms = 0
            [backends.up]
            kind = "openai"
            base_url = "http://127.0.0.1:9/v1"
            [deployments.m]
            backends = ["up"]
            [prices.nope]
            input = 1.0
            output = -2.0
            "#,
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for needle in
            ["server.listen", "tenancy.master_key", "tenancy.database_url", "ledger_flush_interval_ms", "prices.nope"]
        {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(errs.0.len(), 6, "{all}");
        assert!(!all.contains("secret"), "{all}");
    }

    #[test]
    fn tenancy_is_on_with_a_master_key_and_off_without() {
        let base = "[backends.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[deployments.m]\nbackends = [\"up\"]\n";
        assert!(from_toml(base).unwrap().tenancy.is_none());
        let on = from_toml(&format!(
            "{base}[tenancy]\nmaster_key = \"0123456789abcdefgh\"\n[prices.m]\ninput = 0.5\noutput = 1.5\n"
        ))
        .unwrap();
        let t = on.settings.tenancy.unwrap();
        assert!(t.database_url.expose().starts_with("sqlite://") && t.database_url.expose().ends_with("/ferrogate.db"));
        assert_eq!(t.prices["m"].output, 1.5);
        assert!(!format!("{t:?}").contains("0123456789abcdefgh"), "the master key never prints");
    }

    #[test]
    fn resilience_problems_are_listed_with_the_others() {
        let errs = from_toml(
            r#"
            [server]
            listen = "nope"
            [queue]
            max_wait_ms = 0
            [breaker]
            failure_rate = 2.0
            [retry]
            budget_ratio = -1.0
            [tiers]
            small = "a"
            large = "missing"
            [tiers.keys]
            "fg-abc" = "huge"
            [backends.up]
            kind = "openai"
            base_url = "http://127.0.0.1:9/v1"
            [deployments.a]
            backends = ["up"]
            weights = { other = 2 }
            fallbacks = ["a", "nope"]
            concurrency = 0
            "#,
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for needle in [
            "server.listen",
            "queue.max_wait_ms",
            "breaker.failure_rate",
            "retry.budget_ratio",
            "tiers.large",
            "tiers.keys.fg-abc",
            "deployments.a.weights",
            "fall back to itself",
            "no deployment named 'nope'",
            "deployments.a.concurrency",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(errs.0.len(), 10, "{all}");
    }

    #[test]
    fn routing_is_chosen_per_deployment_and_its_knobs_are_checked() {
        let base = "[backends.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                    [backends.b]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:10/v1\"\n";
        let cfg = from_toml(&format!(
            "{base}[deployments.p]\nbackends = [\"a\", \"b\"]\nrouting = \"prefix\"\n\
             [deployments.d]\nbackends = [\"a\", \"b\"]\n[routing]\nguard_pending = 8\n"
        ))
        .unwrap();
        use ferrogate_core::affinity::RoutingMode;
        assert_eq!(cfg.deployments["p"].routing, RoutingMode::Prefix);
        assert_eq!(cfg.deployments["d"].routing, RoutingMode::P2c, "the default");
        assert_eq!(cfg.resilience.routing.guard_pending, 8);
        let errs =
            from_toml(&format!("{base}[deployments.p]\nbackends = [\"a\"]\nrouting = \"fastest\"\n")).unwrap_err();
        assert!(errs.0.join("\n").contains("fastest"), "{:?}", errs.0);
        let errs = from_toml(&format!(
            "{base}[deployments.p]\nbackends = [\"a\"]\n[routing]\nblock_bytes = 4\nscrape_interval_ms = 0\n"
        ))
        .unwrap_err();
        assert_eq!(errs.0.len(), 2, "{:?}", errs.0);
        assert!(errs.0.join("\n").contains("routing.block_bytes"), "{:?}", errs.0);
    }

    #[test]
    fn observability_problems_are_listed_with_the_others() {
        let errs = from_toml(
            "[server]\nlisten = \"nope\"\n[metrics]\nlisten = \"x\"\n[tracing]\nenabled = true\nendpoint = \"grpc://h\"\nsampling_ratio = 2.0\nprotocol = \"grpc\"\nmax_export_batch_spans = 0\n",
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        for needle in [
            "server.listen",
            "metrics.listen",
            "tracing.sampling_ratio",
            "tracing.protocol",
            "tracing.endpoint",
            "tracing.max_export_batch_spans",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn problems_inside_arrays_of_tables_are_all_listed_with_their_lines() {
        let errs = from_toml(
            "[[limits.rules]]\nname = \"a\"\nscope = \"tenat\"\nrequests_per_minute = \"x\"\n\
             [backends.b]\nkind = \"openai\"\nbase_url = \"http://h/v1\"\n[deployments.d]\nbackends = [\"b\"]\n",
        )
        .unwrap_err();
        let all = errs.0.join("\n");
        assert!(all.contains("line 3: limits.rules.0.scope: 'tenat' is not one of"), "{all}");
        assert!(all.contains("did you mean 'tenant'?"), "{all}");
        assert!(all.contains("line 4: limits.rules.0.requests_per_minute: must be a non-negative integer"), "{all}");
        assert!(!all.contains("missing"), "a replaced enum value is not reported missing: {all}");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let errs = from_toml("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(errs.0[0].contains("listen_addr"), "{:?}", errs.0);
    }

    #[test]
    fn openai_deployment_is_valid() {
        let c = from_toml(
            "[backends.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[deployments.m]\nbackends = [\"up\"]\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.deployments["m"].backends, vec!["up".to_string()]);
    }

    #[test]
    fn empty_config_serves_the_default_model() {
        let raw = RawConfig { model_dir: Some("/nonexistent".into()), ..RawConfig::default() };
        let errs = check(raw).unwrap_err();
        assert!(errs.0.iter().any(|e| e.contains(DEFAULT_MODEL_FILE)), "{:?}", errs.0);
    }
}
