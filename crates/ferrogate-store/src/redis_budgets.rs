//! Budgets and in-flight caps in Redis: core's [`SharedBudgets`], shared by every gateway replica.
//!
//! One Lua script (`redis_budgets.lua`) with one operation per call — admit, settle, seed,
//! correct, usage — each atomic and on Redis's own clock. The script's header describes the
//! layout: per owner a hash (day and month usage plus each in-flight request's reservation) and a
//! sorted set of in-flight leases scored by their expiry. Every call is bounded by the same short
//! timeout as the rate-limit checks; settles run in a tracked task off the request path
//! ([`SharedBudgets::shutdown`] waits for them) and are retried once.
//!
//! Not supported: Redis Cluster (one admit names both owners' keys; they would have to share a
//! hash slot).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::tenancy::quota::{Charge, Seed};
use ferrogate_core::tenancy::shared::{SharedAdmit, SharedBudgets, SharedCheck, SharedError, SharedTicket, refusal};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tokio_util::task::TaskTracker;

use crate::redis_limits::{KindName, connection};

const SCRIPT: &str = include_str!("redis_budgets.lua");

/// The Redis [`SharedBudgets`].
pub struct RedisBudgets {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    script: Script,
    tasks: TaskTracker,
    failed_settles: Arc<AtomicU64>,
    /// Replaces Redis's clock when set (tests of the calendar windows only).
    now_override_ms: i64,
}

impl std::fmt::Debug for RedisBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisBudgets").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisBudgets {
    /// Budgets on `url` under `key_prefix`; connects lazily (a Redis down at start only fails
    /// calls until it is back). `timeout` bounds every call.
    pub fn open(url: &str, key_prefix: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            conn: connection(url, timeout)?,
            prefix: key_prefix.to_owned(),
            timeout,
            script: Script::new(SCRIPT),
            tasks: TaskTracker::new(),
            failed_settles: Arc::new(AtomicU64::new(0)),
            now_override_ms: 0,
        })
    }

    /// Uses `now_ms` instead of Redis's clock (tests of month and day boundaries).
    pub fn with_fixed_time(mut self, now_ms: i64) -> Self {
        self.now_override_ms = now_ms;
        self
    }

    fn keys(&self, subject: &str) -> [String; 2] {
        [format!("{}b:{subject}", self.prefix), format!("{}i:{subject}", self.prefix)]
    }

    async fn call<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, SharedError> {
        call(inv, self.conn.clone(), self.timeout).await
    }
}

async fn call<T: redis::FromRedisValue>(
    inv: redis::ScriptInvocation<'_>,
    mut conn: ConnectionManager,
    timeout: Duration,
) -> Result<T, SharedError> {
    match tokio::time::timeout(timeout, inv.invoke_async::<T>(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SharedError(format!("redis: {}", e.kind_name()))),
        Err(_) => Err(SharedError(format!("redis: no answer within {} ms", timeout.as_millis()))),
    }
}

