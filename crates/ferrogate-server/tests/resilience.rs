//! Resilience, end to end: the real gateway on 127.0.0.1:0 in front of fault-injecting fake
//! upstreams over real HTTP — circuit breakers open, fail fast, probe and close; a backend that
//! dies loses no new request; a full queue answers 503 + Retry-After at once; retries go to the
//! other backend and never after the first byte; fallbacks are visible in headers; the
//! deployment's max_tokens cap is applied. Tiered routing with the two real models is in
//! `tiers.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{self as fake, FakeUpstream, Reply, chat_sse};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

// === helpers ===

fn backend(name: &str, f: &FakeUpstream) -> String {
    format!("[backends.{name}]\nkind = \"openai\"\nbase_url = \"{}\"\n", f.url("/v1"))
}

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
}

fn chat_requests(f: &FakeUpstream) -> usize {
    f.requests().iter().filter(|r| r.path == CHAT).count()
}

/// Waits until `f` has received `n` chat requests (health checks also reach the fake, so its
/// own request counter is not enough).
async fn wait_chat(f: &FakeUpstream, n: usize) {
    within(Duration::from_secs(5), "upstream requests", async {
        while chat_requests(f) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// Every SSE `data:` payload of a response body.
async fn sse_data(res: reqwest::Response) -> Vec<String> {
    let text = within(Duration::from_secs(10), "stream body", res.text()).await.unwrap();
    let mut dec = SseDecoder::new();
    let mut out: Vec<String> = dec.push(text.as_bytes()).into_iter().map(|e| e.data).collect();
    out.extend(dec.finish().map(|e| e.data));
    out
}

/// Status, JSON body, and the response for its headers.
async fn send(gw: &TestGateway, body: &Value) -> (u16, Value, Option<String>, Option<String>) {
    let res = within(Duration::from_secs(20), "request", gw.post_json(CHAT, body)).await;
    let status = res.status().as_u16();
    let (backend, retry) = (header(&res, "x-ferrogate-backend"), header(&res, "retry-after"));
    let v: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
    (status, v, backend, retry)
}

async fn ready_json(gw: &TestGateway) -> Value {
    gw.http.get(gw.url("/ready")).send().await.unwrap().json().await.unwrap()
}

fn breaker_state(ready: &Value, deployment: &str, backend: &str) -> String {
    ready["deployments"][deployment]["backends"][backend]["breaker"]["state"].as_str().unwrap().to_owned()
}

// === circuit breaker ===

#[tokio::test]
async fn breaker_opens_after_n_upstream_failures_fails_fast_probes_and_closes() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 3\nopen_ms = 400\n{}\
         [deployments.m]\nbackends = [\"up\"]\n",
        backend("up", &f)
    ))
    .await;
    // Client errors (upstream 400) say nothing about the backend's health.
    f.on(CHAT, fake::openai_error(400, "bad request"));
    for _ in 0..5 {
        assert_eq!(send(&gw, &chat("m", false)).await.0, 400);
    }
    assert_eq!(breaker_state(&ready_json(&gw).await, "m", "up"), "closed");
    // Three upstream failures in a row open it.
    f.on(CHAT, fake::openai_error(500, "boom"));
    for _ in 0..3 {
        assert_eq!(send(&gw, &chat("m", false)).await.0, 502);
    }
    let seen = chat_requests(&f);
    assert_eq!(breaker_state(&ready_json(&gw).await, "m", "up"), "open");
    // Open: fail fast, without touching the upstream, streaming or not.
    for stream in [false, true] {
        let t0 = Instant::now();
        let (status, v, _, retry) = send(&gw, &chat("m", stream)).await;
        assert_eq!((status, v["error"]["code"].as_str()), (503, Some("circuit_open")), "{v}");
        assert!(retry.is_some(), "Retry-After on circuit_open");
        assert!(t0.elapsed() < Duration::from_secs(1), "fail fast, not after a timeout");
    }
    assert_eq!(chat_requests(&f), seen, "an open breaker sends nothing upstream");
    // After open_ms one probe goes through; the upstream recovered, so it closes.
    f.on(
        CHAT,
        Reply::dynamic(|r| {
            if r.wants_stream(false) { chat_sse(&["ok"], None).into() } else { fake::chat_json("ok", None) }
        }),
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let (status, _, backend, _) = send(&gw, &chat("m", false)).await;
    assert_eq!((status, backend.as_deref()), (200, Some("up")));
    assert_eq!(chat_requests(&f), seen + 1);
    let ready = ready_json(&gw).await;
    assert_eq!(breaker_state(&ready, "m", "up"), "closed", "{ready}");
    assert_eq!(ready["deployments"]["m"]["backends"]["up"]["breaker"]["opened_total"], 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 2\nopen_ms = 300\n{}\
         [deployments.m]\nbackends = [\"up\"]\n",
        backend("up", &f)
    ))
    .await;
    f.on(CHAT, Reply::Close);
    for _ in 0..2 {
        assert_eq!(send(&gw, &chat("m", false)).await.0, 502);
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(send(&gw, &chat("m", false)).await.0, 502, "the probe reached the upstream and failed");
    let (status, v, _, _) = send(&gw, &chat("m", false)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("circuit_open")));
    // A connection closed without a response is tried once more over a fresh one (neutral for
    // the breaker), so each of the three requests reached the upstream twice.
    assert_eq!(chat_requests(&f), 6);
    gw.shutdown().await;
}

// === failover ===

#[tokio::test]
async fn killing_one_of_two_backends_loses_no_new_request() {
    let a = FakeUpstream::openai().await.unwrap();
    let b = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "{}{}[deployments.m]\nbackends = [\"a\", \"b\"]\n",
        backend("a", &a),
        backend("b", &b)
    ))
    .await;
    // Both serve while alive.
    let bodies: Vec<Value> = (0..20).map(|i| chat("m", i % 2 == 0)).collect();
    let warm: Vec<_> = bodies.iter().map(|b| send(&gw, b)).collect();
    for (status, ..) in futures::future::join_all(warm).await {
        assert_eq!(status, 200);
    }
    assert!(chat_requests(&a) > 0 && chat_requests(&b) > 0, "load is spread over both");
    drop(a); // the process is gone: connections refused, pooled ones closed
    let before_b = chat_requests(&b);
    // Ten waves of four concurrent requests, half of them streams.
    for wave in 0..10 {
        let burst: Vec<_> = bodies[..4].iter().map(|b| gw.post_json(CHAT, b)).collect();
        let results = within(Duration::from_secs(30), "burst", futures::future::join_all(burst)).await;
        for (i, res) in results.into_iter().enumerate() {
            assert_eq!(res.status(), 200, "request {i} of wave {wave} lost");
            assert_eq!(header(&res, "x-ferrogate-backend").as_deref(), Some("b"));
            if i % 2 == 0 {
                let events = sse_data(res).await;
                assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");
                assert!(!events.iter().any(|e| e.contains("\"error\"")), "{events:?}");
            } else {
                let v: Value = res.json().await.unwrap();
                assert_eq!(v["choices"][0]["message"]["content"], fake::DEFAULT_TEXT);
            }
        }
    }
    assert_eq!(chat_requests(&b) - before_b, 40);
    let ready = ready_json(&gw).await;
    assert_eq!(breaker_state(&ready, "m", "a"), "open", "{ready}");
    gw.shutdown().await;
}

