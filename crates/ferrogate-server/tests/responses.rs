//! The Responses and Conversations APIs through a real gateway: over a fake OpenAI upstream with
//! tenancy on (every test on SQLite and on PostgreSQL), and over the embedded SmolLM2 engine with
//! tenancy off (`conversations.database_url`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::upstream::{FakeUpstream, Recorded, Reply, chat_json, chat_sse};
use ferrogate_testkit::{TestDatabase, TestGateway};
use serde_json::{Value, json};

const MASTER: &str = "test-master-key-0123456789";
const CHAT: &str = "/v1/chat/completions";

/// A gateway with tenancy on over `fake` and `db`; `extra` at the end of the config.
async fn gateway(fake: &FakeUpstream, db: &TestDatabase, extra: &str) -> TestGateway {
    let toml = format!(
        "[tenancy]\nmaster_key = \"{MASTER}\"\ndatabase_url = \"{}\"\nledger_flush_interval_ms = 100\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"up\"]\n{extra}",
        db.url,
        fake.url("/v1")
    );
    TestGateway::start(&toml).await
}

/// The texts of the messages the upstream got in its last chat request.
fn sent(fake: &FakeUpstream) -> Vec<String> {
    let r = fake.last_request(CHAT).expect("the upstream was called");
    r.json()["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

/// Answers every chat request with `re: <last message>` (a stream when asked for, each frame
/// `delay` apart).
fn echo(delay: Duration) -> Reply {
    Reply::dynamic(move |r: &Recorded| {
        let body = r.json();
        let last = body["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone());
        let text = format!("re: {}", last.and_then(|c| c.as_str().map(str::to_owned)).unwrap_or_default());
        if r.wants_stream(false) {
            Reply::Stream(chat_sse(&["re: ", &text[4..]], Some((5, 4))).delay(delay))
        } else {
            chat_json(&text, Some((5, 4)))
        }
    })
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.key.is_empty() {
            req = req.bearer_auth(&self.key);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let s = res.status().as_u16();
        (s, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A streamed `POST /v1/responses`: the events, as (type, data).
    async fn stream(&self, body: Value) -> Vec<(String, Value)> {
        let res = self.http.post(format!("{}/v1/responses", self.base)).bearer_auth(&self.key).json(&body);
        let res = res.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let text = res.text().await.unwrap();
        text.split("\n\n")
            .filter(|f| f.starts_with("event: "))
            .map(|f| {
                let (head, data) = f.split_once('\n').unwrap();
                let data = data.strip_prefix("data: ").unwrap();
                (head["event: ".len()..].to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }
}

/// A tenant with one key, over the gateway.
async fn tenant(gw: &TestGateway, name: &str) -> Client {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let admin = |path: &str, body: Value| http.post(gw.url(path)).bearer_auth(MASTER).json(&body).send();
    let res = admin("/admin/v1/tenants", json!({"name": name, "limits": {}})).await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let res = admin("/admin/v1/keys", json!({"tenant": name, "name": "k"})).await.unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let v: Value = res.json().await.unwrap();
    Client { http: http.clone(), base: gw.url(""), key: v["key"].as_str().unwrap().to_owned() }
}

/// The texts of a conversation's items, oldest first.
async fn items(c: &Client, conv: &str) -> Vec<String> {
    let (s, v) = c.get(&format!("/v1/conversations/{conv}/items?order=asc&limit=100")).await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().iter().map(|i| i["content"][0]["text"].as_str().unwrap().to_owned()).collect()
}

mod turns {
    use super::*;

    pub async fn previous_response_and_conversation_carry_the_context(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::ZERO));
        let gw = gateway(&fake, db, "").await;
        let a = tenant(&gw, "a").await;

        // previous_response_id: the chain's inputs and outputs come first.
        let (s, r1) = a.post("/v1/responses", json!({"model": "m", "input": "one", "instructions": "be brief"})).await;
        assert_eq!(s, 200, "{r1}");
        let id1 = r1["id"].as_str().unwrap();
        assert!(id1.starts_with("resp_"));
        assert_eq!((r1["object"].as_str(), r1["status"].as_str()), (Some("response"), Some("completed")));
        assert_eq!(r1["output"][0]["content"][0]["text"], "re: one");
        assert_eq!(r1["usage"]["input_tokens"], 5);
        assert_eq!(r1["usage"]["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(sent(&fake), ["be brief", "one"]);
        let (s, r2) = a.post("/v1/responses", json!({"model": "m", "input": "two", "previous_response_id": id1})).await;
        assert_eq!(s, 200, "{r2}");
        assert_eq!(sent(&fake), ["one", "re: one", "two"], "instructions are not inherited, as OpenAI does");
        let id2 = r2["id"].as_str().unwrap();
        let (s, got) = a.get(&format!("/v1/responses/{id2}")).await;
        assert_eq!((s, &got), (200, &r2));
        assert_eq!(got["previous_response_id"], id1);
        let (s, input) = a.get(&format!("/v1/responses/{id2}/input_items")).await;
        assert_eq!(s, 200);
        assert_eq!(input["data"][0]["content"][0]["text"], "two");
        assert_eq!(input["data"].as_array().unwrap().len(), 1);

        // store: false is not kept.
        let (_, r3) = a.post("/v1/responses", json!({"model": "m", "input": "x", "store": false})).await;
        let (s, _) = a.get(&format!("/v1/responses/{}", r3["id"].as_str().unwrap())).await;
        assert_eq!(s, 404);

        // conversation: its items, then the new input; the turn is appended after the answer.
        let (s, conv) = a
            .post(
                "/v1/conversations",
                json!({"items": [{"role": "user", "content": "hello"}], "metadata": {"topic": "t"}}),
            )
            .await;
        assert_eq!(s, 200, "{conv}");
        let cid = conv["id"].as_str().unwrap();
        assert!(cid.starts_with("conv_"));
        assert_eq!(conv["metadata"]["topic"], "t");
        let (s, _) = a.post("/v1/responses", json!({"model": "m", "input": "q1", "conversation": cid})).await;
        assert_eq!(s, 200);
        assert_eq!(sent(&fake), ["hello", "q1"]);
        let (s, r) = a.post("/v1/responses", json!({"model": "m", "input": "q2", "conversation": {"id": cid}})).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["conversation"]["id"], cid);
        assert_eq!(sent(&fake), ["hello", "q1", "re: q1", "q2"]);
        assert_eq!(items(&a, cid).await, ["hello", "q1", "re: q1", "q2", "re: q2"]);

        // Items: add, get, delete; metadata update; delete.
        let (s, added) = a
            .post(&format!("/v1/conversations/{cid}/items"), json!({"items": [{"role": "user", "content": "extra"}]}))
            .await;
        assert_eq!(s, 200, "{added}");
        let item = added["data"][0]["id"].as_str().unwrap().to_owned();
        let (s, got) = a.get(&format!("/v1/conversations/{cid}/items/{item}")).await;
        assert_eq!((s, got["content"][0]["text"].as_str()), (200, Some("extra")));
        let (s, _) = a.delete(&format!("/v1/conversations/{cid}/items/{item}")).await;
        assert_eq!(s, 200);
        let (s, _) = a.get(&format!("/v1/conversations/{cid}/items/{item}")).await;
        assert_eq!(s, 404);
        let (s, up) = a.post(&format!("/v1/conversations/{cid}"), json!({"metadata": {"topic": "u"}})).await;
        assert_eq!((s, up["metadata"]["topic"].as_str()), (200, Some("u")));
        let (s, del) = a.delete(&format!("/v1/conversations/{cid}")).await;
        assert_eq!((s, del["deleted"].as_bool()), (200, Some(true)));
        let (s, _) = a.get(&format!("/v1/conversations/{cid}")).await;
        assert_eq!(s, 404);
        let (s, del) = a.delete(&format!("/v1/responses/{id1}")).await;
        assert_eq!((s, del["object"].as_str()), (200, Some("response.deleted")));
        let (s, _) = a.get(&format!("/v1/responses/{id1}")).await;
        assert_eq!(s, 404);

        // Every turn went through the pipeline: one ledger row each, endpoint `responses`.
        let rows = db.ledger_with(5, Duration::from_secs(10)).await;
        assert_eq!(rows.iter().filter(|r| r.endpoint == "responses").count(), 5, "{rows:?}");
        gw.shutdown().await;
    }

    pub async fn another_tenant_gets_404(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::ZERO));
        let gw = gateway(&fake, db, "").await;
        let (a, b) = (tenant(&gw, "a").await, tenant(&gw, "b").await);
        let (_, conv) = a.post("/v1/conversations", json!({"items": [{"role": "user", "content": "secret"}]})).await;
        let cid = conv["id"].as_str().unwrap();
        let (_, r) = a.post("/v1/responses", json!({"model": "m", "input": "q", "conversation": cid})).await;
        let rid = r["id"].as_str().unwrap();
        let calls = fake.requests().len();
        for path in [
            format!("/v1/conversations/{cid}"),
            format!("/v1/conversations/{cid}/items"),
            format!("/v1/responses/{rid}"),
            format!("/v1/responses/{rid}/input_items"),
        ] {
            let (s, v) = b.get(&path).await;
            assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{path}: {v}");
            assert!(v["error"]["message"].is_string());
        }
        let (s, _) = b.delete(&format!("/v1/conversations/{cid}")).await;
        assert_eq!(s, 404);
        let (s, _) = b.post("/v1/responses", json!({"model": "m", "input": "x", "conversation": cid})).await;
        assert_eq!(s, 404);
        let (s, _) = b.post("/v1/responses", json!({"model": "m", "input": "x", "previous_response_id": rid})).await;
        assert_eq!(s, 404);
        assert_eq!(fake.requests().len(), calls, "refused before any upstream call");
        let (s, _) = b.get("/v1/conversations/conv_not-an-id").await;
        assert_eq!(s, 404);
        assert_eq!(items(&a, cid).await, ["secret", "q", "re: q"], "a's state is untouched");
        gw.shutdown().await;
    }

    pub async fn concurrent_turns_are_never_interleaved(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        // Each answer takes 300 ms: the four turns all read the conversation before any lands.
        fake.on(CHAT, echo(Duration::from_millis(300)));
        let gw = gateway(&fake, db, "").await;
        let a = tenant(&gw, "a").await;
        let (_, conv) = a.post("/v1/conversations", json!({})).await;
        let cid = conv["id"].as_str().unwrap().to_owned();
        let runs = (0..4).map(|i| {
            let (a, cid) = (&a, cid.clone());
            async move {
                a.stream(json!({"model": "m", "input": format!("q{i}"), "conversation": cid, "stream": true})).await
            }
        });
        let results = futures::future::join_all(runs).await;
        let mut won = 0;
        for events in &results {
            let last = events.last().unwrap();
            match last.0.as_str() {
                "response.completed" => won += 1,
                "error" => {
                    assert_eq!(last.1["code"], "conflict", "{last:?}");
                    assert_eq!(events[events.len() - 2].0, "response.failed");
                }
                other => panic!("unexpected end {other}: {events:?}"),
            }
        }
        assert!(won >= 1, "one turn wins");
        assert!(won < results.len(), "turns that read a stale version conflict");
        let got = items(&a, &cid).await;
        assert_eq!(got.len(), 2 * won, "only winning turns are appended: {got:?}");
        for pair in got.chunks(2) {
            assert_eq!(pair[1], format!("re: {}", pair[0]), "a question is directly followed by its answer: {got:?}");
        }
        // After the race, a turn on the settled conversation succeeds.
        let (s, _) = a.post("/v1/responses", json!({"model": "m", "input": "after", "conversation": cid})).await;
        assert_eq!(s, 200);
        gw.shutdown().await;
    }

    pub async fn conversations_survive_a_restart(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::ZERO));
        let gw = gateway(&fake, db, "").await;
        let a = tenant(&gw, "a").await;
        let (_, conv) = a.post("/v1/conversations", json!({})).await;
        let cid = conv["id"].as_str().unwrap().to_owned();
        let (_, r) = a.post("/v1/responses", json!({"model": "m", "input": "before", "conversation": cid})).await;
        let rid = r["id"].as_str().unwrap().to_owned();
        gw.shutdown().await;

        let gw = gateway(&fake, db, "").await;
        let a = Client { base: gw.url(""), ..a };
        assert_eq!(items(&a, &cid).await, ["before", "re: before"]);
        let (s, got) = a.get(&format!("/v1/responses/{rid}")).await;
        assert_eq!((s, got["output"][0]["content"][0]["text"].as_str()), (200, Some("re: before")));
        let (s, _) = a.post("/v1/responses", json!({"model": "m", "input": "after", "conversation": cid})).await;
        assert_eq!(s, 200);
        assert_eq!(sent(&fake), ["before", "re: before", "after"]);
        assert_eq!(items(&a, &cid).await, ["before", "re: before", "after", "re: after"]);
        gw.shutdown().await;
    }

    pub async fn truncation_drops_oldest_turns_or_refuses(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::ZERO));
        // 60 tokens of context, 8 kept for the answer; ~4 bytes per token + 4 per message.
        let gw = gateway(&fake, db, "[conversations]\ncontext_tokens = 60\ndefault_output_tokens = 8\n").await;
        let a = tenant(&gw, "a").await;
        let long = "x".repeat(40); // 10 + 4 tokens per message
        let (_, conv) = a
            .post(
                "/v1/conversations",
                json!({"items": [
                    {"role": "user", "content": format!("old {long}")},
                    {"role": "assistant", "content": format!("old answer {long}")},
                    {"role": "user", "content": format!("new {long}")},
                    {"role": "assistant", "content": "new answer"},
                ]}),
            )
            .await;
        let cid = conv["id"].as_str().unwrap();
        let (s, v) = a
            .post("/v1/responses", json!({"model": "m", "input": "q", "conversation": cid, "truncation": "disabled"}))
            .await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{v}");
        let (s, v) = a.post("/v1/responses", json!({"model": "m", "input": "q", "conversation": cid})).await;
        assert_eq!(s, 200, "{v}");
        let got = sent(&fake);
        assert_eq!(got.len(), 3, "the oldest turn is dropped: {got:?}");
        assert!(got[0].starts_with("new ") && got[2] == "q", "{got:?}");
        let (s, v) =
            a.post("/v1/responses", json!({"model": "m", "input": "y".repeat(400), "conversation": cid})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("context_length_exceeded")), "{v}");
        gw.shutdown().await;
    }

    pub async fn stream_events_arrive_in_order(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::from_millis(5)));
        let gw = gateway(&fake, db, "").await;
        let a = tenant(&gw, "a").await;
        let events = a.stream(json!({"model": "m", "input": "hi", "stream": true})).await;
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (n, (kind, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], kind.as_str());
            assert_eq!(data["sequence_number"], n as u64, "{kind}");
        }
        let done = &events.last().unwrap().1["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "re: hi");
        assert_eq!(done["usage"]["output_tokens"], 4);
        // The terminal event is sent once the response is stored: it can be read at once.
        let (s, got) = a.get(&format!("/v1/responses/{}", done["id"].as_str().unwrap())).await;
        assert_eq!((s, got["status"].as_str()), (200, Some("completed")));
        // A stream that fails after the first byte ends with response.failed then error.
        fake.on(CHAT, Reply::Stream(chat_sse(&["a", "b", "c"], None).die_after(2)));
        let events = a.stream(json!({"model": "m", "input": "hi", "stream": true})).await;
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(&kinds[kinds.len() - 2..], ["response.failed", "error"], "{kinds:?}");
        let seqs: Vec<u64> = events.iter().map(|(_, d)| d["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
        // The turns are counted under their own endpoint label.
        let metrics = a.http.get(gw.url("/metrics")).bearer_auth(MASTER).send().await.unwrap().text().await.unwrap();
        assert!(metrics.lines().any(|l| l.contains("endpoint=\"responses\"") && !l.ends_with(" 0")), "{metrics}");
        gw.shutdown().await;
    }
    pub async fn retention_and_the_per_tenant_cap(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        fake.on(CHAT, echo(Duration::ZERO));
        let extra = "[conversations]\nconversation_ttl_secs = 1\nresponse_ttl_secs = 1\nmax_per_tenant = 2\n\
                     purge_interval_secs = 1\n";
        let gw = gateway(&fake, db, extra).await;
        let (a, b) = (tenant(&gw, "a").await, tenant(&gw, "b").await);
        let (s1, c1) = a.post("/v1/conversations", json!({})).await;
        let (s2, _) = a.post("/v1/conversations", json!({})).await;
        assert_eq!((s1, s2), (200, 200));
        let (s, v) = a.post("/v1/conversations", json!({})).await;
        assert_eq!((s, v["error"]["code"].as_str()), (429, Some("conversation_limit_reached")), "{v}");
        let (s, _) = b.post("/v1/conversations", json!({})).await;
        assert_eq!(s, 200, "the cap is per tenant");
        let (_, r) = a.post("/v1/responses", json!({"model": "m", "input": "hi"})).await;
        let rid = r["id"].as_str().unwrap();
        let (s, _) = a.get(&format!("/v1/responses/{rid}")).await;
        assert_eq!(s, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (s, _) = a.get(&format!("/v1/conversations/{}", c1["id"].as_str().unwrap())).await;
        assert_eq!(s, 404, "expired");
        let (s, _) = a.get(&format!("/v1/responses/{rid}")).await;
        assert_eq!(s, 404, "expired");
        let (s, _) = a.post("/v1/conversations", json!({})).await;
        assert_eq!(s, 200, "expired conversations do not count against the cap");
        gw.shutdown().await;
    }
}

ferrogate_testkit::against_every_store!(
    turns::previous_response_and_conversation_carry_the_context,
    turns::another_tenant_gets_404,
    turns::concurrent_turns_are_never_interleaved,
    turns::conversations_survive_a_restart,
    turns::truncation_drops_oldest_turns_or_refuses,
    turns::stream_events_arrive_in_order,
    turns::retention_and_the_per_tenant_cap,
);

/// Without tenancy and without `conversations.database_url` the endpoints are off, and say so.
#[tokio::test]
async fn without_a_database_the_endpoints_answer_404() {
    let fake = FakeUpstream::openai().await.unwrap();
    let toml = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n",
        fake.url("/v1")
    );
    let gw = TestGateway::start(&toml).await;
    let res = gw.post_json("/v1/responses", &json!({"model": "m", "input": "hi"})).await;
    assert_eq!(res.status().as_u16(), 404);
    let v: Value = res.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("conversations.database_url"), "{v}");
    gw.shutdown().await;
}