/// `-1` for "no limit", as the script reads it.
fn limit(v: Option<u64>) -> i64 {
    v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn amount(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl SharedBudgets for RedisBudgets {
    async fn admit(&self, check: &SharedCheck) -> Result<SharedAdmit, SharedError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg("admit").arg(self.now_override_ms).arg(&check.lease);
        inv.arg(amount(check.demand.tokens)).arg(amount(check.demand.micro_usd)).arg(check.lease_ttl_ms.max(1));
        for o in &check.owners {
            let [b, i] = self.keys(&o.subject);
            inv.key(b).key(i);
            inv.arg(limit(o.limits.max_concurrent_requests.map(u64::from)));
            for (_, _, l) in ferrogate_core::tenancy::quota::budgets(&o.limits) {
                inv.arg(limit(l));
            }
        }
        let v: Vec<Value> = self.call(inv).await?;
        let bad = || SharedError(format!("redis: unexpected budget answer of {} values", v.len()));
        let nums: Vec<i64> = v.iter().map(int).collect::<Option<_>>().ok_or_else(bad)?;
        let [status, _now, day_start, month_start, rest @ ..] = nums.as_slice() else { return Err(bad()) };
        let (day_start, month_start) = (*day_start, *month_start);
        match (status, rest) {
            (0, []) => Ok(SharedAdmit::Admitted(SharedTicket {
                lease: check.lease.clone(),
                subjects: check.owners.iter().map(|o| o.subject.clone()).collect(),
                day_start,
                month_start,
                demand: check.demand,
            })),
            (1, [owner, which, used]) => {
                let o = usize::try_from(*owner).ok().and_then(|i| check.owners.get(i)).ok_or_else(bad)?;
                let which = usize::try_from(*which).map_err(|_| bad())?;
                let r = refusal(o, which, used.unsigned_abs(), day_start, month_start).ok_or_else(bad)?;
                Ok(SharedAdmit::Refused(r))
            }
            (2, owners) => {
                let owners = owners.iter().map(|o| usize::try_from(*o).map_err(|_| bad())).collect::<Result<_, _>>()?;
                Ok(SharedAdmit::Unseeded { day_start, month_start, owners })
            }
            _ => Err(bad()),
        }
    }

    async fn seed(&self, subject: &str, day_start: i64, month_start: i64, usage: Seed) -> Result<(), SharedError> {
        let mut inv = self.script.prepare_invoke();
        inv.key(self.keys(subject)[0].clone());
        inv.arg("seed").arg(self.now_override_ms).arg(day_start).arg(month_start);
        inv.arg(amount(usage.day.tokens)).arg(amount(usage.day.micro_usd));
        inv.arg(amount(usage.month.tokens)).arg(amount(usage.month.micro_usd));
        self.call::<i64>(inv).await.map(|_| ())
    }

    fn settle(&self, ticket: SharedTicket, actual: Charge) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let keys: Vec<String> = ticket.subjects.iter().flat_map(|s| self.keys(s)).collect();
        let (script, conn, timeout, now) = (self.script.clone(), self.conn.clone(), self.timeout, self.now_override_ms);
        let failed = Arc::clone(&self.failed_settles);
        let send = async move {
            for attempt in 0..2 {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg("settle").arg(now).arg(&ticket.lease);
                inv.arg(amount(actual.tokens)).arg(amount(actual.micro_usd));
                inv.arg(ticket.day_start).arg(ticket.month_start);
                if call::<i64>(inv, conn.clone(), timeout).await.is_ok() {
                    return;
                }
                if attempt == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    failed_settles = n,
                    "budget settle not applied: Redis unavailable (lease expiry and the ledger correction repair it)"
                );
            }
        };
        self.tasks.spawn_on(send, &rt);
    }

    async fn correct(
        &self,
        subject: &str,
        day_start: i64,
        month_start: i64,
        ledger: Seed,
    ) -> Result<bool, SharedError> {
        let mut inv = self.script.prepare_invoke();
        let [b, i] = self.keys(subject);
        inv.key(b).key(i);
        inv.arg("correct").arg(self.now_override_ms).arg(day_start).arg(month_start);
        inv.arg(amount(ledger.day.tokens)).arg(amount(ledger.day.micro_usd));
        inv.arg(amount(ledger.month.tokens)).arg(amount(ledger.month.micro_usd));
        self.call::<i64>(inv).await.map(|n| n == 1)
    }

    async fn usage(&self, subject: &str) -> Result<Option<(Seed, u32)>, SharedError> {
        let mut inv = self.script.prepare_invoke();
        let [b, i] = self.keys(subject);
        inv.key(b).key(i);
        inv.arg("usage").arg(self.now_override_ms);
        let v: Vec<i64> = self.call(inv).await?;
        let [_, dt, du, _, mt, mu, inflight] = v.as_slice() else { return Ok(None) };
        let c = |t: i64, u: i64| Charge { tokens: t.unsigned_abs(), micro_usd: u.unsigned_abs() };
        Ok(Some((Seed { day: c(*dt, *du), month: c(*mt, *mu) }, u32::try_from(*inflight).unwrap_or(u32::MAX))))
    }

    fn failed_settles(&self) -> u64 {
        self.failed_settles.load(Ordering::Relaxed)
    }

    async fn shutdown(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