#[tokio::test]
async fn retries_go_to_the_other_backend_and_never_after_the_first_byte() {
    let a = FakeUpstream::openai().await.unwrap();
    let b = FakeUpstream::openai().await.unwrap();
    // `a` has almost all the weight, so every first attempt goes to it.
    let gw = TestGateway::start(&format!(
        "[breaker]\nconsecutive_failures = 0\nfailure_rate = 0.0\n{}{}\
         [deployments.m]\nbackends = [\"a\", \"b\"]\nweights = {{ a = 100 }}\n",
        backend("a", &a),
        backend("b", &b)
    ))
    .await;
    // Before the first byte: 500 and 429 are retried, on `b`.
    for reply in [fake::openai_error(500, "boom"), fake::rate_limited(1)] {
        for stream in [false, true] {
            a.push(CHAT, reply.clone());
            let (a0, b0) = (chat_requests(&a), chat_requests(&b));
            let res = gw.post_json(CHAT, &chat("m", stream)).await;
            assert_eq!(res.status(), 200);
            assert_eq!(header(&res, "x-ferrogate-backend").as_deref(), Some("b"));
            assert_eq!((chat_requests(&a) - a0, chat_requests(&b) - b0), (1, 1), "one try each");
            let _ = res.bytes().await;
        }
    }
    // After the first byte: the stream fails with an error event, and nothing is retried.
    a.push(CHAT, chat_sse(&["Hel", "lo"], None).die_after(2));
    let (a0, b0) = (chat_requests(&a), chat_requests(&b));
    let res = gw.post_json(CHAT, &chat("m", true)).await;
    assert_eq!((res.status().as_u16(), header(&res, "x-ferrogate-backend").as_deref()), (200, Some("a")));
    let events = sse_data(res).await;
    assert!(events.iter().any(|e| e.contains("\"error\"")), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!((chat_requests(&a) - a0, chat_requests(&b) - b0), (1, 0), "never retried after the first byte");
    // A client error is not retried either.
    a.push(CHAT, fake::openai_error(400, "bad"));
    let b0 = chat_requests(&b);
    assert_eq!(send(&gw, &chat("m", false)).await.0, 400);
    assert_eq!(chat_requests(&b), b0);
    gw.shutdown().await;
}

/// A connection the upstream closes without answering (a kept-alive one it was closing, as
/// llama.cpp's server does after a streamed answer) is tried once more on the same backend over
/// a fresh connection — even with retries off, and without a failover that would cost a
/// prefix-routed prompt its cache; a second close in a row is a failure like any other.
#[tokio::test]
async fn a_connection_closed_without_a_response_is_tried_again_on_the_same_backend() {
    let a = FakeUpstream::openai().await.unwrap();
    let b = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n{}{}[deployments.m]\nbackends = [\"a\", \"b\"]\nrouting = \"prefix\"\n",
        backend("a", &a),
        backend("b", &b)
    ))
    .await;
    // Every request has the same long prompt, so prefix routing keeps it on one backend.
    let body = |stream: bool| {
        json!({"model": "m", "stream": stream, "messages": [
            {"role": "system", "content": "The same long system prompt. ".repeat(40)},
            {"role": "user", "content": "hi"}]})
    };
    let res = gw.post_json(CHAT, &body(false)).await;
    let home = header(&res, "x-ferrogate-backend").unwrap();
    let (home_up, other_up) = if home == "a" { (&a, &b) } else { (&b, &a) };
    for stream in [false, true] {
        home_up.push(CHAT, Reply::Close);
        let (h0, o0) = (chat_requests(home_up), chat_requests(other_up));
        let res = gw.post_json(CHAT, &body(stream)).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ferrogate-backend").as_deref(), Some(home.as_str()), "no failover");
        let _ = res.bytes().await;
        assert_eq!((chat_requests(home_up) - h0, chat_requests(other_up) - o0), (2, 0));
    }
    // Twice in a row: a failure (502 with retries off).
    home_up.push(CHAT, Reply::Close);
    home_up.push(CHAT, Reply::Close);
    assert_eq!(gw.post_json(CHAT, &body(false)).await.status(), 502);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_bounds_extra_load() {
    let a = FakeUpstream::openai().await.unwrap();
    a.on(CHAT, fake::openai_error(503, "down"));
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 3\nbackoff_base_ms = 1\nbackoff_max_ms = 2\nbudget_ratio = 0.2\nbudget_burst = 2\n\
         [breaker]\nconsecutive_failures = 0\nfailure_rate = 0.0\n{}[deployments.m]\nbackends = [\"a\"]\n",
        backend("a", &a)
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(send(&gw, &chat("m", false)).await.0, 503);
    }
    // 20 first attempts + a burst of 2 + 20% of 20 earned = at most 26 upstream calls.
    let calls = chat_requests(&a);
    assert!((22..=26).contains(&calls), "{calls} upstream calls for 20 requests");
    gw.shutdown().await;
}

// === fallbacks and caps ===

#[tokio::test]
async fn fallback_serves_on_failure_and_overload_and_says_so() {
    let big = FakeUpstream::openai().await.unwrap();
    let small = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n{}{}\
         [deployments.large]\nbackends = [\"big\"]\nfallbacks = [\"small\"]\nconcurrency = 1\nqueue_size = 0\n\
         [deployments.small]\nbackends = [\"tiny\"]\nmax_tokens_cap = 3\n",
        backend("big", &big),
        backend("tiny", &small)
    ))
    .await;
    // Served by its own deployment: no fallback header.
    let res = within(Duration::from_secs(10), "plain", gw.post_json(CHAT, &chat("large", false))).await;
    assert_eq!((res.status().as_u16(), header(&res, "x-ferrogate-fallback")), (200, None));
    // Failure of the large deployment → the small one serves, with its cap.
    big.push(CHAT, fake::openai_error(502, "bad gateway"));
    let mut body = chat("large", false);
    body["max_tokens"] = json!(100);
    let res = within(Duration::from_secs(10), "failover", gw.post_json(CHAT, &body)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ferrogate-fallback").as_deref(), Some("large->small"));
    assert_eq!(header(&res, "x-ferrogate-backend").as_deref(), Some("tiny"));
    assert_eq!(small.last_request(CHAT).unwrap().json()["max_tokens"], 3, "the small deployment's cap");
    // Overload: the large deployment's one slot is taken by a stalled request.
    big.push(CHAT, Reply::Stall);
    let gw2 = gw.url(CHAT);
    let http = gw.http.clone();
    let stalled = tokio::spawn(async move { http.post(gw2).json(&chat("large", false)).send().await });
    wait_chat(&big, 3).await;
    let res = within(Duration::from_secs(10), "overload", gw.post_json(CHAT, &chat("large", true))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ferrogate-fallback").as_deref(), Some("large->small"));
    let events = sse_data(res).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    stalled.abort();
    gw.shutdown().await;
}

// === backpressure ===

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after_at_once() {
    let f = FakeUpstream::openai().await.unwrap();
    f.on(CHAT, Reply::Stall);
    let gw = TestGateway::start(&format!(
        "{}[deployments.m]\nbackends = [\"up\"]\nconcurrency = 1\nqueue_size = 0\nqueue_max_wait_ms = 60000\n",
        backend("up", &f)
    ))
    .await;
    let (url, http) = (gw.url(CHAT), gw.http.clone());
    let busy = tokio::spawn(async move { http.post(url).json(&chat("m", false)).send().await });
    wait_chat(&f, 1).await;
    for stream in [false, true] {
        let t0 = Instant::now();
        let (status, v, _, retry) = send(&gw, &chat("m", stream)).await;
        assert!(t0.elapsed() < Duration::from_secs(2), "answered at once, not after max_wait");
        assert_eq!((status, v["error"]["code"].as_str()), (503, Some("queue_full")), "{v}");
        assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(v["error"]["type"], "server_error");
    }
    assert_eq!(chat_requests(&f), 1, "refused requests never reach the backend");
    let ready = ready_json(&gw).await;
    assert_eq!(ready["deployments"]["m"]["queue"]["running"], 1, "{ready}");
    assert_eq!(ready["deployments"]["m"]["queue"]["rejected_full"], 2, "{ready}");
    busy.abort();
    gw.shutdown().await;
}

#[tokio::test]
async fn queued_requests_are_served_when_a_slot_frees_or_time_out() {
    let f = FakeUpstream::openai().await.unwrap();
    // Each stream takes ~0.6 s (4 pieces, 150 ms apart).
    let slow = chat_sse(&["a", "b", "c", "d"], None).delay(Duration::from_millis(150));
    f.on(CHAT, slow);
    let gw = TestGateway::start(&format!(
        "{}[deployments.m]\nbackends = [\"up\"]\nconcurrency = 1\nqueue_size = 2\nqueue_max_wait_ms = 5000\n\
         [deployments.short]\nbackends = [\"up\"]\nconcurrency = 1\nqueue_size = 2\nqueue_max_wait_ms = 100\n",
        backend("up", &f)
    ))
    .await;
    // Two at once on `m`: the second waits for the first's slot, then is served.
    let both = futures::future::join_all((0..2).map(|_| async {
        let res = gw.post_json(CHAT, &chat("m", true)).await;
        (res.status().as_u16(), sse_data(res).await)
    }))
    .await;
    for (status, events) in both {
        assert_eq!(status, 200);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    // On `short`, the second gives up after 100 ms: 503 queue_timeout.
    let first = gw.post_json(CHAT, &chat("short", true)).await;
    let (status, v, _, retry) = send(&gw, &chat("short", true)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("queue_timeout")), "{v}");
    assert!(retry.is_some());
    assert_eq!(sse_data(first).await.last().map(String::as_str), Some("[DONE]"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_bad_priority_header_is_a_400_naming_it() {
    let f = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!("{}[deployments.m]\nbackends = [\"up\"]\n", backend("up", &f))).await;
    let res = gw.http.post(gw.url(CHAT)).header("x-ferrogate-priority", "urgent").json(&chat("m", false)).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["param"], "x-ferrogate-priority");
    let res = gw.http.post(gw.url(CHAT)).header("x-ferrogate-priority", "batch").json(&chat("m", false)).send().await;
    assert_eq!(res.unwrap().status(), 200);
    gw.shutdown().await;
}
