//! Observability, black-box: `/metrics` after a known sequence of requests (exact counts, checked
//! by `promtool check metrics`), traces received by a real OTLP/HTTP receiver in the test (span
//! tree, GenAI attributes, W3C `traceparent` accepted from the client and forwarded upstream),
//! and the dashboard's event stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::{FakeUpstream, Reply};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

// === helpers ===

async fn gateway(fake: &FakeUpstream, extra: &str) -> TestGateway {
    TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n{extra}",
        fake.url("/v1")
    ))
    .await
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// `/metrics` parsed into `series → value` (series as printed: `name{labels}`).
async fn scrape(gw: &TestGateway) -> (String, HashMap<String, f64>) {
    let res = gw.http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse::<f64>().unwrap())))
        .collect();
    (text, samples)
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Polls `/metrics` until `series` reaches `want` (settling ends just after the response).
async fn wait_for(gw: &TestGateway, series: &str, want: f64) -> HashMap<String, f64> {
    for _ in 0..100 {
        let (_, s) = scrape(gw).await;
        if get(&s, series) >= want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (text, _) = scrape(gw).await;
    panic!("{series} never reached {want}:\n{text}");
}

/// `promtool check metrics` on `text`: exposition format and naming conventions.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/setup.sh --test (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\n---\n{text}");
}

