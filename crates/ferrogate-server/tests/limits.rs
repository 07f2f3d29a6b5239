//! Rate limits, black-box: a real gateway (in process, real HTTP on 127.0.0.1) over a fast fake
//! upstream, with counters in process or in real Redis (the shared one with a unique key prefix
//! per test, or a private `redis-server` the test kills and restarts).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::redis::{PrivateRedis, shared_url, unique_prefix};
use ferrogate_testkit::upstream::{self as fake, FakeUpstream, Reply};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

fn config(fake: &FakeUpstream, limits: &str) -> String {
    format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\naliases = [\"mm\"]\n\
         [deployments.other]\nbackends = [\"up\"]\n{limits}",
        fake.url("/v1")
    )
}

fn body(model: &str, stream: bool, max_tokens: u32) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens, "stream": stream})
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Sends `n` chat requests at once to the gateways in turn; the statuses.
async fn burst(gws: &[&TestGateway], n: usize) -> Vec<u16> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (http, url) = (http.clone(), gws[i % gws.len()].url(CHAT));
            tokio::spawn(
                async move { http.post(url).json(&body("m", false, 8)).send().await.unwrap().status().as_u16() },
            )
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count(statuses: &[u16], s: u16) -> usize {
    statuses.iter().filter(|x| **x == s).count()
}

const FIFTY_PER_MINUTE: &str = "[[limits.rules]]\nname = \"fifty\"\nscope = \"global\"\nrequests_per_minute = 50\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_per_minute_admit_exactly_50_of_200_concurrent_requests_in_process() {
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&config(&fake, FIFTY_PER_MINUTE)).await;
    let statuses = burst(&[&gw], 200).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (50, 150), "{statuses:?}");
    assert_eq!(gw.state().limits.store_kind(), "memory");
    let calls = fake.requests().iter().filter(|r| r.path == CHAT).count();
    assert_eq!(calls, 50, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_per_minute_admit_exactly_50_of_200_across_two_gateways_sharing_redis() {
    let fake = FakeUpstream::openai().await.unwrap();
    let limits = format!(
        "[limits]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nredis_timeout_ms = 2000\n{FIFTY_PER_MINUTE}",
        shared_url(),
        unique_prefix("fifty")
    );
    let a = TestGateway::start(&config(&fake, &limits)).await;
    let b = TestGateway::start(&config(&fake, &limits)).await;
    let statuses = burst(&[&a, &b], 200).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (50, 150), "{statuses:?}");
    assert_eq!(a.state().limits.store_kind(), "redis");
    assert_eq!(a.state().limits.stats().store_errors + b.state().limits.stats().store_errors, 0);
}

