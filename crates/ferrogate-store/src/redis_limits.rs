//! Rate-limit counters in Redis: core's [`LimitStore`] shared by every gateway replica.
//!
//! - One atomic Lua script per check (`redis_acquire.lua`), one round trip: it reads Redis's own
//!   clock (`TIME`), decides every counter and charges all or none. Sent as `EVALSHA`; on
//!   `NOSCRIPT` (after a restart or `SCRIPT FLUSH`) redis-rs loads it and repeats the call.
//! - A Redis key is a subject (a check's [`Check::key`]) and holds both its counters, requests and
//!   tokens, in one string: the script's cost is mostly its Redis commands (one `SET` per key
//!   charged), so a rule with both rates costs one key, not two. Its TTL is renewed only when the
//!   counters outgrow it (the script's header explains the layout).
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
use ferrogate_core::limits::{self, Acquired, Algorithm, Check, Decision, LimitError, LimitStore, Refund, State};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tokio_util::task::TaskTracker;

const ACQUIRE: &str = include_str!("redis_acquire.lua");
const REFUND: &str = include_str!("redis_refund.lua");
/// How long a refund waits for others to share its script call.
pub const REFUND_COALESCE: Duration = Duration::from_millis(5);
/// Most counters one refund call names (a larger backlog is sent in several calls).
const REFUND_KEYS_PER_CALL: usize = 256;

/// A counter's refund in the script's terms: (key, algo, slot, window of the charge) → amount.
type RefundKey = (String, &'static str, usize, i64);

/// A Redis key's part of a check: its algorithm, and the checks of its two slots ([`Dim::slot`])
/// with their positions in the check (the decisions' order).
///
/// [`Dim::slot`]: ferrogate_core::limits::Dim::slot
struct Group<'a> {
    key: &'a str,
    algorithm: Algorithm,
    slots: [Option<(usize, &'a Check)>; 2],
}

/// The checks by key, in order of first appearance.
fn group(checks: &[Check]) -> Result<Vec<Group<'_>>, LimitError> {
    let mut groups: Vec<Group<'_>> = Vec::with_capacity(checks.len());
    for (i, c) in checks.iter().enumerate() {
        let slot = c.dim.slot();
        let g = match groups.iter().position(|g| g.key == c.key) {
            Some(g) => &mut groups[g],
            None => {
                groups.push(Group { key: &c.key, algorithm: c.quota.algorithm, slots: [None; 2] });
                let last = groups.len() - 1;
                &mut groups[last]
            }
        };
        if g.algorithm != c.quota.algorithm || g.slots[slot].is_some() {
            return Err(LimitError(format!(
                "counter '{}' {} named twice in one check, or with two algorithms",
                c.key,
                c.dim.as_str()
            )));
        }
        g.slots[slot] = Some((i, c));
    }
    Ok(groups)
}

fn algo(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Gcra => "g",
        Algorithm::SlidingWindow => "w",
    }
}

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

/// A lazy, self-reconnecting connection to `url` (on the current tokio runtime), so a gateway
/// starts while Redis is down; shared by the Redis stores. Errors never repeat the URL.
pub(crate) fn connection(url: &str, timeout: Duration) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("not a valid Redis URL ({})", e.kind_name()))?;
    let cfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(200))))
        // One timer per call is enough: `run_acquire` and `send_refunds` bound the whole call.
        // (A timer due before the runtime's next wake-up costs an eventfd write and an extra
        // epoll_wait; two per check showed as 1.8 writes and 0.9 epoll_waits per request.)
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(3);
    ConnectionManager::new_lazy_with_config(client, cfg)
        .map_err(|e| format!("cannot set up the Redis connection ({})", e.kind_name()))
}

pub(crate) trait KindName {
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
        let conn = connection(url, opts.timeout)?;
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