/// The embedded engine: turn 2 of a stored conversation reuses the prefix turn 1 left in the
/// engine's cache (`cached_tokens` > 0), and the conversation keeps working over the engine.
#[tokio::test]
async fn embedded_turns_reuse_the_cached_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[conversations]\ndatabase_url = \"sqlite://{}\"\n", dir.path().join("c.db").display());
    let gw = TestGateway::embedded(1, &extra).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let c = Client { http, base: gw.url(""), key: String::new() };
    let (s, conv) = c.post("/v1/conversations", json!({})).await;
    assert_eq!(s, 200, "{conv}");
    let cid = conv["id"].as_str().unwrap();
    let ask = |q: &str| {
        json!({"model": "smollm2", "input": q, "conversation": cid, "max_output_tokens": 16,
                               "temperature": 0.0, "instructions": "You are a helpful assistant."})
    };
    let (s, r1) = c.post("/v1/responses", ask("What is the capital of France?")).await;
    assert_eq!(s, 200, "{r1}");
    assert!(!r1["output"][0]["content"][0]["text"].as_str().unwrap().is_empty());
    let (s, r2) = c.post("/v1/responses", ask("And of Italy?")).await;
    assert_eq!(s, 200, "{r2}");
    let cached = r2["usage"]["input_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let input = r2["usage"]["input_tokens"].as_u64().unwrap();
    assert!(cached > 0, "turn 2 reuses turn 1's prefix: {}", r2["usage"]);
    assert!(cached < input, "{}", r2["usage"]);
    assert_eq!(items(&c, cid).await.len(), 4);
    gw.shutdown().await;
}

