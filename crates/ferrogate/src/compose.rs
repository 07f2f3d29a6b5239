//! The composition root: from a checked [`Config`], build what the server serves — the backends
//! (`ferrogate-backends`), the deployments and breakers over them, the tenancy store and its
//! ledger writer and the rate-limit store (`ferrogate-store`) — and hand them to the server as
//! core's traits ([`Services`]). The server never names a backend or a store.

use std::collections::HashMap;
use std::sync::Arc;

use ferrogate_backends::embedded::source;
use ferrogate_backends::{BackendConfig, BuildContext};
use ferrogate_core::breaker::Breaker;
use ferrogate_core::cache::{MemoryCache, MemoryIndex, ResponseCache, SemanticIndex, TieredCache};
use ferrogate_core::conversations::ConversationStore;
use ferrogate_core::limits::LimitStore;
use ferrogate_core::limits::memory::MemoryLimitStore;
use ferrogate_core::tenancy::UsageStore;
use ferrogate_core::tenancy::ledger::{LedgerConfig, LedgerWriter, OpenStore};
use ferrogate_core::tenancy::spool::{Recovered, Spool};
use ferrogate_core::tenancy::time::Clock;
use ferrogate_core::{Backend, Deployment, Registry, Target};
use ferrogate_server::Services;
use ferrogate_server::tenancy::Tenancy;
use ferrogate_server::tenancy::config::TenancySettings;
use ferrogate_server::tenancy::quotas::SharedQuota;
use ferrogate_store::redis_breakers::BreakerSet;
use ferrogate_store::redis_budgets::RedisBudgets;
use ferrogate_store::redis_cache::{RedisCacheOptions, RedisResponseCache};
use ferrogate_store::redis_limits::{RedisLimitStore, RedisOptions};
use ferrogate_store::semantic_pg::PgSemanticIndex;
use ferrogate_store::{Store, StoreOptions};

use crate::config::Config;

/// The server's services from `cfg`, and with `[breaker] shared` the set of breakers the fleet
/// shares (for the reloader to refresh); errors list every backend that failed.
pub async fn services(cfg: &Config, clock: Arc<dyn Clock>) -> Result<(Services, Option<BreakerSet>), Vec<String>> {
    let backends = backends(cfg)?;
    let now = tokio::time::Instant::now();
    let breakers: HashMap<String, Arc<Breaker>> =
        backends.keys().map(|k| (k.clone(), Arc::new(Breaker::new(cfg.resilience.breaker.to_core(), now)))).collect();
    let registry = registry(cfg, &backends, &breakers)?;
    let shared_breakers = share_breakers(cfg, &breakers).map_err(|e| vec![e])?;
    let (tenancy, tenancy_store, jobs) = match &cfg.tenancy {
        Some(t) => {
            let (tenancy, store) = tenancy(cfg, t, Arc::clone(&clock)).await.map_err(|e| vec![e])?;
            let jobs = crate::compose_jobs::services(cfg, t, &store).map_err(|e| vec![e])?;
            (Some(Arc::new(tenancy)), Some(store), Some(jobs))
        }
        None => (None, None, None),
    };
    let conversations = conversation_store(cfg, tenancy_store).await.map_err(|e| vec![e])?;
    let clock = tenancy.as_ref().map_or(clock, |t| Arc::clone(&t.clock));
    let limit_store = limit_store(cfg, Arc::clone(&clock)).map_err(|e| vec![e])?;
    let cache = response_cache(cfg, Arc::clone(&clock)).map_err(|e| vec![e])?;
    let semantic = semantic_index(cfg).await.map_err(|e| vec![e])?;
    let services = Services {
        registry,
        backends: backends.into_values().collect(),
        breakers,
        tenancy,
        limit_store,
        cache,
        semantic,
        clock,
        jobs,
        conversations,
    };
    Ok((services, shared_breakers))
}

/// With `[breaker] shared`, this replica's breaker opens reach the others (and theirs reach it)
/// through `limits.redis_url`; the loops live as long as the process.
fn share_breakers(cfg: &Config, breakers: &HashMap<String, Arc<Breaker>>) -> Result<Option<BreakerSet>, String> {
    let (true, Some(url)) = (cfg.resilience.breaker.shared, &cfg.limits.redis_url) else { return Ok(None) };
    let stop = tokio_util::sync::CancellationToken::new();
    let set = BreakerSet::new(breakers.clone());
    ferrogate_store::redis_breakers::spawn(url.expose(), &cfg.limits.key_prefix, set.clone(), stop)
        .map(|_| Some(set))
        .map_err(|e| format!("limits.redis_url (shared breakers): {e}"))
}

