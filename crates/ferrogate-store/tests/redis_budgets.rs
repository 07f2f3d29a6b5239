//! Shared budgets and in-flight caps (`RedisBudgets`) against the machine's Redis, one key prefix
//! per test: seeding, the all-or-nothing reservation across owners, settle, lease expiry, the
//! drift correction, the calendar on Redis's side, and several "replicas" (stores) racing for
//! the last of a budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::tenancy::Limits;
use ferrogate_core::tenancy::quota::{Charge, Owner, Refusal, Seed, Unit, Window};
use ferrogate_core::tenancy::shared::{SharedAdmit, SharedBudgets, SharedCheck, SharedOwner, SharedTicket};
use ferrogate_core::tenancy::time::{self, parse_time};
use ferrogate_store::redis_budgets::RedisBudgets;
use ferrogate_testkit::redis::{PrivateRedis, shared_url, unique_prefix};

fn store(prefix: &str) -> RedisBudgets {
    RedisBudgets::open(&shared_url(), prefix, Duration::from_secs(2)).unwrap()
}

fn tokens(n: u64) -> Charge {
    Charge { tokens: n, micro_usd: 0 }
}

fn owner(owner: Owner, subject: &str, limits: Limits) -> SharedOwner {
    SharedOwner { owner, subject: subject.into(), limits }
}

fn check(owners: &[SharedOwner], demand: Charge, lease: &str) -> SharedCheck {
    SharedCheck { owners: owners.to_vec(), demand, lease: lease.into(), lease_ttl_ms: 60_000 }
}

/// Admits, seeding any unseeded owner with `seed` first (as the server seeds from the ledger).
async fn admit(s: &RedisBudgets, c: &SharedCheck, seed: Seed) -> Result<SharedTicket, Refusal> {
    for _ in 0..2 {
        match s.admit(c).await.unwrap() {
            SharedAdmit::Admitted(t) => return Ok(t),
            SharedAdmit::Refused(r) => return Err(r),
            SharedAdmit::Unseeded { day_start, month_start, owners } => {
                for i in owners {
                    s.seed(&c.owners[i].subject, day_start, month_start, seed).await.unwrap();
                }
            }
        }
    }
    panic!("still unseeded after seeding")
}

async fn settle_and_wait(s: &RedisBudgets, t: SharedTicket, actual: Charge) {
    s.settle(t, actual);
    s.shutdown().await;
}

#[tokio::test]
async fn an_unseeded_owner_is_seeded_once_and_budgets_admit_while_something_is_left() {
    let s = store(&unique_prefix("budgets_seed"));
    let key = owner(Owner::Key, "k:a", Limits { tokens_per_day: Some(100), ..Limits::default() });
    let c = check(std::slice::from_ref(&key), tokens(30), "r1");
    let SharedAdmit::Unseeded { day_start, month_start, owners } = s.admit(&c).await.unwrap() else {
        panic!("a new owner must be seeded first")
    };
    assert_eq!(owners, vec![0]);
    assert_eq!(day_start, time::day_start(day_start));
    assert_eq!(month_start, time::month_start(day_start));
    // The ledger already holds 60 tokens today; a second seed (another replica) changes nothing.
    s.seed("k:a", day_start, month_start, Seed { day: tokens(60), month: tokens(60) }).await.unwrap();
    s.seed("k:a", day_start, month_start, Seed { day: tokens(1), month: tokens(1) }).await.unwrap();
    let t = admit(&s, &c, Seed::default()).await.unwrap();
    assert_eq!(s.usage("k:a").await.unwrap().unwrap(), (Seed { day: tokens(90), month: tokens(90) }, 1));
    settle_and_wait(&s, t, tokens(45)).await;
    assert_eq!(s.usage("k:a").await.unwrap().unwrap(), (Seed { day: tokens(105), month: tokens(105) }, 0));
    let r = admit(&s, &check(std::slice::from_ref(&key), tokens(1), "r2"), Seed::default()).await.unwrap_err();
    let Refusal::Budget { owner, window, unit, limit, used, resets_at_ms } = r else { panic!("{r:?}") };
    assert_eq!((owner, window, unit, limit, used), (Owner::Key, Window::Day, Unit::Tokens, 100, 105));
    assert_eq!(resets_at_ms, day_start + time::DAY_MS);
}

