//! Rate-limit counters in Redis: core's [`LimitStore`] shared by every gateway replica.
//!
//! - One atomic Lua script per check (`redis_acquire.lua`), one round trip: it reads Redis's own
//!   clock (`TIME`), decides every counter and charges all or none. Sent as `EVALSHA`; on
//!   `NOSCRIPT` (after a restart or `SCRIPT FLUSH`) redis-rs loads it and repeats the call.
//! - The script mirrors `ferrogate_core::limits::{gcra, window}`; the decision details behind the
//!   response headers are computed by those same functions from the state the script returns, so
//!   both stores answer alike (one behaviour suite runs against each).
//! - Every call is bounded by a short timeout (`timeout`, 50 ms by default): a dead or slow Redis
//!   makes a check fail fast with [`LimitError`], and the caller applies its failure policy.
//!   The connection is lazy and reconnects by itself ([`ConnectionManager`]), so a gateway starts
//!   while Redis is down and recovers when it is back.
//! - Refunds run off the request path in a tracked task (`LimitStore::shutdown` waits for them),
//!   coalesced: refunds released within [`REFUND_COALESCE`] of each other are summed per counter
//!   and sent as one script call. A refund per request would double the Redis round trips (and
//!   the gateway's CPU for them); held back a few milliseconds, a counter is only that much
//!   longer stricter than it will be.
//!
//! Not supported: Redis Cluster (a check's keys would have to share a hash slot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::limits::{self, Acquired, Algorithm, Check, LimitError, LimitStore, Refund, State};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::task::TaskTracker;

const ACQUIRE: &str = include_str!("redis_acquire.lua");
const REFUND: &str = include_str!("redis_refund.lua");
/// How long a refund waits for others to share its script call.
pub const REFUND_COALESCE: Duration = Duration::from_millis(5);
/// Most counters one refund call names (a larger backlog is sent in several calls).
const REFUND_KEYS_PER_CALL: usize = 256;

/// A counter's refund in the script's terms: (key, algo, window of the charge) → amount.
type RefundKey = (String, &'static str, i64);

/// Refunds waiting for their coalesced call.
#[derive(Default)]
struct PendingRefunds {
    amounts: HashMap<RefundKey, i64>,
    /// A task will send `amounts`.
    scheduled: bool,
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Prepended to every counter key (several gateways fleets can share one Redis).
    pub key_prefix: String,
    /// Bound of one check (connect, send, answer), e.g. 50 ms.
    pub timeout: Duration,
}

/// The Redis [`LimitStore`].
pub struct RedisLimitStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    acquire: Script,
    refund: Script,
    tasks: TaskTracker,
    pending: Arc<Mutex<PendingRefunds>>,
    /// Refunds that failed (Redis unreachable): they are lost, limits are briefly stricter.
    refund_errors: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisLimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisLimitStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Checks a Redis URL without connecting; the error never repeats the URL (it may hold a password).
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url).map(|_| ()).map_err(|e| format!("not a valid Redis URL ({})", e.kind_name()))
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    /// The error's category, never its text (which may repeat the URL).
    fn kind_name(&self) -> String {
        self.category().to_owned()
    }
}

impl RedisLimitStore {
    /// A store on `url`; connects lazily (on the current tokio runtime), so a Redis that is down
    /// at start does not stop the gateway: checks fail until it is reachable.
    pub fn open(url: &str, opts: RedisOptions) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("not a valid Redis URL ({})", e.kind_name()))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(opts.timeout))
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| format!("cannot set up the Redis connection ({})", e.kind_name()))?;
        Ok(Self {
            conn,
            prefix: opts.key_prefix,
            timeout: opts.timeout,
            acquire: Script::new(ACQUIRE),
            refund: Script::new(REFUND),
            tasks: TaskTracker::new(),
            pending: Arc::default(),
            refund_errors: Arc::new(AtomicU64::new(0)),
        })
    }

    async fn run_acquire(&self, checks: &[Check]) -> Result<Vec<i64>, LimitError> {
        let mut inv = self.acquire.prepare_invoke();
        for c in checks {
            let q = &c.quota;
            inv.key(format!("{}{}", self.prefix, c.key));
            let (algo, inc, tol) = match q.algorithm {
                Algorithm::Gcra => ("g", q.units_us(c.cost), q.units_us(q.burst)),
                Algorithm::SlidingWindow => ("w", 0, 0),
            };
            inv.arg(algo).arg(c.cost).arg(inc).arg(tol).arg(q.limit).arg(q.period_us);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LimitError(format!("redis: {}", e.kind_name()))),
            Err(_) => Err(LimitError(format!("redis: no answer within {} ms", self.timeout.as_millis()))),
        }
    }
}