/// Over an Ollama backend (translated to `/api/chat`): a conversation's turns, whole and
/// streamed, with the history sent upstream and the upstream's counts as usage.
#[tokio::test]
async fn ollama_backend_serves_responses() {
    use ferrogate_testkit::ollama::DEFAULT_MODEL;
    use ferrogate_testkit::upstream::{DEFAULT_TEXT, DEFAULT_USAGE};
    let fake = FakeUpstream::ollama().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[backends.ol]\nkind = \"ollama\"\nbase_url = \"{}\"\n\
         [deployments.m]\nbackends = [\"ol\"]\nupstream_model = \"{DEFAULT_MODEL}\"\n\
         [conversations]\ndatabase_url = \"sqlite://{}\"\n",
        fake.url(""),
        dir.path().join("c.db").display()
    );
    let gw = TestGateway::start(&toml).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let c = Client { http, base: gw.url(""), key: String::new() };
    let (_, conv) = c.post("/v1/conversations", json!({})).await;
    let cid = conv["id"].as_str().unwrap();
    let (s, r) = c.post("/v1/responses", json!({"model": "m", "input": "first", "conversation": cid})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["output"][0]["content"][0]["text"], DEFAULT_TEXT);
    assert_eq!(r["usage"]["input_tokens"], DEFAULT_USAGE.0);
    let events = c.stream(json!({"model": "m", "input": "second", "conversation": cid, "stream": true})).await;
    assert_eq!(events.last().unwrap().0, "response.completed");
    assert_eq!(events.last().unwrap().1["response"]["output"][0]["content"][0]["text"], DEFAULT_TEXT);
    let sent = fake.last_request("/api/chat").unwrap().json();
    let texts: Vec<&str> =
        sent["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", DEFAULT_TEXT, "second"]);
    assert_eq!(items(&c, cid).await, ["first", DEFAULT_TEXT, "second", DEFAULT_TEXT]);
    gw.shutdown().await;
}