#[tokio::test]
async fn a_refusal_of_either_owner_reserves_nothing_for_both() {
    let s = store(&unique_prefix("budgets_all_or_none"));
    let tenant = owner(Owner::Tenant, "t:x", Limits { usd_per_month: Some(0.000_010), ..Limits::default() });
    let key = owner(Owner::Key, "k:x", Limits { max_concurrent_requests: Some(5), ..Limits::default() });
    let owners = [tenant, key];
    let cost = Charge { tokens: 4, micro_usd: 6 };
    let t = admit(&s, &check(&owners, cost, "a"), Seed::default()).await.unwrap();
    settle_and_wait(&s, t, Charge { tokens: 4, micro_usd: 10 }).await;
    let r = admit(&s, &check(&owners, cost, "b"), Seed::default()).await.unwrap_err();
    assert!(matches!(r, Refusal::Budget { owner: Owner::Tenant, unit: Unit::Usd, limit: 10, used: 10, .. }), "{r:?}");
    let (key_usage, inflight) = s.usage("k:x").await.unwrap().unwrap();
    assert_eq!((key_usage.day, inflight), (Charge { tokens: 4, micro_usd: 10 }, 0), "the key kept nothing of 'b'");
}

#[tokio::test]
async fn in_flight_caps_hold_leases_that_expire_if_never_settled() {
    let s = store(&unique_prefix("budgets_leases"));
    let key = owner(Owner::Key, "k:c", Limits { max_concurrent_requests: Some(2), ..Limits::default() });
    let owners = [key];
    let mut short = check(&owners, tokens(10), "dies");
    short.lease_ttl_ms = 300;
    let _dies = admit(&s, &short, Seed::default()).await.unwrap();
    let lives = admit(&s, &check(&owners, tokens(10), "lives"), Seed::default()).await.unwrap();
    let r = admit(&s, &check(&owners, tokens(10), "third"), Seed::default()).await.unwrap_err();
    assert_eq!(r, Refusal::Concurrency { owner: Owner::Key, limit: 2 });
    // The first request's replica "died": its lease runs out and its reservation goes with it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = admit(&s, &check(&owners, tokens(10), "third"), Seed::default()).await.unwrap();
    let (usage, inflight) = s.usage("k:c").await.unwrap().unwrap();
    assert_eq!((usage.day.tokens, inflight), (20, 2), "'dies' reserved nothing any more");
    s.settle(lives, tokens(3));
    s.settle(third, tokens(4));
    s.shutdown().await;
    assert_eq!(s.usage("k:c").await.unwrap().unwrap(), (Seed { day: tokens(7), month: tokens(7) }, 0));
}

#[tokio::test]
async fn the_correction_raises_what_a_lost_settle_left_out_but_keeps_reservations() {
    let s = store(&unique_prefix("budgets_correct"));
    let key = owner(Owner::Key, "k:d", Limits { tokens_per_month: Some(1_000), ..Limits::default() });
    let owners = [key];
    let done = admit(&s, &check(&owners, tokens(50), "done"), Seed::default()).await.unwrap();
    settle_and_wait(&s, done, tokens(40)).await;
    let _open = admit(&s, &check(&owners, tokens(100), "open"), Seed::default()).await.unwrap();
    let (day_start, month_start) = {
        let now = time::now_ms();
        (time::day_start(now), time::month_start(now))
    };
    // The ledger says 70 were used (a settle of 30 was lost): settled 40 → 70, the open 100 stays.
    let ledger = Seed { day: tokens(70), month: tokens(70) };
    assert!(s.correct("k:d", day_start, month_start, ledger).await.unwrap());
    assert_eq!(s.usage("k:d").await.unwrap().unwrap().0.month.tokens, 170);
    // A ledger behind the store (rows not yet written) lowers nothing.
    assert!(!s.correct("k:d", day_start, month_start, Seed { day: tokens(5), month: tokens(5) }).await.unwrap());
    assert_eq!(s.usage("k:d").await.unwrap().unwrap().0.month.tokens, 170);
}