fn backends(cfg: &Config) -> Result<HashMap<String, Arc<dyn Backend>>, Vec<String>> {
    let cx = BuildContext { model_dir: cfg.model_dir.clone(), engines: cfg.engines.clone() };
    let mut errs = Vec::new();
    let mut out = HashMap::new();
    for (name, bc) in &cfg.backends {
        match ferrogate_backends::build(name, bc.clone(), &cx) {
            Ok(b) => {
                out.insert(name.clone(), b);
            }
            Err(e) => errs.push(format!("backends.{name}: {e}")),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// The deployments over the built backends, each with its resilience policy.
pub(crate) fn registry(
    cfg: &Config,
    backends: &HashMap<String, Arc<dyn Backend>>,
    breakers: &HashMap<String, Arc<Breaker>>,
) -> Result<Registry, Vec<String>> {
    let created = ferrogate_protocol::openai::unix_now();
    Registry::new(
        cfg.deployments.iter().map(|(name, d)| deployment(cfg, name, d, backends, breakers, created)).collect(),
    )
}

/// Deployment `name` of `cfg` over the built backends, with its resilience policy.
pub(crate) fn deployment(
    cfg: &Config,
    name: &str,
    d: &crate::config::DeploymentConfig,
    backends: &HashMap<String, Arc<dyn Backend>>,
    breakers: &HashMap<String, Arc<Breaker>>,
    created: u64,
) -> Deployment {
    let res = &cfg.resilience;
    let slots = |b: &str| match cfg.backends.get(b) {
        Some(BackendConfig::Embedded(e)) => e.parallel.unwrap_or(1),
        Some(_) => res.queue.backend_concurrency,
        None => 0,
    };
    let upstream = d.upstream_model.clone().unwrap_or_else(|| name.to_owned());
    let targets = d
        .backends
        .iter()
        .filter_map(|b| Some((b, backends.get(b)?, breakers.get(b)?)))
        .map(|(b, backend, breaker)| {
            let weight = d.weights.get(b).copied().unwrap_or(1);
            Arc::new(Target::with(Arc::clone(backend), upstream.clone(), weight, Arc::clone(breaker)))
        })
        .collect();
    let policy = ferrogate_server::resilience::policy(res, d, slots);
    Deployment::with_policy(name.to_owned(), d.aliases.clone(), targets, created, policy)
}

/// Opens the database (creating and migrating it), starts the ledger writer on its own
/// idle-priority thread over a connection of its own (the shared pool when it falls behind, see
/// `LedgerWriter::spawn_on_thread`), and builds the tenancy service over them.
async fn tenancy(cfg: &Config, s: &TenancySettings, clock: Arc<dyn Clock>) -> Result<(Tenancy, Arc<Store>), String> {
    let url = s.database_url.expose().to_owned();
    let store = Store::connect(&url).await.map_err(|e| format!("tenancy.database_url: {e}"))?;
    let open: OpenStore = Box::new(move || {
        Box::pin(async move {
            // The schema is already migrated by then.
            let options = StoreOptions { max_connections: 1, migrate: false, ..StoreOptions::default() };
            let store = Store::connect_with(&url, &options).await.map_err(|e| format!("tenancy.database_url: {e}"))?;
            Ok(Arc::new(store) as Arc<dyn UsageStore>)
        })
    });
    let (spool, recovered) = Spool::open(&s.ledger_spool)
        .map_err(|e| format!("tenancy.ledger_spool_dir {}: {e}", s.ledger_spool.display()))?;
    let ledger_cfg = LedgerConfig {
        flush_interval: s.ledger_flush_interval,
        spool: Some(Arc::new(spool)),
        ..LedgerConfig::default()
    };
    let store = Arc::new(store);
    let writer = LedgerWriter::spawn_on_thread(open, Arc::clone(&store) as Arc<dyn UsageStore>, ledger_cfg).await?;
    replay(&writer, recovered);
    let tenancy = Tenancy::new(Arc::clone(&store) as _, writer, s, &cfg.deployments, clock, shared_budgets(cfg, s)?);
    Ok((tenancy, store))
}

/// Budgets and in-flight caps in Redis when `limits.redis_url` is set (and `tenancy.shared_budgets`
/// is not turned off): every replica then sees every reservation.
fn shared_budgets(cfg: &Config, s: &TenancySettings) -> Result<Option<SharedQuota>, String> {
    let (Some(url), true) = (&cfg.limits.redis_url, s.shared_budgets) else { return Ok(None) };
    let l = &cfg.limits;
    let store = RedisBudgets::open(url.expose(), &l.key_prefix, l.redis_timeout)
        .map_err(|e| format!("limits.redis_url: {e}"))?;
    Ok(Some(SharedQuota {
        store: Arc::new(store),
        on_error: s.budgets_on_store_error,
        lease_ttl: s.inflight_lease,
        correct_interval: s.budget_correct_interval,
    }))
}

/// The store of the Responses and Conversations APIs: the tenancy database when tenancy is on,
/// else `conversations.database_url` when set, else none (the endpoints answer 404).
async fn conversation_store(
    cfg: &Config,
    tenancy: Option<Arc<Store>>,
) -> Result<Option<Arc<dyn ConversationStore>>, String> {
    let c = &cfg.conversations;
    if !c.enabled {
        return Ok(None);
    }
    if let Some(store) = tenancy {
        return Ok(Some(store as Arc<dyn ConversationStore>));
    }
    let Some(url) = &c.database_url else { return Ok(None) };
    let store = Store::connect(url.expose()).await.map_err(|e| format!("conversations.database_url: {e}"))?;
    Ok(Some(Arc::new(store)))
}

/// Hands the rows a crashed run left in the spool to the ledger again (spooled anew first, so
/// they stay safe until written; rows already in the database are skipped by their ids), then
/// removes the old files.
fn replay(writer: &LedgerWriter, recovered: Recovered) {
    if recovered.rows.is_empty() && recovered.files.is_empty() {
        return;
    }
    let rows = recovered.rows.len();
    let taken = recovered.rows.iter().filter(|r| writer.record((*r).clone())).count();
    tracing::warn!(
        rows,
        taken,
        unreadable = recovered.unreadable,
        "usage rows recovered from the ledger spool of a previous run"
    );
    if taken == rows {
        Recovered { rows: Vec::new(), ..recovered }.remove();
    }
}

/// In process, or on Redis when `limits.redis_url` is set (connects lazily: a Redis that is down
/// at start follows `on_store_error` until it is back).
fn limit_store(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn LimitStore>, String> {
    let s = &cfg.limits;
    Ok(match &s.redis_url {
        Some(url) => {
            let opts = RedisOptions { key_prefix: s.key_prefix.clone(), timeout: s.redis_timeout };
            Arc::new(RedisLimitStore::open(url.expose(), opts).map_err(|e| format!("limits.redis_url: {e}"))?)
        }
        None => Arc::new(MemoryLimitStore::new(clock)),
    })
}

/// The response cache, when a deployment opts in: in process (moka, bounded by `cache.max_bytes`),
/// behind which Redis is shared by every replica when `cache.redis_url` is set.
fn response_cache(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Option<Arc<dyn ResponseCache>>, String> {
    let c = &cfg.cache;
    if !cfg.deployments.values().any(|d| d.cache) {
        return Ok(None);
    }
    let near: Arc<dyn ResponseCache> = Arc::new(MemoryCache::new(c.max_bytes, clock));
    let Some(url) = &c.redis_url else { return Ok(Some(near)) };
    let opts = RedisCacheOptions { key_prefix: c.key_prefix.clone(), ..RedisCacheOptions::default() };
    let far = Arc::new(RedisResponseCache::open(url.expose(), opts).map_err(|e| format!("cache.redis_url: {e}"))?);
    // A near copy lives at most this long, so a replica serves an entry the fleet replaced for
    // no longer than this.
    let near_ttl = std::time::Duration::from_secs(c.ttl_secs.min(60));
    Ok(Some(Arc::new(TieredCache::new(near, far, near_ttl))))
}

/// The semantic cache's index when a deployment opts in: PostgreSQL when
/// `cache.semantic_database_url` is set (shared by replicas), else in process.
async fn semantic_index(cfg: &Config) -> Result<Option<Arc<dyn SemanticIndex>>, String> {
    let c = &cfg.cache;
    if !cfg.deployments.values().any(|d| d.semantic_cache.is_some()) {
        return Ok(None);
    }
    match &c.semantic_database_url {
        Some(url) => Ok(Some(Arc::new(PgSemanticIndex::connect(url.expose(), c.semantic_per_scope).await?))),
        None => Ok(Some(Arc::new(MemoryIndex::new(c.semantic_per_scope, c.semantic_max_scopes)))),
    }
}

/// Fetches every `hf://` model into `<model_dir>/hf` (a cached file needs no network) and points
/// its backend at the local file. Runs before the port is bound, as llama-server's `-hf` does: a
/// gateway that cannot get its model refuses to start, naming the source and the cause.
pub async fn fetch_models(cfg: &mut Config) -> Result<(), Vec<String>> {
    let cache = source::hub_cache_dir(&cfg.model_dir);
    let endpoint = source::hub_endpoint();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut errs = Vec::new();
    for (name, backend) in &mut cfg.backends {
        let BackendConfig::Embedded(engine) = backend else { continue };
        match source::hub_file(&engine.model_path) {
            None => {}
            Some(Err(e)) => errs.push(format!("backends.{name}: {e}")),
            Some(Ok(hub)) => match source::fetch(&hub, &cache, &endpoint, progress).await {
                Ok(path) => {
                    tracing::info!(backend = %name, source = %hub, path = %path.display(), "model file ready");
                    engine.model_path = path;
                }
                Err(e) => errs.push(format!("backends.{name}: {e}")),
            },
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
