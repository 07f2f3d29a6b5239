//! Function calling in the Responses API through a real gateway, over a fake OpenAI-compatible
//! upstream whose answers are the fixtures (every test on SQLite and on PostgreSQL, as the
//! conversation store): `tools` and `tool_choice` reach the upstream in chat's shape, a tool call
//! comes back as a `function_call` item (whole and streamed, with the argument events), and a
//! `function_call_output` continues the turn — by `previous_response_id` and in a conversation,
//! whose stored items keep both function items.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_testkit::upstream::{FakeCall, FakeUpstream, chat_json, tool_calls_json, tool_calls_sse};
use ferrogate_testkit::{TestDatabase, TestGateway};
use serde_json::{Value, json};

const CHAT: &str = "/v1/chat/completions";

const WEATHER: FakeCall<'static> =
    FakeCall { id: "call_w1", name: "get_weather", fragments: &["{\"city\":", "\"Paris\"", "}"] };

fn tools() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

/// A gateway with tenancy off, `db` as the conversation store.
async fn gateway(fake: &FakeUpstream, db: &TestDatabase) -> TestGateway {
    let toml = format!(
        "[backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n[deployments.m]\nbackends = [\"up\"]\n\
         [conversations]\ndatabase_url = \"{}\"\n",
        fake.url("/v1"),
        db.url
    );
    TestGateway::start(&toml).await
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> (u16, Value) {
    let res = gw.post_json(path, &body).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &TestGateway, path: &str) -> Value {
    let res = reqwest::get(gw.url(path)).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    res.json().await.unwrap()
}

/// The upstream's last chat request.
fn sent(fake: &FakeUpstream) -> Value {
    fake.last_request(CHAT).expect("the upstream was called").json()
}

/// Checks the upstream got the call and its result back as chat messages, in order.
fn assert_result_sent(fake: &FakeUpstream) {
    let body = sent(fake);
    let m = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "{body}");
    assert_eq!(m[1]["tool_calls"][0]["id"], "call_w1");
    assert_eq!(m[1]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(m[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!((m[2]["tool_call_id"].as_str(), m[2]["content"].as_str()), (Some("call_w1"), Some("18C, sunny")));
}

mod tools {
    use super::*;

    pub async fn a_tool_call_and_its_result_round_trip(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        let gw = gateway(&fake, db).await;

        // The model calls the function: a function_call item, no empty message beside it.
        fake.push(CHAT, tool_calls_json(&[WEATHER], (20, 9)));
        let ask = json!({"model": "m", "input": "Weather in Paris?", "tools": tools(),
                         "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": false});
        let (s, r1) = post(&gw, "/v1/responses", ask).await;
        assert_eq!(s, 200, "{r1}");
        let up = sent(&fake);
        assert_eq!(up["tools"][0]["type"], "function");
        assert_eq!(up["tools"][0]["function"]["name"], "get_weather", "chat's nested shape: {up}");
        assert_eq!(up["tools"][0]["function"]["parameters"]["required"][0], "city");
        assert_eq!(up["tool_choice"], json!({"type": "function", "function": {"name": "get_weather"}}));
        assert_eq!(up["parallel_tool_calls"], false);
        assert_eq!(r1["status"], "completed");
        assert_eq!(r1["tools"], tools(), "the response echoes the tools");
        let out = r1["output"].as_array().unwrap();
        assert_eq!(out.len(), 1, "{r1}");
        assert_eq!(out[0]["type"], "function_call");
        assert!(out[0]["id"].as_str().unwrap().starts_with("fc_"), "{r1}");
        assert_eq!((out[0]["call_id"].as_str(), out[0]["name"].as_str()), (Some("call_w1"), Some("get_weather")));
        assert_eq!(out[0]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(out[0]["status"], "completed");

        // The caller runs it and continues with previous_response_id.
        fake.push(CHAT, chat_json("It is 18C and sunny in Paris.", Some((30, 8))));
        let id1 = r1["id"].as_str().unwrap();
        let result = json!([{"type": "function_call_output", "call_id": "call_w1", "output": "18C, sunny"}]);
        let (s, r2) = post(
            &gw,
            "/v1/responses",
            json!({"model": "m", "input": result, "previous_response_id": id1, "tools": tools()}),
        )
        .await;
        assert_eq!(s, 200, "{r2}");
        assert_result_sent(&fake);
        assert_eq!(r2["output"][0]["content"][0]["text"], "It is 18C and sunny in Paris.");
        let input = get(&gw, &format!("/v1/responses/{}/input_items", r2["id"].as_str().unwrap())).await;
        assert_eq!(input["data"][0]["type"], "function_call_output");
        assert!(input["data"][0]["id"].as_str().unwrap().starts_with("fco_"), "{input}");
        assert_eq!(input["data"][0]["call_id"], "call_w1");
        gw.shutdown().await;
    }

    pub async fn a_conversation_keeps_function_items(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        let gw = gateway(&fake, db).await;
        let (_, conv) = post(&gw, "/v1/conversations", json!({})).await;
        let cid = conv["id"].as_str().unwrap().to_owned();

        // Turn 1, streamed: the call arrives as argument deltas.
        fake.push(CHAT, tool_calls_sse(&[], &[WEATHER], (20, 9)));
        let ask =
            json!({"model": "m", "input": "Weather in Paris?", "tools": tools(), "conversation": cid, "stream": true});
        let events = stream(&gw, ask).await;
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let seqs: Vec<u64> = events.iter().map(|(_, v)| v["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..9).collect::<Vec<_>>());
        let added = &events[2].1;
        assert_eq!(
            (added["item"]["type"].as_str(), added["item"]["status"].as_str()),
            (Some("function_call"), Some("in_progress"))
        );
        let deltas: String = events[3..6].iter().map(|(_, v)| v["delta"].as_str().unwrap()).collect();
        assert_eq!(deltas, "{\"city\":\"Paris\"}");
        assert_eq!(events[6].1["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(events[6].1["item_id"], added["item"]["id"]);
        let done = &events[8].1["response"];
        assert_eq!(done["output"][0]["call_id"], "call_w1");

        // Turn 2 sends the result; the conversation supplies the call.
        fake.push(CHAT, chat_json("18C and sunny.", Some((30, 5))));
        let result = json!([{"type": "function_call_output", "call_id": "call_w1", "output": "18C, sunny"}]);
        let (s, r2) = post(&gw, "/v1/responses", json!({"model": "m", "input": result, "conversation": cid})).await;
        assert_eq!(s, 200, "{r2}");
        assert_result_sent(&fake);

        let items = get(&gw, &format!("/v1/conversations/{cid}/items?order=asc")).await;
        let kinds: Vec<&str> = items["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["message", "function_call", "function_call_output", "message"]);
        let call = &items["data"][1];
        assert_eq!(
            (call["name"].as_str(), call["arguments"].as_str()),
            (Some("get_weather"), Some("{\"city\":\"Paris\"}"))
        );
        let one = get(&gw, &format!("/v1/conversations/{cid}/items/{}", call["id"].as_str().unwrap())).await;
        assert_eq!(&one, call, "a function item is retrievable by its id");

        // Turn 3 sees the whole exchange again.
        fake.push(CHAT, chat_json("You're welcome.", Some((40, 3))));
        let (s, _) = post(&gw, "/v1/responses", json!({"model": "m", "input": "Thanks", "conversation": cid})).await;
        assert_eq!(s, 200);
        let roles: Vec<String> = sent(&fake)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
        gw.shutdown().await;
    }

    /// Non-function tools, a malformed choice and a function output without its call are 400s
    /// naming the parameter, before any upstream call.
    pub async fn bad_tool_input_is_refused(db: &TestDatabase) {
        let fake = FakeUpstream::openai().await.unwrap();
        let gw = gateway(&fake, db).await;
        let cases = [
            (json!({"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]}), "tools[0].type"),
            (json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}), "tools[0].name"),
            (json!({"model": "m", "input": "x", "tools": tools(), "tool_choice": "sometimes"}), "tool_choice"),
        ];
        for (body, param) in cases {
            let (s, v) = post(&gw, "/v1/responses", body).await;
            assert_eq!((s, v["error"]["param"].as_str()), (400, Some(param)), "{v}");
        }
        let no_call_id = json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]});
        let (s, v) = post(&gw, "/v1/responses", no_call_id).await;
        assert_eq!(s, 400, "{v}");
        assert!(fake.requests().iter().all(|r| r.path != CHAT), "nothing reached the upstream");
        gw.shutdown().await;
    }
}

/// A streamed `POST /v1/responses`: the events, as (type, data).
async fn stream(gw: &TestGateway, body: Value) -> Vec<(String, Value)> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let res = http.post(gw.url("/v1/responses")).json(&body).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| f.starts_with("event: "))
        .map(|f| {
            let (head, data) = f.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"].as_str(), Some(&head["event: ".len()..]), "the event line names the type");
            (head["event: ".len()..].to_owned(), data)
        })
        .collect()
}

ferrogate_testkit::against_every_store!(
    tools::a_tool_call_and_its_result_round_trip,
    tools::a_conversation_keeps_function_items,
    tools::bad_tool_input_is_refused,
);