#[tokio::test]
async fn windows_follow_the_utc_calendar_on_the_stores_side() {
    let prefix = unique_prefix("budgets_calendar");
    for when in
        ["2024-02-29T23:59:59Z", "2024-03-01T00:00:00Z", "2023-12-31T12:00:00Z", "2100-03-01T05:00:00Z", "1999-01-01"]
    {
        let at = parse_time(when).unwrap();
        let s = store(&prefix).with_fixed_time(at);
        let key = owner(Owner::Key, &format!("k:{when}"), Limits { tokens_per_day: Some(1), ..Limits::default() });
        let SharedAdmit::Unseeded { day_start, month_start, .. } =
            s.admit(&check(&[key], tokens(1), "x")).await.unwrap()
        else {
            panic!("unseeded")
        };
        assert_eq!((day_start, month_start), (time::day_start(at), time::month_start(at)), "{when}");
    }
    // Usage carried from one month into the next counts only in its own month.
    let key = owner(Owner::Key, "k:roll", Limits { tokens_per_month: Some(100), ..Limits::default() });
    let jan = store(&prefix).with_fixed_time(parse_time("2024-01-31T23:00:00Z").unwrap());
    let t = admit(&jan, &check(std::slice::from_ref(&key), tokens(100), "jan"), Seed::default()).await.unwrap();
    let feb = store(&prefix).with_fixed_time(parse_time("2024-02-01T01:00:00Z").unwrap());
    assert!(admit(&feb, &check(std::slice::from_ref(&key), tokens(1), "feb"), Seed::default()).await.is_ok());
    settle_and_wait(&feb, t, tokens(90)).await;
    assert_eq!(feb.usage("k:roll").await.unwrap().unwrap().0.month.tokens, 1, "January's settle left February alone");
}

/// Three "replicas" (stores on one Redis) race 300 requests for the last 1,000 tokens of a
/// budget: at most one request crosses the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_racing_overspend_by_at_most_one_reservation() {
    let prefix = unique_prefix("budgets_race");
    let (limit, demand, actual) = (10_000_u64, 300_u64, 250_u64);
    let tenant = owner(Owner::Tenant, "t:race", Limits { tokens_per_day: Some(limit), ..Limits::default() });
    let key = owner(Owner::Key, "k:race", Limits::default());
    let owners = Arc::new([tenant, key]);
    let seeded = Seed { day: tokens(9_000), month: tokens(9_000) };
    let replicas: Vec<Arc<RedisBudgets>> = (0..3).map(|_| Arc::new(store(&prefix))).collect();
    admit(&replicas[0], &check(&owners[..], tokens(0), "warm"), seeded)
        .await
        .map(|t| replicas[0].settle(t, tokens(0)))
        .unwrap();
    replicas[0].shutdown().await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let (s, owners) = (Arc::clone(&replicas[i % 3]), Arc::clone(&owners));
        tasks.push(tokio::spawn(async move {
            let c = check(&owners[..], tokens(demand), &format!("r{i}"));
            match admit(&s, &c, Seed::default()).await {
                Ok(t) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    s.settle(t, tokens(actual));
                    1
                }
                Err(_) => 0,
            }
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    for s in &replicas {
        s.shutdown().await;
    }
    let (used, inflight) = replicas[1].usage("t:race").await.unwrap().unwrap();
    assert_eq!(inflight, 0);
    assert_eq!(used.day.tokens, 9_000 + admitted * actual);
    // 1,000 left: 4 requests of 250 fit while reservations (300 each) are in flight; whatever the
    // interleaving, the last one admitted started below the limit.
    assert!(admitted >= 1 && used.day.tokens <= limit + demand, "admitted {admitted}, used {}", used.day.tokens);
}

#[tokio::test]
async fn a_dead_redis_is_an_error_not_a_hang() {
    let mut redis = PrivateRedis::start().await;
    let s = RedisBudgets::open(&redis.url(), "x:", Duration::from_millis(100)).unwrap();
    let key = owner(Owner::Key, "k:z", Limits { tokens_per_day: Some(1), ..Limits::default() });
    assert!(matches!(
        s.admit(&check(std::slice::from_ref(&key), tokens(1), "a")).await,
        Ok(SharedAdmit::Unseeded { .. })
    ));
    redis.kill();
    let started = std::time::Instant::now();
    assert!(s.admit(&check(&[key], tokens(1), "b")).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
