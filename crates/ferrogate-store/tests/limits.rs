//! The rate-limit behaviour suite, run against every `LimitStore`: the in-process store and Redis
//! (the machine's shared Redis, a unique key prefix per test, so tests run in parallel).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrogate_core::limits::memory::MemoryLimitStore;
use ferrogate_core::limits::{Acquired, Algorithm, Check, Dim, LimitStore, Quota, Refund};
use ferrogate_core::tenancy::time::SystemClock;
use ferrogate_store::redis_limits::{RedisLimitStore, RedisOptions};
use ferrogate_testkit::redis::{shared_url, unique_prefix};

fn memory() -> Arc<dyn LimitStore> {
    Arc::new(MemoryLimitStore::new(Arc::new(SystemClock)))
}

fn redis(test: &str) -> Arc<dyn LimitStore> {
    // Generous timeout: these tests check semantics on a busy 2-core machine, not latency.
    let opts = RedisOptions { key_prefix: unique_prefix(test), timeout: Duration::from_secs(2) };
    Arc::new(RedisLimitStore::open(&shared_url(), opts).unwrap())
}

/// Runs one behaviour test against each store.
macro_rules! against_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::memory()).await })*
        }
        mod redis_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::redis(stringify!($name))).await })*
        }
    };
}

against_every_store!(
    exactly_the_burst_under_concurrency,
    a_refusal_charges_nothing,
    decisions_count_down_and_reset,
    token_reservations_are_reconciled,
    sliding_window_admits_the_limit_and_says_when_to_retry,
    sliding_window_refunds_give_units_back,
    many_refunds_at_once_all_apply,
    a_keys_two_counters_are_kept_apart,
    both_counters_of_a_sliding_window_key,
);

/// `acquire`, checking that the store's verdict agrees with the per-counter decisions (for Redis:
/// the Lua script's verdict against core's functions run on the state the script read).
async fn acq(store: &dyn LimitStore, checks: &[Check]) -> Acquired {
    let a = store.acquire(checks).await.unwrap();
    assert_eq!(a.allowed, a.decisions.iter().all(|d| d.allowed), "{a:?}");
    a
}

fn gcra(key: &str, limit: u64, cost: u64) -> Check {
    Check { key: key.into(), dim: Dim::Requests, quota: Quota::per_minute(Algorithm::Gcra, limit), cost }
}

/// 200 concurrent checks against 50/min (plus a roomy global counter): exactly 50 pass.
async fn exactly_the_burst_under_concurrency(store: Arc<dyn LimitStore>) {
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { acq(s.as_ref(), &[gcra("global", 100_000, 1), gcra("k", 50, 1)]).await.allowed })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    assert_eq!(admitted, 50);
}

async fn a_refusal_charges_nothing(store: Arc<dyn LimitStore>) {
    let both = [gcra("a", 10, 1), gcra("b", 2, 1)];
    assert!(acq(store.as_ref(), &both).await.allowed);
    assert!(acq(store.as_ref(), &both).await.allowed);
    let third = acq(store.as_ref(), &both).await;
    assert!(!third.allowed);
    assert!(third.decisions[0].allowed && !third.decisions[1].allowed, "{third:?}");
    assert!(third.decisions[1].retry_after_us > 0);
    let a = acq(store.as_ref(), &[gcra("a", 10, 1)]).await;
    assert_eq!(a.decisions[0].remaining, 7, "'a' was charged twice, not three times");
}

async fn decisions_count_down_and_reset(store: Arc<dyn LimitStore>) {
    let mut remaining = Vec::new();
    for _ in 0..6 {
        let a = acq(store.as_ref(), &[gcra("k", 5, 1)]).await;
        remaining.push((a.allowed, a.decisions[0].remaining));
    }
    // Refill is 1 per 12 s: nothing refills while this runs.
    assert_eq!(remaining, [(true, 4), (true, 3), (true, 2), (true, 1), (true, 0), (false, 0)]);
    let d = acq(store.as_ref(), &[gcra("k", 5, 1)]).await.decisions[0];
    assert!(d.reset_us > 59_000_000 && d.reset_us <= 60_000_000, "{d:?}");
    assert!(d.retry_after_us > 11_000_000 && d.retry_after_us <= 12_000_000, "{d:?}");
}