#[tokio::test]
async fn headers_on_200_and_429_and_an_openai_shaped_refusal() {
    let fake = FakeUpstream::openai().await.unwrap();
    let limits =
        "[[limits.rules]]\nname = \"per-ip\"\nscope = \"ip\"\nrequests_per_minute = 2\ntokens_per_minute = 10000\n";
    let gw = TestGateway::start(&config(&fake, limits)).await;
    let first = gw.post_json(CHAT, &body("m", false, 8)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(header(&first, "x-ratelimit-reset-requests"), "30s");
    assert_eq!(header(&first, "x-ratelimit-limit-tokens"), "10000");
    let tokens_left: u64 = header(&first, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(tokens_left < 10000 - 8 && tokens_left > 9900, "prompt estimate + max_tokens reserved: {tokens_left}");
    assert!(
        header(&first, "x-ratelimit-reset-tokens").ends_with("ms"),
        "{}",
        header(&first, "x-ratelimit-reset-tokens")
    );
    assert_eq!(
        (
            header(&first, "X-RateLimit-Limit"),
            header(&first, "X-RateLimit-Remaining"),
            header(&first, "X-RateLimit-Reset")
        ),
        ("2".into(), "1".into(), "30".into())
    );
    // Streams carry them too.
    let second = gw.post_json(CHAT, &body("m", true, 8)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(header(&second, "x-ratelimit-remaining-requests"), "0");
    let tokens_after_second: u64 = header(&second, "x-ratelimit-remaining-tokens").parse().unwrap();
    second.text().await.unwrap();

    let refused = gw.post_json(CHAT, &body("m", false, 8)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "30");
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&refused, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&refused, "X-RateLimit-Remaining"), "0");
    // The token counter had room and was not charged by the refused request; the second
    // request's reservation was reconciled to its usage meanwhile.
    let tokens_at_refusal: u64 = header(&refused, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(tokens_at_refusal > tokens_after_second, "{tokens_at_refusal} vs {tokens_after_second}");
    let v: Value = refused.json().await.unwrap();
    let e = &v["error"];
    assert_eq!((e["code"].as_str(), e["type"].as_str()), (Some("rate_limit_exceeded"), Some("requests")), "{v}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("rule 'per-ip'") && msg.contains("per client IP 127.0.0.1"), "{msg}");
    assert!(msg.contains("requests per minute") && msg.contains("limit 2, remaining 0"), "{msg}");
    assert!(msg.contains("try again in 29.") || msg.contains("try again in 30s"), "{msg}");
    assert!(e.get("param").is_some());
    // Probes and model lists are not rate-limited and carry no rate headers.
    let models = gw.http.get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
    assert!(header(&models, "x-ratelimit-limit-requests").is_empty());
}

#[tokio::test]
async fn model_scoped_rules_count_each_deployment_and_its_aliases_together() {
    let fake = FakeUpstream::openai().await.unwrap();
    let limits = "[[limits.rules]]\nscope = \"model\"\nrequests_per_minute = 2\nalgorithm = \"sliding_window\"\n\
                  [[limits.rules]]\nname = \"only-other\"\nscope = \"global\"\nrequests_per_minute = 1\nmodels = [\"other\"]\n";
    let gw = TestGateway::start(&config(&fake, limits)).await;
    assert_eq!(gw.post_json(CHAT, &body("m", false, 4)).await.status(), 200);
    assert_eq!(gw.post_json(CHAT, &body("mm", false, 4)).await.status(), 200);
    let r = gw.post_json(CHAT, &body("m", false, 4)).await;
    assert_eq!(r.status(), 429, "the alias counts with its deployment");
    let msg = r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("per model 'm'") && msg.contains("rule 'rule1'"), "{msg}");
    assert_eq!(gw.post_json(CHAT, &body("other", false, 4)).await.status(), 200, "another model, its own counter");
    let r = gw.post_json(CHAT, &body("other", false, 4)).await;
    assert_eq!(r.status(), 429);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("only-other"));
}

#[tokio::test]
async fn the_client_ip_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
    let fake = FakeUpstream::openai().await.unwrap();
    let rule = "[[limits.rules]]\nname = \"ip\"\nscope = \"ip\"\nrequests_per_minute = 1\n";
    let trusting =
        TestGateway::start(&config(&fake, &format!("[limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{rule}"))).await;
    let plain = TestGateway::start(&config(&fake, rule)).await;
    let send = |gw: &TestGateway, xff: &str| {
        gw.http.post(gw.url(CHAT)).header("x-forwarded-for", xff).json(&body("m", false, 4)).send()
    };
    assert_eq!(send(&trusting, "203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(send(&trusting, "203.0.113.2").await.unwrap().status(), 200, "another client");
    let r = send(&trusting, "198.51.100.7, 203.0.113.1").await.unwrap();
    assert_eq!(r.status(), 429, "the proxy's own entry counts, not the client's claim");
    assert!(r.text().await.unwrap().contains("203.0.113.1"));
    // Untrusted: the header is ignored; everyone is the peer 127.0.0.1.
    assert_eq!(send(&plain, "203.0.113.1").await.unwrap().status(), 200);
    let r = send(&plain, "203.0.113.2").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.text().await.unwrap().contains("127.0.0.1"));
}

/// Token reservations (prompt estimate + max_tokens) hold while streams are open, and are
/// reconciled with the usage when they end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_hold_with_streaming_and_reconcile_after() {
    let fake = FakeUpstream::openai().await.unwrap();
    // Slow streams (usage 5 + 4 = 9 tokens), so requests overlap.
    let slow = fake::chat_sse(&["Hello", ", ", "world", "!"], Some((5, 4))).delay(Duration::from_millis(150));
    fake.on("/v1/chat/completions", Reply::Stream(slow));
    let limits = format!(
        "[limits]\nredis_url = \"{}\"\nkey_prefix = \"{}\"\nredis_timeout_ms = 2000\n\
         [[limits.rules]]\nname = \"tpm\"\nscope = \"global\"\ntokens_per_minute = 200\n",
        shared_url(),
        unique_prefix("tpm")
    );
    let gw = TestGateway::start(&config(&fake, &limits)).await;
    let open = |_| {
        let (http, url) = (gw.http.clone(), gw.url(CHAT));
        tokio::spawn(async move {
            let r = http.post(url).json(&body("m", true, 40)).send().await.unwrap();
            let (status, left) = (r.status().as_u16(), header(&r, "x-ratelimit-remaining-tokens"));
            let text = r.text().await.unwrap();
            (status, left.parse::<u64>().unwrap_or(0), text)
        })
    };
    let tasks: Vec<_> = (0..10).map(open).collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let admitted: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    // Each reserves the same demand; the first admitted shows 200 − demand left.
    let demand = 200 - admitted.iter().map(|r| r.1).max().unwrap();
    assert!(demand > 40 && demand < 60, "prompt estimate + 40: {demand}");
    assert_eq!(admitted.len() as u64, 200 / demand, "{results:?}");
    assert!(admitted.iter().all(|r| r.2.contains("[DONE]")), "streams complete");
    assert!(results.iter().filter(|r| r.0 == 429).all(|r| r.2.contains("tokens per minute")));
    // The streams used 9 tokens each, not their reservation: room for more within moments (Redis
    // refunds are coalesced for a few milliseconds, and land one batch at a time). Without
    // reconciliation the bucket would hold {admitted} × demand and refuse for tens of seconds.
    // Each probe that gets in uses 9 tokens itself, so the expected floor moves with it; the
    // loop ends when a probe sees exactly the reconciled remainder (every refund landed).
    let t0 = Instant::now();
    let mut probes = 0u64;
    let (left, floor) = loop {
        let r = gw.post_json(CHAT, &body("m", true, 40)).await;
        let status = r.status();
        let left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap_or(0);
        let text = r.text().await.unwrap();
        if status == 200 {
            let floor = 200 - (admitted.len() as u64 + probes) * 9 - demand;
            probes += 1;
            if left >= floor {
                break (left, floor);
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "not reconciled: {status} left {left}: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // GCRA refills 200 tokens a minute: allow what came back while the test ran.
    let refill = (t0.elapsed().as_secs_f64() * 200.0 / 60.0).ceil() as u64;
    assert!(left <= floor + 10 + refill, "left {left}, expected about {floor}");
}

/// A request refused by a later stage (a cancelled one, here: the client is gone before the
/// backend answers) gives its reservation back with the tokens it used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_is_still_settled() {
    let fake = FakeUpstream::openai().await.unwrap();
    let stalled = fake::chat_sse(&["Hello"], Some((5, 1))).stall_after(2);
    fake.on("/v1/chat/completions", Reply::Stream(stalled));
    let limits = "[[limits.rules]]\nname = \"tpm\"\nscope = \"global\"\ntokens_per_minute = 1000\n";
    let gw = TestGateway::start(&config(&fake, limits)).await;
    let mut r = gw.post_json(CHAT, &body("m", true, 500)).await;
    assert_eq!(r.status(), 200);
    let reserved_left: u64 = header(&r, "x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(reserved_left < 500, "{reserved_left}");
    let _ = r.chunk().await.unwrap();
    drop(r);
    let t0 = Instant::now();
    loop {
        fake.on("/v1/chat/completions", fake::chat_json("ok", Some((1, 1))));
        let probe = gw.post_json(CHAT, &body("m", false, 1)).await;
        let left: u64 = header(&probe, "x-ratelimit-remaining-tokens").parse().unwrap_or(0);
        if left > 900 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "the cancelled stream's reservation was not given back: {left}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis dies mid-test: `fail_closed` answers 503 at once, `fail_open` admits, both count it;
/// when Redis is back (same port) both limit again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_the_policy_and_recovers() {
    let mut redis = PrivateRedis::start().await;
    let fake = FakeUpstream::openai().await.unwrap();
    let limits = |policy: &str| {
        format!(
            "[limits]\nredis_url = \"{}\"\non_store_error = \"{policy}\"\n\
             [[limits.rules]]\nname = \"g\"\nscope = \"global\"\nrequests_per_minute = 1000\n",
            redis.url()
        )
    };
    let closed = TestGateway::start(&config(&fake, &limits("fail_closed"))).await;
    let open = TestGateway::start(&config(&fake, &limits("fail_open"))).await;
    for gw in [&closed, &open] {
        let r = gw.post_json(CHAT, &body("m", false, 4)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "1000");
    }

    redis.kill();
    for _ in 0..3 {
        let t0 = Instant::now();
        let r = closed.post_json(CHAT, &body("m", false, 4)).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "a dead Redis must not hang requests: {:?}", t0.elapsed());
        assert_eq!(r.status(), 503);
        assert_eq!(header(&r, "retry-after"), "1");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "rate_limiter_unavailable", "{v}");
        assert!(!v.to_string().contains(&redis.port.to_string()), "no address in the body: {v}");

        let t0 = Instant::now();
        let r = open.post_json(CHAT, &body("m", false, 4)).await;
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert_eq!(r.status(), 200, "fail_open admits");
        assert!(header(&r, "x-ratelimit-limit-requests").is_empty(), "no counter answered: no rate headers");
    }
    let (c, o) = (closed.state().limits.stats(), open.state().limits.stats());
    assert_eq!((c.store_errors, c.failed_closed, c.failed_open), (3, 3, 0));
    assert_eq!((o.store_errors, o.failed_closed, o.failed_open), (3, 0, 3));

    redis.restart().await;
    for gw in [&closed, &open] {
        let t0 = Instant::now();
        loop {
            let r = gw.post_json(CHAT, &body("m", false, 4)).await;
            if r.status() == 200 && header(&r, "x-ratelimit-limit-requests") == "1000" {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "no recovery after Redis came back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_gateway_starts_while_redis_is_down_and_fails_closed_meanwhile() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fake = FakeUpstream::openai().await.unwrap();
    let limits = format!(
        "[limits]\nredis_url = \"redis://127.0.0.1:{port}\"\n[[limits.rules]]\nscope = \"global\"\nrequests_per_minute = 5\n"
    );
    let gw = TestGateway::start(&config(&fake, &limits)).await;
    assert_eq!(gw.post_json(CHAT, &body("m", false, 4)).await.status(), 503);
    assert_eq!(gw.http.get(gw.url("/health")).send().await.unwrap().status(), 200);
}

#[test]
fn limit_config_errors_are_all_listed() {
    let toml = "[backends.up]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[deployments.m]\nbackends = [\"up\"]\n\
                [limits]\nredis_url = \"mysql://u:hunter2@h/db\"\nredis_timeout_ms = 0\ntrusted_proxies = [\"nope\"]\n\
                [[limits.rules]]\nname = \"a\"\nscope = \"ip\"\n\
                [[limits.rules]]\nname = \"a\"\nscope = \"global\"\nrequests_per_minute = 0\nmodels = [\"ghost\"]\n\
                [[limits.rules]]\nscope = \"key\"\nalgorithm = \"sliding_window\"\ntokens_per_minute = 5\nburst_tokens = 9\n";
    let errs = ferrogate::config::load_str(toml).unwrap_err().0;
    let all = errs.join("\n");
    for needle in [
        "limits.redis_url",
        "redis_timeout_ms",
        "'nope'",
        "set requests_per_minute, tokens_per_minute or both",
        "another rule has the name 'a'",
        "requests_per_minute must be between",
        "'ghost'",
        "burst_* applies to gcra only",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    assert_eq!(errs.len(), 8, "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}