/// One refund script call; a failure is counted (and logged at powers of two).
async fn send_refunds(
    script: &Script,
    mut conn: ConnectionManager,
    timeout: Duration,
    refunds: &[(RefundKey, i64)],
    errors: &AtomicU64,
) {
    let mut inv = script.prepare_invoke();
    for ((key, algo, window), amount) in refunds {
        inv.key(key).arg(*algo).arg(*amount).arg(*window);
    }
    let res = tokio::time::timeout(timeout, inv.invoke_async::<i64>(&mut conn)).await;
    if !matches!(res, Ok(Ok(_))) {
        let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(failed_refunds = n, "rate-limit refund not applied: Redis unavailable");
        }
    }
}

/// The decisions from the pre-check states the script returned.
fn decode(checks: &[Check], v: &[i64]) -> Result<Acquired, LimitError> {
    if v.len() != 2 + 4 * checks.len() {
        return Err(LimitError(format!("redis: unexpected script answer of {} values", v.len())));
    }
    let (allowed, now_us) = (v[0] == 1, v[1]);
    let decisions = checks
        .iter()
        .zip(v[2..].chunks_exact(4))
        .map(|(c, s)| {
            let state = (s[0] == 1).then(|| match c.quota.algorithm {
                Algorithm::Gcra => State::Gcra { tat_us: s[1] },
                Algorithm::SlidingWindow => {
                    State::Window { window: s[1], curr: s[2].max(0).unsigned_abs(), prev: s[3].max(0).unsigned_abs() }
                }
            });
            limits::check(state, now_us, &c.quota, c.cost).0
        })
        .collect();
    Ok(Acquired { allowed, now_us, decisions })
}

#[async_trait]
impl LimitStore for RedisLimitStore {
    async fn acquire(&self, checks: &[Check]) -> Result<Acquired, LimitError> {
        if checks.is_empty() {
            return Ok(Acquired { allowed: true, now_us: 0, decisions: Vec::new() });
        }
        let v = self.run_acquire(checks).await?;
        decode(checks, &v)
    }

    fn release(&self, refunds: Vec<Refund>) {
        if refunds.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for r in &refunds {
            let q = &r.quota;
            let key = format!("{}{}", self.prefix, r.key);
            let (slot, amount) = match q.algorithm {
                Algorithm::Gcra => {
                    let us = q.units_us(r.units.unsigned_abs());
                    ((key, "g", 0), if r.units >= 0 { us } else { -us })
                }
                Algorithm::SlidingWindow => ((key, "w", r.charged_at_us.div_euclid(q.period_us.max(1))), r.units),
            };
            *pending.amounts.entry(slot).or_insert(0) += amount;
        }
        if std::mem::replace(&mut pending.scheduled, true) {
            return; // the task already on its way sends these too
        }
        drop(pending);
        let (script, conn, timeout) = (self.refund.clone(), self.conn.clone(), self.timeout);
        let (pending, errors) = (Arc::clone(&self.pending), Arc::clone(&self.refund_errors));
        let send = async move {
            tokio::time::sleep(REFUND_COALESCE).await;
            let amounts = {
                let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
                p.scheduled = false;
                std::mem::take(&mut p.amounts)
            };
            let refunds: Vec<(RefundKey, i64)> = amounts.into_iter().filter(|(_, amount)| *amount != 0).collect();
            for chunk in refunds.chunks(REFUND_KEYS_PER_CALL) {
                send_refunds(&script, conn.clone(), timeout, chunk, &errors).await;
            }
        };
        self.tasks.spawn_on(send, &rt);
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn failed_refunds(&self) -> u64 {
        self.refund_errors.load(Ordering::Relaxed)
    }

    /// Waits for refunds in flight (each bounded by the timeout).
    async fn shutdown(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