// === metrics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_move_by_exactly_what_happened() {
    let fake = FakeUpstream::openai().await.unwrap();
    // One retry, so the failing request below is retried once (on the only backend) and fails.
    let gw = gateway(&fake, "[retry]\nmax_retries = 1\n").await;
    let (text, before) = scrape(&gw).await;
    assert!(
        text.contains(
            r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="2xx",error_type="none"} 0"#
        ),
        "known label sets export at zero:\n{text}"
    );
    assert_eq!(get(&before, r#"ferrogate_build_info{version="0.1.0"}"#), 1.0);

    for _ in 0..3 {
        assert_eq!(gw.post_json(CHAT, &chat("m", false)).await.status(), 200);
    }
    for _ in 0..2 {
        let res = gw.post_json(CHAT, &chat("m", true)).await;
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().contains("[DONE]"));
    }
    let res = gw.post_json(CHAT, &chat("no-such-model-x7", false)).await;
    assert_eq!(res.status(), 404);
    for _ in 0..2 {
        fake.push(CHAT, Reply::json(500, &json!({"error": {"message": "boom"}})));
    }
    let res = gw.post_json(CHAT, &chat("m", false)).await;
    assert_eq!(res.status(), 502);

    let ok = r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="2xx",error_type="none"}"#;
    wait_for(&gw, ok, 5.0).await;
    let s = wait_for(&gw, r#"ferrogate_backend_requests_total{backend="up",outcome="error"}"#, 1.0).await;
    assert_eq!(get(&s, ok), 5.0);
    let unknown = r#"ferrogate_requests_total{endpoint="chat",deployment="unknown",status_class="4xx",error_type="model_not_found"}"#;
    assert_eq!(get(&s, unknown), 1.0, "an unknown model is labelled unknown");
    let failed: f64 = s
        .iter()
        .filter(|(k, _)| k.starts_with(r#"ferrogate_requests_total{endpoint="chat",deployment="m",status_class="5xx""#))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failed, 1.0);
    assert_eq!(get(&s, r#"ferrogate_backend_requests_total{backend="up",outcome="ok"}"#), 5.0);
    // Fake usage: 5 prompt + 4 completion tokens per successful request.
    assert_eq!(get(&s, r#"ferrogate_tokens_total{deployment="m",token_type="completion"}"#), 20.0);
    let prompt = get(&s, r#"ferrogate_tokens_total{deployment="m",token_type="prompt"}"#);
    assert!(prompt >= 25.0, "5 × 5 prompt tokens, plus the failed request's estimate: {prompt}");
    let dur = r#"ferrogate_request_duration_seconds_count{endpoint="chat",deployment="m",status_class="2xx"}"#;
    assert_eq!(get(&s, dur), 5.0);
    assert_eq!(get(&s, r#"ferrogate_time_to_first_token_seconds_count{deployment="m",backend="up"}"#), 2.0);
    assert_eq!(get(&s, r#"ferrogate_time_per_output_token_seconds_count{deployment="m",backend="up"}"#), 2.0);
    assert_eq!(
        get(
            &s,
            r#"gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="chat",gen_ai_request_model="m"}"#
        ),
        2.0
    );
    let input = r#"gen_ai_client_token_usage_count{gen_ai_operation_name="chat",gen_ai_request_model="m",gen_ai_token_type="input"}"#;
    assert_eq!(get(&s, input), 6.0, "every request that reached the backend");
    let output_sum = r#"gen_ai_client_token_usage_sum{gen_ai_operation_name="chat",gen_ai_request_model="m",gen_ai_token_type="output"}"#;
    assert_eq!(get(&s, output_sum), 20.0);
    assert_eq!(get(&s, "ferrogate_active_requests"), 0.0);
    // Governance (issue 5): one retry, on the same (only) backend: no failover, no fallback.
    assert_eq!(get(&s, r#"ferrogate_retries_total{backend="up"}"#), 1.0);
    assert_eq!(get(&s, r#"ferrogate_failovers_total{deployment="m"}"#), 0.0);
    assert_eq!(get(&s, r#"ferrogate_fallbacks_total{deployment="m"}"#), 0.0);
    let waited = r#"ferrogate_queue_wait_seconds_count{deployment="m"}"#;
    assert_eq!(get(&s, waited), 6.0, "every request that reached the queue got a slot");
    // Refreshed once a second: the breaker is closed, the queue empty.
    let s = wait_for(&gw, r#"ferrogate_circuit_state{backend="up",state="closed"}"#, 1.0).await;
    assert_eq!(get(&s, r#"ferrogate_circuit_state{backend="up",state="open"}"#), 0.0);
    assert_eq!(get(&s, r#"ferrogate_queue_depth{deployment="m"}"#), 0.0);

    let (text, _) = scrape(&gw).await;
    assert!(!text.contains("no-such-model-x7"), "client input never becomes a label");
    promtool_check_metrics(&text);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_their_own_listener_and_need_a_key_unless_public() {
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, "[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    let addr = gw.metrics_addr().expect("a metrics listener");
    assert_ne!(addr, gw.addr);
    let res = gw.http.get(format!("http://{addr}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("ferrogate_build_info"));
    assert_eq!(gw.http.get(gw.url("/metrics")).send().await.unwrap().status(), 404, "not on the main listener");
    gw.shutdown().await;

    // Not public by default (issue 17): a key is needed.
    let gw = gateway(&fake, "[server]\napi_keys = [\"sk-test-12345678\"]\n").await;
    assert_eq!(gw.http.get(gw.url("/metrics")).send().await.unwrap().status(), 401);
    let res = gw.http.get(gw.url("/metrics")).bearer_auth("sk-test-12345678").send().await.unwrap();
    assert_eq!(res.status(), 200);
    gw.shutdown().await;

    let gw = gateway(&fake, "[server]\napi_keys = [\"sk-test-12345678\"]\n[metrics]\npublic = true\n").await;
    assert_eq!(gw.http.get(gw.url("/metrics")).send().await.unwrap().status(), 200, "public when configured");
    assert_eq!(gw.http.get(gw.url("/dashboard")).send().await.unwrap().status(), 200, "the page holds no data");
    let events = gw.http.get(gw.url("/dashboard/events")).send().await.unwrap();
    assert_eq!(events.status(), 401, "the data stream needs a key");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_events_stream_aggregates_and_recent_requests() {
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, "").await;
    for _ in 0..4 {
        let res = gw.post_json(CHAT, &chat("m", true)).await;
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().contains("[DONE]"));
    }
    // A stream settles just after its last byte: read snapshots until all four are in.
    let mut res = gw.http.get(gw.url("/dashboard/events")).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (mut text, mut v) = (String::new(), Value::Null);
    for _ in 0..5 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.unwrap().unwrap().unwrap();
        text = String::from_utf8(chunk.to_vec()).unwrap();
        v = serde_json::from_str(text.trim().strip_prefix("data:").unwrap().trim()).unwrap();
        if v["last_60s"]["requests"] == 4 {
            break;
        }
    }
    assert_eq!(v["last_60s"]["requests"], 4, "{v}");
    assert_eq!(v["last_60s"]["completion_tokens"], 16, "{v}");
    assert!(v["last_60s"]["ttft_ms"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["recent"].as_array().unwrap().len(), 4);
    assert_eq!(v["recent"][0]["deployment"], "m");
    assert_eq!(v["deployments"][0]["targets"][0]["backend"], "up");
    assert!(!text.contains("\"hi\""), "never prompt text");
    gw.shutdown().await;
}

// === traces ===

/// A real OTLP/HTTP receiver: decodes every `POST /v1/traces` (protobuf) and keeps the spans.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let r = Receiver::default();
        let app = Router::new().route("/v1/traces", post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `n` spans arrived.
    async fn wait(&self, gw: &TestGateway, n: usize) -> Vec<Span> {
        for _ in 0..100 {
            gw.state().obs.flush_traces().await;
            let s = self.spans();
            if s.len() >= n {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} spans, got {:#?}", self.spans().iter().map(|s| s.name.clone()).collect::<Vec<_>>());
    }
}

async fn receive(State(r): State<Receiver>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).unwrap();
    let mut spans = r.spans.lock().unwrap();
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            spans.extend(ss.spans);
        }
    }
    ""
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a AnyValue> {
    s.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn int_attr(s: &Span, key: &str) -> i64 {
    match attr(s, key) {
        Some(AnyValue::IntValue(i)) => *i,
        other => panic!("{key}: {other:?} on {}", s.name),
    }
}

fn str_attr(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(AnyValue::StringValue(v)) => v.clone(),
        other => panic!("{key}: {other:?} on {}", s.name),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tracing_toml(addr: SocketAddr, ratio: f64) -> String {
    format!(
        "[tracing]\nenabled = true\nendpoint = \"http://{addr}\"\nsampling_ratio = {ratio}\nexport_interval_ms = 100\n"
    )
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_becomes_a_span_tree_that_continues_the_client_trace_upstream() {
    let (rx, addr) = Receiver::start().await;
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, &format!("[server]\napi_keys = [\"sk-test-12345678\"]\n{}", tracing_toml(addr, 0.0))).await;
    let res = gw
        .http
        .post(gw.url(CHAT))
        .bearer_auth("sk-test-12345678")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&chat("m", true))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    // Root, auth, routing, limits, backend, settle.
    let spans = rx.wait(&gw, 6).await;
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let root = by_name["POST /v1/chat/completions"];
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == CLIENT_TRACE),
        "the client's trace is continued (its sampled flag wins over ratio 0)"
    );
    assert_eq!(hex(&root.parent_span_id), CLIENT_SPAN);
    for child in ["auth", "routing", "limits", "backend", "settle"] {
        let s = by_name.get(child).unwrap_or_else(|| panic!("no {child} span in {:?}", by_name.keys()));
        assert_eq!(s.parent_span_id, root.span_id, "{child} is a child of the request span");
        assert!(
            s.start_time_unix_nano >= root.start_time_unix_nano
                && s.end_time_unix_nano <= root.end_time_unix_nano + 1_000_000,
            "{child} inside the request"
        );
    }
    assert_eq!(str_attr(root, "gen_ai.request.model"), "m");
    assert_eq!(int_attr(root, "gen_ai.usage.input_tokens"), 5);
    assert_eq!(int_attr(root, "gen_ai.usage.output_tokens"), 4);
    assert_eq!(int_attr(root, "http.response.status_code"), 200);
    // The upstream got the backend span's context.
    let backend = by_name["backend"];
    let tp = fake.last_request(CHAT).unwrap().header("traceparent").unwrap().to_owned();
    assert_eq!(tp, format!("00-{CLIENT_TRACE}-{}-01", hex(&backend.span_id)));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_export_nothing_but_still_propagate() {
    let (rx, addr) = Receiver::start().await;
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = gateway(&fake, &tracing_toml(addr, 0.0)).await;
    assert_eq!(gw.post_json(CHAT, &chat("m", false)).await.status(), 200);
    let tp = fake.last_request(CHAT).unwrap().header("traceparent").unwrap().to_owned();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "unsampled context forwarded: {tp}");
    gw.state().obs.flush_traces().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.spans().is_empty(), "{:?}", rx.spans());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_engine_phases_are_spans_of_the_backend_attempt() {
    let (rx, addr) = Receiver::start().await;
    let gw = TestGateway::embedded(1, &tracing_toml(addr, 1.0)).await;
    let body = json!({"model": "smollm2", "stream": true, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "Count to five."}]});
    let res = gw.post_json(CHAT, &body).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    let spans = rx.wait(&gw, 8).await;
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let backend = by_name["backend"];
    for phase in ["engine.queue", "engine.prefill", "engine.decode"] {
        let s = by_name.get(phase).unwrap_or_else(|| panic!("no {phase} in {:?}", by_name.keys()));
        assert_eq!(s.parent_span_id, backend.span_id, "{phase} under the backend attempt");
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
    }
    let (prefill, decode) = (by_name["engine.prefill"], by_name["engine.decode"]);
    assert!(prefill.end_time_unix_nano <= decode.start_time_unix_nano + 1, "prefill before decode");
    let root = by_name["POST /v1/chat/completions"];
    assert!(int_attr(root, "gen_ai.usage.output_tokens") > 0);
    // The exporter runs at idle priority; on an idle machine every span ended is exported.
    let exported = r#"ferrogate_tracing_spans_total{outcome="exported"}"#;
    let s = wait_for(&gw, exported, spans.len() as f64).await;
    assert_eq!(get(&s, r#"ferrogate_tracing_spans_total{outcome="ended"}"#), get(&s, exported));
    assert_eq!(get(&s, exported), rx.spans().len() as f64);
    gw.shutdown().await;
}