async fn token_reservations_are_reconciled(store: Arc<dyn LimitStore>) {
    let first = acq(store.as_ref(), &[gcra("t", 1000, 400)]).await;
    assert!(first.allowed);
    assert!(acq(store.as_ref(), &[gcra("t", 1000, 400)]).await.allowed);
    assert!(!acq(store.as_ref(), &[gcra("t", 1000, 400)]).await.allowed, "800 reserved of 1000");
    // The first request used 100 of its 400.
    let quota = Quota::per_minute(Algorithm::Gcra, 1000);
    store.release(vec![Refund { key: "t".into(), dim: Dim::Requests, quota, units: 300, charged_at_us: first.now_us }]);
    let t0 = Instant::now();
    while !acq(store.as_ref(), &[gcra("t", 1000, 400)]).await.allowed {
        assert!(t0.elapsed() < Duration::from_secs(5), "the refund never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!acq(store.as_ref(), &[gcra("t", 1000, 400)]).await.allowed, "exactly one more fits");
}

async fn sliding_window_admits_the_limit_and_says_when_to_retry(store: Arc<dyn LimitStore>) {
    let c =
        Check { key: "w".into(), dim: Dim::Requests, quota: Quota::per_minute(Algorithm::SlidingWindow, 5), cost: 1 };
    let mut passed = Vec::new();
    for _ in 0..8 {
        let a = acq(store.as_ref(), std::slice::from_ref(&c)).await;
        passed.push(a.allowed);
        if !a.allowed {
            assert!(a.decisions[0].retry_after_us > 0 && a.decisions[0].retry_after_us <= 120_000_000);
        }
    }
    // At most 5 (exactly 5 unless this ran across a window boundary, where the previous
    // window's weight may already have slid partly out).
    let n = passed.iter().filter(|p| **p).count();
    assert!((5..=6).contains(&n), "{passed:?}");
    assert!(passed[..5].iter().all(|p| *p), "{passed:?}");
}

async fn sliding_window_refunds_give_units_back(store: Arc<dyn LimitStore>) {
    let quota = Quota::per_minute(Algorithm::SlidingWindow, 10);
    let c = Check { key: "wr".into(), dim: Dim::Tokens, quota, cost: 4 };
    let first = acq(store.as_ref(), std::slice::from_ref(&c)).await;
    assert!(first.allowed);
    assert!(acq(store.as_ref(), std::slice::from_ref(&c)).await.allowed);
    assert!(!acq(store.as_ref(), std::slice::from_ref(&c)).await.allowed, "8 of 10 charged");
    // The first request used 1 of its 4.
    store.release(vec![Refund { key: "wr".into(), dim: Dim::Tokens, quota, units: 3, charged_at_us: first.now_us }]);
    let t0 = Instant::now();
    while !acq(store.as_ref(), std::slice::from_ref(&c)).await.allowed {
        assert!(t0.elapsed() < Duration::from_secs(5), "the refund never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!acq(store.as_ref(), std::slice::from_ref(&c)).await.allowed, "9 of 10 charged");
}

/// Refunds released together (Redis sums them per counter into one call) all count.
async fn many_refunds_at_once_all_apply(store: Arc<dyn LimitStore>) {
    let quota = Quota::per_minute(Algorithm::Gcra, 100);
    let mut charged = Vec::new();
    for _ in 0..10 {
        let a = acq(store.as_ref(), &[gcra("m", 100, 10)]).await;
        assert!(a.allowed);
        charged.push(a.now_us);
    }
    assert!(!acq(store.as_ref(), &[gcra("m", 100, 10)]).await.allowed, "100 of 100 charged");
    for at in charged {
        let r = Refund { key: "m".into(), dim: Dim::Requests, quota, units: 5, charged_at_us: at };
        store.release(vec![r]);
    }
    // 50 given back: five more requests of 10 fit (GCRA drips a little more back meanwhile,
    // far less than 10 units within the test).
    let t0 = Instant::now();
    let mut admitted = 0;
    while admitted < 5 {
        assert!(t0.elapsed() < Duration::from_secs(5), "only {admitted} of 5 fit after the refunds");
        if acq(store.as_ref(), &[gcra("m", 100, 10)]).await.allowed {
            admitted += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(!acq(store.as_ref(), &[gcra("m", 100, 10)]).await.allowed, "no sixth");
}

/// A subject's request and token counters share a key (one Redis string) but not their room;
/// refunds to both in one release (one coalesced Redis call naming the key twice) both apply.
async fn a_keys_two_counters_are_kept_apart(store: Arc<dyn LimitStore>) {
    let tq = Quota::per_minute(Algorithm::Gcra, 1000);
    let tokens = |cost| Check { key: "s".into(), dim: Dim::Tokens, quota: tq, cost };
    let first = acq(store.as_ref(), &[gcra("s", 3, 1), tokens(600)]).await;
    assert!(first.allowed);
    assert_eq!((first.decisions[0].remaining, first.decisions[1].remaining), (2, 400));
    assert!(acq(store.as_ref(), &[gcra("s", 3, 1)]).await.allowed, "requests alone: their own room");
    let refused = acq(store.as_ref(), &[gcra("s", 3, 1), tokens(600)]).await;
    assert!(!refused.allowed && refused.decisions[0].allowed && !refused.decisions[1].allowed, "{refused:?}");
    // Given back: the request (as a request that never reached a backend is) and its tokens.
    let rq = Quota::per_minute(Algorithm::Gcra, 3);
    store.release(vec![
        Refund { key: "s".into(), dim: Dim::Requests, quota: rq, units: 1, charged_at_us: first.now_us },
        Refund { key: "s".into(), dim: Dim::Tokens, quota: tq, units: 600, charged_at_us: first.now_us },
    ]);
    let t0 = Instant::now();
    loop {
        let a = acq(store.as_ref(), &[gcra("s", 3, 1), tokens(900)]).await;
        if a.allowed {
            // One request counted before this one (GCRA refills one per 20 s, so none meanwhile).
            assert_eq!(a.decisions[0].remaining, 1, "{a:?}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the refunds never arrived: {a:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Both counters of a sliding-window key count and refund on their own.
async fn both_counters_of_a_sliding_window_key(store: Arc<dyn LimitStore>) {
    let (rq, tq) = (Quota::per_minute(Algorithm::SlidingWindow, 2), Quota::per_minute(Algorithm::SlidingWindow, 100));
    let checks = |cost| {
        [
            Check { key: "sw".into(), dim: Dim::Requests, quota: rq, cost: 1 },
            Check { key: "sw".into(), dim: Dim::Tokens, quota: tq, cost },
        ]
    };
    let first = acq(store.as_ref(), &checks(70)).await;
    assert!(first.allowed);
    let refused = acq(store.as_ref(), &checks(70)).await;
    assert!(!refused.allowed && refused.decisions[0].allowed && !refused.decisions[1].allowed, "{refused:?}");
    store.release(vec![Refund {
        key: "sw".into(),
        dim: Dim::Tokens,
        quota: tq,
        units: 60,
        charged_at_us: first.now_us,
    }]);
    let t0 = Instant::now();
    while !acq(store.as_ref(), &checks(70)).await.allowed {
        assert!(t0.elapsed() < Duration::from_secs(5), "the refund never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two requests counted (unless the test ran across a window boundary, where fewer may).
    let third = acq(store.as_ref(), &checks(1)).await;
    assert!(!third.decisions[0].allowed || third.decisions[0].remaining <= 1, "{third:?}");
}

/// A subject is one string with a TTL holding both its counters and the expiry it was given; a
/// key of another type or layout under its name (an older release's) reads as empty and is
/// replaced, never an error. The TTL is renewed only when the counters outgrow it.
#[tokio::test]
async fn redis_subjects_are_strings_with_a_ttl() {
    let prefix = unique_prefix("layout");
    let client = redis::Client::open(shared_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (g, w) = (format!("{prefix}g"), format!("{prefix}w"));
    let _: () = redis::cmd("HSET").arg(&g).arg("t").arg(1).query_async(&mut conn).await.unwrap();
    let _: () =
        redis::cmd("SET").arg(&w).arg("29000000:5:5").arg("PX").arg(60_000).query_async(&mut conn).await.unwrap();
    let opts = RedisOptions { key_prefix: prefix.clone(), timeout: Duration::from_secs(2) };
    let store = RedisLimitStore::open(&shared_url(), opts).unwrap();
    let tokens = Check { key: "g".into(), dim: Dim::Tokens, quota: Quota::per_minute(Algorithm::Gcra, 6000), cost: 30 };
    let window =
        Check { key: "w".into(), dim: Dim::Tokens, quota: Quota::per_minute(Algorithm::SlidingWindow, 5), cost: 2 };
    let a = acq(&store, &[gcra("g", 10, 1), tokens.clone(), window.clone()]).await;
    assert!(a.allowed, "{a:?}");
    assert_eq!(a.decisions[2].remaining, 3, "the old layout's counts are not read: {a:?}");
    let get = |key: String| {
        let mut conn = conn.clone();
        async move {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
            let v: String = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
            let parts: Vec<i64> = v.split(':').skip(1).map(|n| n.parse().unwrap()).collect();
            (kind, ttl, v, parts)
        }
    };
    let (kind, ttl, v, gv) = get(g.clone()).await;
    assert_eq!(kind, "string");
    assert!(v.starts_with("g:") && gv.len() == 3, "{v}");
    // 1 of 10 requests per minute: a TAT 6 s ahead; 30 of 6000 tokens: 0.3 s ahead. The key
    // lives until the later one, plus a second, plus as long again (at least 10 s) to spare.
    let (tat_req, tat_tok) = (gv[1], gv[2]);
    assert_eq!(tat_req - tat_tok, 6_000_000 - 300_000, "{v}");
    assert!(ttl > 11_000 && ttl <= 17_000, "{v}: {ttl}");
    let (kind, ttl_w, v, wv) = get(w.clone()).await;
    assert_eq!(kind, "string");
    assert!(v.starts_with("w:") && wv.len() == 7, "{v}");
    assert_eq!((wv[1], wv[2], wv[3]), (0, 0, 0), "no request counted: {v}");
    assert_eq!((wv[5], wv[6]), (2, 0), "{v}");
    // Until the window after the current one ends (61-121 s), and as long again.
    assert!(ttl_w > 100_000 && ttl_w <= 242_000, "{v}: {ttl_w}");
    // A second charge within the spare time keeps the key's expiry (KEEPTTL).
    let b = acq(&store, &[gcra("g", 10, 1), tokens]).await;
    assert!(b.allowed, "{b:?}");
    let (_, ttl2, v2, gv2) = get(g.clone()).await;
    assert_eq!(gv2[0], gv[0], "expiry unchanged: {v} -> {v2}");
    assert!(ttl2 <= ttl, "{ttl} -> {ttl2}");
    assert!(gv2[1] - tat_req >= 6_000_000 && gv2[2] > tat_tok, "{v} -> {v2}");
    // An over-long TAT (a big reservation) extends it.
    let big = Check { key: "g".into(), dim: Dim::Tokens, quota: Quota::per_minute(Algorithm::Gcra, 6000), cost: 5000 };
    assert!(acq(&store, &[big]).await.allowed);
    let (_, ttl3, v3, gv3) = get(g).await;
    assert!(gv3[0] > gv[0] && ttl3 > 90_000, "{v2} -> {v3}: {ttl3}");
}

#[tokio::test]
async fn an_unreachable_redis_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts = RedisOptions { key_prefix: unique_prefix("down"), timeout: Duration::from_millis(50) };
    let store = RedisLimitStore::open(&format!("redis://127.0.0.1:{port}"), opts).unwrap();
    for _ in 0..3 {
        let t0 = Instant::now();
        let e = store.acquire(&[gcra("k", 5, 1)]).await.unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(e.0.starts_with("redis:"), "{e}");
        assert!(!e.0.contains(&port.to_string()), "no address in the error: {e}");
    }
}

#[tokio::test]
async fn invalid_urls_are_refused_without_echoing_them() {
    let e = ferrogate_store::redis_limits::check_url("mysql://user:hunter2@h/db").unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(ferrogate_store::redis_limits::check_url("redis://user:pw@127.0.0.1:6379/2").is_ok());
}
