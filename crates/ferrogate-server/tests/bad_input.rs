//! Bad input, generated (issue 17 item 11): a thousand malformed or odd request bodies — wrong
//! types in every field, deep nesting, huge and odd numbers, invalid UTF-8, a BOM, duplicate keys,
//! truncation, NUL bytes, control characters, very long strings — sent to every inference front
//! (OpenAI chat and completions, the seeds' `/generate`, Anthropic `/v1/messages`, Ollama
//! `/api/chat` and `/api/generate`). Never a 5xx, never a hang, and every refusal in the front's
//! own error shape. The generator is seeded: a failure names its seed and body.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::TestGateway;
use ferrogate_testkit::upstream::FakeUpstream;
use serde_json::{Value, json};

const BODIES: usize = 1_000;

/// The fronts: path, and whether a refusal is in its shape.
const FRONTS: &[(&str, Front)] = &[
    ("/v1/chat/completions", Front::OpenAi),
    ("/v1/completions", Front::OpenAi),
    ("/generate", Front::OpenAi),
    ("/v1/messages", Front::Anthropic),
    ("/api/chat", Front::Ollama),
    ("/api/generate", Front::Ollama),
];

#[derive(Clone, Copy, Debug)]
enum Front {
    OpenAi,
    Anthropic,
    Ollama,
}

/// A valid body for each front, mutated by the generator.
fn valid(path: &str) -> Value {
    match path {
        "/v1/completions" | "/generate" | "/api/generate" => json!({"model": "m", "prompt": "hi", "max_tokens": 4}),
        "/v1/messages" => json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
        _ => json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}),
    }
}

/// An odd JSON value.
fn odd_value(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(0..12) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(-1),
        4 => json!(1.5e300),
        5 => json!(f64::MIN_POSITIVE),
        6 => json!("x".repeat(rng.usize(0..70_000))),
        7 => json!("\u{0}\u{1f}\u{feff}\u{202e}é🦀"),
        8 => json!([]),
        9 => json!({}),
        10 => json!([1, "two", null, {"three": [4]}]),
        _ => json!({"role": "user", "content": [{"type": "image_url"}]}),
    }
}

/// One body as bytes: a mutated valid body, or a raw malformation.
fn body(rng: &mut fastrand::Rng, path: &str) -> Vec<u8> {
    let mut v = valid(path);
    match rng.u8(0..14) {
        // A field of the wrong type or value.
        0..=4 => {
            let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            let k = keys[rng.usize(..keys.len())].clone();
            v[k] = odd_value(rng);
        }
        // An unknown field, or a nested one inside a message.
        5 => v["x_unknown"] = odd_value(rng),
        6 => {
            if let Some(m) = v.get_mut("messages").and_then(|m| m.get_mut(0)) {
                m["content"] = odd_value(rng);
            } else {
                v["prompt"] = odd_value(rng);
            }
        }
        // Deep nesting.
        7 => {
            let depth = rng.usize(100..5_000);
            return format!("{{\"model\":\"m\",\"messages\":{}{}}}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        // Numbers JSON allows but no Rust integer holds.
        8 => {
            return br#"{"model":"m","max_tokens":1e999999,"messages":[{"role":"user","content":"hi"}]}"#.to_vec();
        }
        // Invalid UTF-8 inside a string.
        9 => {
            let mut b = br#"{"model":"m","max_tokens":4,"messages":[{"role":"user","content":"h"#.to_vec();
            b.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            b.extend_from_slice(br#""}]}"#);
            return b;
        }
        // A byte-order mark before the document.
        10 => {
            let mut b = vec![0xef, 0xbb, 0xbf];
            b.extend(serde_json::to_vec(&v).unwrap());
            return b;
        }
        // Duplicate keys.
        11 => return br#"{"model":"m","model":"other","max_tokens":4,"max_tokens":"x","messages":[]}"#.to_vec(),
        // Truncated.
        12 => {
            let b = serde_json::to_vec(&v).unwrap();
            return b[..rng.usize(0..b.len())].to_vec();
        }
        // Not an object.
        _ => return serde_json::to_vec(&odd_value(rng)).unwrap(),
    }
    serde_json::to_vec(&v).unwrap()
}

fn in_shape(front: Front, v: &Value) -> bool {
    match front {
        Front::OpenAi => v["error"]["message"].is_string() && v["error"]["type"].is_string(),
        Front::Anthropic => v["type"] == "error" && v["error"]["type"].is_string() && v["error"]["message"].is_string(),
        Front::Ollama => v["error"].is_string(),
    }
}

#[tokio::test]
async fn a_thousand_malformed_bodies_never_get_a_5xx() {
    let fake = FakeUpstream::openai().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    ))
    .await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let seed = std::env::var("FG_BAD_INPUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x005e_ed17);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut refused = 0;
    for i in 0..BODIES {
        let (path, front) = FRONTS[i % FRONTS.len()];
        let bytes = body(&mut rng, path);
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        let res = http
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}, body {i} to {path}: no answer ({e}): {shown}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(status < 500, "seed {seed}, body {i} to {path}: {status} {text} for {shown}");
        if status >= 400 {
            refused += 1;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(in_shape(front, &v), "seed {seed}, body {i} to {path}: {status} not in {front:?} shape: {text}");
        }
    }
    assert!(refused > BODIES / 2, "the generator made mostly valid bodies ({refused} refused): it tests little");
    // The gateway is still healthy afterwards.
    let ok = http.post(gw.url("/v1/chat/completions")).json(&valid("/v1/chat/completions")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}
