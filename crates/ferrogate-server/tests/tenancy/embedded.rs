//! The ledger against the real embedded model (SmolLM2, one compute thread): over a mix of
//! plain, streamed, failed and cancelled requests, every request has one row, and the tokens of
//! the rows equal the `usage` objects the clients received; cancelled streams are charged the
//! prompt and what was delivered before the client left.

use std::collections::HashMap;
use std::time::Duration;

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::{TestDatabase, TestGateway};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::env::MASTER;

async fn post(gw: &TestGateway, key: &str, path: &str, id: &str, body: &Value) -> reqwest::Response {
    gw.http.post(gw.url(path)).bearer_auth(key).header("x-request-id", id).json(body).send().await.unwrap()
}

fn chat(content: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "smollm2", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
        "temperature": 0, "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

/// The `usage` of a streamed response's last chunk.
async fn streamed_usage(res: reqwest::Response) -> Value {
    let mut dec = SseDecoder::new();
    let mut usage = Value::Null;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        for ev in dec.push(&chunk.unwrap()) {
            if let Ok(v) = serde_json::from_str::<Value>(&ev.data)
                && v["usage"].is_object()
            {
                usage = v["usage"].clone();
            }
        }
    }
    usage
}

pub async fn ledger_tokens_equal_what_clients_received(db: &TestDatabase) {
    let extra = format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n",
        db.url
    );
    let gw = TestGateway::embedded(2, &extra).await;
    let admin = |path: &str, body: Value| gw.http.post(gw.url(path)).bearer_auth(MASTER).json(&body).send();
    assert_eq!(admin("/admin/v1/tenants", json!({"name": "acme"})).await.unwrap().status(), 201);
    let key: Value = admin("/admin/v1/keys", json!({"tenant": "acme", "limits": {"tokens_per_day": 1000000}}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap();

    let mut received: HashMap<String, (u64, u64)> = HashMap::new();
    let mut record = |id: &str, u: &Value| {
        received.insert(id.to_owned(), (u["prompt_tokens"].as_u64().unwrap(), u["completion_tokens"].as_u64().unwrap()))
    };
    for (i, (prompt, max)) in
        [("Say hello.", 6), ("Name a colour.", 9), ("Count to three.", 12)].into_iter().enumerate()
    {
        let id = format!("plain-{i}");
        let v: Value =
            post(&gw, key, "/v1/chat/completions", &id, &chat(prompt, max, false)).await.json().await.unwrap();
        record(&id, &v["usage"]);
        let id = format!("stream-{i}");
        let u = streamed_usage(post(&gw, key, "/v1/chat/completions", &id, &chat(prompt, max, true)).await).await;
        record(&id, &u);
    }
    let legacy = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0});
    let v: Value = post(&gw, key, "/v1/completions", "legacy", &legacy).await.json().await.unwrap();
    record("legacy", &v["usage"]);

    // Failures get no usage object and are charged nothing.
    let failed = [
        (
            "no-model",
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        ("too-long", "/v1/chat/completions", chat(&"word ".repeat(3000), 8, true), 400),
    ];
    for (id, path, body, status) in &failed {
        assert_eq!(post(&gw, key, path, id, body).await.status().as_u16(), *status, "{id}");
        received.insert((*id).to_owned(), (0, 0));
    }
    // Cancelled: the client reads two content chunks of a long answer, then leaves.
    let mut seen = HashMap::new();
    for id in ["cancel-0", "cancel-1"] {
        let res =
            post(&gw, key, "/v1/chat/completions", id, &chat("Write a long story about a dragon.", 200, true)).await;
        let mut dec = SseDecoder::new();
        let mut body = res.bytes_stream();
        let mut contents = 0;
        while contents < 2 {
            let chunk = body.next().await.unwrap().unwrap();
            contents += dec.push(&chunk).iter().filter(|e| has_content(&e.data)).count();
        }
        seen.insert(id, contents as i64);
    }

    let rows = db.ledger_with(received.len() + 2, Duration::from_secs(15)).await;
    assert_eq!(rows.len(), received.len() + 2, "{rows:#?}");
    let mut ledger_sum = (0, 0);
    for r in &rows {
        if let Some(&(p, c)) = received.get(&r.request_id) {
            assert_eq!((r.prompt_tokens as u64, r.completion_tokens as u64), (p, c), "{r:?}");
            assert!(!r.cancelled, "{r:?}");
            ledger_sum = (ledger_sum.0 + p, ledger_sum.1 + c);
        } else {
            let delivered = seen[r.request_id.as_str()];
            assert!(r.cancelled && r.streamed && r.http_status == 200, "{r:?}");
            assert!(r.prompt_tokens > 0, "{r:?}");
            assert!((delivered..=200).contains(&r.completion_tokens), "delivered {delivered}: {r:?}");
        }
    }
    let client_sum = received.values().fold((0, 0), |s, &(p, c)| (s.0 + p, s.1 + c));
    assert_eq!(ledger_sum, client_sum);
    assert!(client_sum.1 > 0);
    let too_long = rows.iter().find(|r| r.request_id == "too-long").unwrap();
    assert_eq!(too_long.error_type.as_deref(), Some("context_length_exceeded"), "{too_long:?}");
    gw.shutdown().await;
}

/// Whether an SSE event is a chunk with (non-empty) content.
fn has_content(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .is_ok_and(|v| v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()))
}