    async fn run_acquire(&self, groups: &[Group<'_>]) -> Result<Vec<Value>, LimitError> {
        let mut inv = self.acquire.prepare_invoke();
        for g in groups {
            inv.key(format!("{}{}", self.prefix, g.key));
            inv.arg(algo(g.algorithm));
            for slot in g.slots {
                match slot {
                    None => inv.arg("-").arg(0).arg(0),
                    Some((_, c)) => {
                        let q = &c.quota;
                        match q.algorithm {
                            Algorithm::Gcra => inv.arg(q.units_us(c.cost)).arg(q.units_us(q.burst)).arg(0),
                            Algorithm::SlidingWindow => inv.arg(c.cost).arg(q.limit).arg(q.period_us),
                        }
                    }
                };
            }
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, inv.invoke_async::<Vec<Value>>(&mut conn)).await {
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
    for ((key, algo, slot, window), amount) in refunds {
        inv.key(key).arg(*algo).arg(*slot).arg(*amount).arg(*window);
    }
    let res = tokio::time::timeout(timeout, inv.invoke_async::<i64>(&mut conn)).await;
    if !matches!(res, Ok(Ok(_))) {
        let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(failed_refunds = n, "rate-limit refund not applied: Redis unavailable");
        }
    }
}

/// The decisions, in the checks' order, from the script's answer: allowed, Redis's time, and each
/// key's value as read (before the charge).
fn decode(checks: &[Check], groups: &[Group<'_>], v: &[Value]) -> Result<Acquired, LimitError> {
    let bad = || LimitError(format!("redis: unexpected script answer of {} values", v.len()));
    let [Value::Int(allowed), Value::Int(now_us), values @ ..] = v else { return Err(bad()) };
    if values.len() != groups.len() {
        return Err(bad());
    }
    let (allowed, now_us) = (*allowed == 1, *now_us);
    let mut decisions: Vec<Option<Decision>> = vec![None; checks.len()];
    for (g, value) in groups.iter().zip(values) {
        let stored = match value {
            Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| parse(g.algorithm, s)),
            _ => None,
        };
        for (slot, c) in g.slots.iter().enumerate() {
            let Some((i, c)) = c else { continue };
            let state = stored.map(|s| s[slot]);
            decisions[*i] = Some(limits::check(state, now_us, &c.quota, c.cost).0);
        }
    }
    let decisions = decisions.into_iter().collect::<Option<Vec<_>>>();
    let decisions = decisions.ok_or_else(|| LimitError("redis: a check without a decision".into()))?;
    Ok(Acquired { allowed, now_us, decisions })
}

/// A key's two counters from its stored value, read exactly as the scripts read it (the same
/// patterns: `None` where the script sees an empty key).
fn parse(algorithm: Algorithm, s: &str) -> Option<[State; 2]> {
    let mut parts = s.split(':');
    let tag = parts.next()?;
    let mut n: [i64; 7] = [0; 7];
    let count = match (algorithm, tag) {
        (Algorithm::Gcra, "g") => 3,
        (Algorithm::SlidingWindow, "w") => 7,
        _ => return None,
    };
    for (i, slot) in n.iter_mut().take(count).enumerate() {
        // Lua's `%d+`, or `%-?%d+` for a TAT and a window index (i = 1 and 1 + 3k).
        let signed = i > 0 && (algorithm == Algorithm::Gcra || i % 3 == 1);
        *slot = number(parts.next()?, signed)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(match algorithm {
        Algorithm::Gcra => [State::Gcra { tat_us: n[1] }, State::Gcra { tat_us: n[2] }],
        Algorithm::SlidingWindow => {
            let w =
                |i: usize| State::Window { window: n[i], curr: n[i + 1].unsigned_abs(), prev: n[i + 2].unsigned_abs() };
            [w(1), w(4)]
        }
    })
}

/// Digits only (with a leading '-' if `signed`), as Lua's patterns accept.
fn number(s: &str, signed: bool) -> Option<i64> {
    let digits = if signed { s.strip_prefix('-').unwrap_or(s) } else { s };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[async_trait]
impl LimitStore for RedisLimitStore {
    async fn acquire(&self, checks: &[Check]) -> Result<Acquired, LimitError> {
        if checks.is_empty() {
            return Ok(Acquired { allowed: true, now_us: 0, decisions: Vec::new() });
        }
        let groups = group(checks)?;
        let v = self.run_acquire(&groups).await?;
        decode(checks, &groups, &v)
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
                    ((key, algo(q.algorithm), r.dim.slot(), 0), if r.units >= 0 { us } else { -us })
                }
                Algorithm::SlidingWindow => {
                    let window = r.charged_at_us.div_euclid(q.period_us.max(1));
                    ((key, algo(q.algorithm), r.dim.slot(), window), r.units)
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_parse_as_the_scripts_read_them() {
        let g = |tat_us| State::Gcra { tat_us };
        assert_eq!(
            parse(Algorithm::Gcra, "g:1700000012000:1700000001000000:0"),
            Some([g(1_700_000_001_000_000), g(0)])
        );
        assert_eq!(parse(Algorithm::Gcra, "g:1:-5:7"), Some([g(-5), g(7)]));
        let w = |window, curr, prev| State::Window { window, curr, prev };
        assert_eq!(parse(Algorithm::SlidingWindow, "w:9:28:3:1:0:0:0"), Some([w(28, 3, 1), w(0, 0, 0)]));
        for (algorithm, s) in [
            (Algorithm::Gcra, ""),
            (Algorithm::Gcra, "1700000001000000"), // an older release's counter
            (Algorithm::SlidingWindow, "28:3:1"),  // likewise
            (Algorithm::Gcra, "w:9:28:3:1:0:0:0"), // another algorithm's layout
            (Algorithm::Gcra, "g:1:2"),            // too short
            (Algorithm::Gcra, "g:1:2:3:4"),        // too long
            (Algorithm::Gcra, "g:-1:2:3"),         // a negative expiry
            (Algorithm::Gcra, "g:1:+2:3"),         // a sign Lua's %d does not take
            (Algorithm::SlidingWindow, "w:9:28:-3:1:0:0:0"), // a negative count
            (Algorithm::Gcra, "g:1:2:99999999999999999999"), // beyond i64
        ] {
            assert_eq!(parse(algorithm, s), None, "{s}");
        }
    }
}
