//! The protocol matrix (issue 20 item 7): the same conversation through each front protocol
//! (OpenAI chat, Anthropic Messages, the Ollama API) to each backend kind (the embedded SmolLM2
//! engine, an OpenAI-compatible upstream, an Ollama upstream — the latter two testkit's fakes),
//! whole and streamed, checking the envelope, the streaming order, the usage (whole = streamed,
//! and the fakes' exact counts), the stop reason, and one error of each backend in each front's
//! shape. The table it prints is the one in docs/PROTOCOLS.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The result table is printed (`-- --nocapture`) for docs/PROTOCOLS.md.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use ferrogate_protocol::sse::SseDecoder;
use ferrogate_testkit::upstream::{DEFAULT_TEXT, DEFAULT_USAGE, FakeUpstream, openai_error};
use ferrogate_testkit::{TestGateway, model_path, ollama as fake_ollama};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Front {
    OpenAi,
    Anthropic,
    Ollama,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Embedded,
    OpenAiCompatible,
    Ollama,
}

impl Kind {
    fn deployment(self) -> &'static str {
        match self {
            Kind::Embedded => "emb",
            Kind::OpenAiCompatible => "oai",
            Kind::Ollama => "oll",
        }
    }
}

/// What one answer said, in front-neutral terms.
#[derive(Debug, PartialEq)]
struct Said {
    text: String,
    /// The front's own stop reason (`stop`/`length`, `end_turn`/`max_tokens`, `stop`/`length`).
    stop: String,
    usage: (u64, u64),
}

const SYSTEM: &str = "You are terse.";
const TURNS: [(&str, &str); 3] = [("user", "Name a colour."), ("assistant", "Blue."), ("user", "Another one?")];

fn request(front: Front, model: &str, stream: bool) -> (&'static str, Value) {
    let turns: Vec<Value> = TURNS.iter().map(|(r, c)| json!({"role": r, "content": c})).collect();
    let mut with_system = vec![json!({"role": "system", "content": SYSTEM})];
    with_system.extend(turns.iter().cloned());
    match front {
        Front::OpenAi => (
            "/v1/chat/completions",
            json!({"model": model, "messages": with_system, "max_tokens": 8, "temperature": 0, "stream": stream,
                   "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }}),
        ),
        Front::Anthropic => (
            "/v1/messages",
            json!({"model": model, "system": SYSTEM, "messages": turns, "max_tokens": 8, "temperature": 0,
                   "stream": stream}),
        ),
        Front::Ollama => (
            "/api/chat",
            json!({"model": model, "messages": with_system, "stream": stream,
                   "options": {"num_predict": 8, "temperature": 0}}),
        ),
    }
}

fn whole(front: Front, v: &Value, model: &str) -> Said {
    let n = |x: &Value| x.as_u64().unwrap_or_else(|| panic!("a count: {v}"));
    match front {
        Front::OpenAi => {
            assert_eq!(v["object"], "chat.completion");
            assert_eq!(v["model"], model);
            assert_eq!(v["choices"][0]["message"]["role"], "assistant");
            let u = &v["usage"];
            assert_eq!(n(&u["total_tokens"]), n(&u["prompt_tokens"]) + n(&u["completion_tokens"]));
            Said {
                text: v["choices"][0]["message"]["content"].as_str().unwrap().to_owned(),
                stop: v["choices"][0]["finish_reason"].as_str().unwrap().to_owned(),
                usage: (n(&u["prompt_tokens"]), n(&u["completion_tokens"])),
            }
        }
        Front::Anthropic => {
            assert_eq!((v["type"].as_str(), v["role"].as_str()), (Some("message"), Some("assistant")));
            assert_eq!(v["model"], model);
            assert!(v["id"].as_str().unwrap().starts_with("msg_"));
            assert_eq!(v["content"].as_array().unwrap().len(), 1, "{v}");
            assert_eq!(v["content"][0]["type"], "text");
            Said {
                text: v["content"][0]["text"].as_str().unwrap().to_owned(),
                stop: v["stop_reason"].as_str().unwrap().to_owned(),
                usage: (prompt_tokens(&v["usage"]), n(&v["usage"]["output_tokens"])),
            }
        }
        Front::Ollama => {
            assert_eq!(v["model"], model);
            assert_eq!(v["done"], true);
            assert_eq!(v["message"]["role"], "assistant");
            Said {
                text: v["message"]["content"].as_str().unwrap().to_owned(),
                stop: v["done_reason"].as_str().unwrap().to_owned(),
                usage: (n(&v["prompt_eval_count"]), n(&v["eval_count"])),
            }
        }
    }
}

/// Anthropic counts prompt tokens read from a cache apart (the embedded engine's prefix cache
/// serves this conversation's repeats): the prompt is `input_tokens + cache_read_input_tokens`.
fn prompt_tokens(usage: &Value) -> u64 {
    usage["input_tokens"].as_u64().unwrap() + usage["cache_read_input_tokens"].as_u64().unwrap()
}

fn sse(raw: &str) -> Vec<(Option<String>, String)> {
    let mut dec = SseDecoder::new();
    let mut out = dec.push(raw.as_bytes());
    out.extend(dec.finish());
    out.into_iter().map(|e| (e.event, e.data)).collect()
}

/// Checks the stream's framing and order; returns what it said.
fn streamed(front: Front, raw: &str) -> Said {
    let n = |x: &Value| x.as_u64().unwrap();
    match front {
        Front::OpenAi => {
            let evs = sse(raw);
            assert_eq!(evs.last().unwrap().1, "[DONE]");
            let chunks: Vec<Value> =
                evs[..evs.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "role first");
            let usage = chunks.last().unwrap();
            assert_eq!(usage["choices"], json!([]), "the usage chunk last");
            let finish: Vec<usize> =
                (0..chunks.len()).filter(|&i| chunks[i]["choices"][0]["finish_reason"].is_string()).collect();
            assert_eq!(finish, [chunks.len() - 2], "one finish chunk, before the usage chunk");
            Said {
                text: chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect(),
                stop: chunks[finish[0]]["choices"][0]["finish_reason"].as_str().unwrap().to_owned(),
                usage: (n(&usage["usage"]["prompt_tokens"]), n(&usage["usage"]["completion_tokens"])),
            }
        }
        Front::Anthropic => {
            let evs: Vec<(String, Value)> =
                sse(raw).into_iter().map(|(e, d)| (e.unwrap(), serde_json::from_str(&d).unwrap())).collect();
            let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
            let k = names.len();
            assert_eq!(names[..3], ["message_start", "ping", "content_block_start"], "{names:?}");
            assert!(names[3..k - 3].iter().all(|n| *n == "content_block_delta"), "{names:?}");
            assert_eq!(names[k - 3..], ["content_block_stop", "message_delta", "message_stop"]);
            let delta = &evs[k - 2].1;
            Said {
                text: evs.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect(),
                stop: delta["delta"]["stop_reason"].as_str().unwrap().to_owned(),
                usage: (prompt_tokens(&delta["usage"]), n(&delta["usage"]["output_tokens"])),
            }
        }
        Front::Ollama => {
            let lines: Vec<Value> = raw.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let (last, pieces) = lines.split_last().unwrap();
            assert!(pieces.iter().all(|l| l["done"] == false), "only the last line is done");
            assert_eq!(last["done"], true);
            Said {
                text: pieces.iter().filter_map(|l| l["message"]["content"].as_str()).collect(),
                stop: last["done_reason"].as_str().unwrap().to_owned(),
                usage: (n(&last["prompt_eval_count"]), n(&last["eval_count"])),
            }
        }
    }
}

/// The error body is in the front's own shape; returns its message.
fn error_shape(front: Front, v: &Value) -> String {
    match front {
        Front::OpenAi => {
            assert!(v["error"]["type"].is_string(), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        }
        Front::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            assert!(v["error"]["type"].as_str().unwrap().ends_with("error"), "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        }
        Front::Ollama => {
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
            v["error"].as_str().unwrap().to_owned()
        }
    }
}

#[tokio::test]
async fn every_front_on_every_backend_kind() {
    let oai = FakeUpstream::openai().await.unwrap();
    let oll = FakeUpstream::ollama().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[retry]\nmax_retries = 0\n[breaker]\nconsecutive_failures = 0\nfailure_rate = 0.0\n\
         [backends.smollm2]\nkind = \"embedded\"\nmodel_path = \"{}\"\nparallel = 1\nctx_per_seq = 1024\nthreads = 1\n\
         [backends.up]\nkind = \"openai\"\nbase_url = \"{}\"\n\
         [backends.ol]\nkind = \"ollama\"\nbase_url = \"{}\"\n\
         [deployments.emb]\nbackends = [\"smollm2\"]\n\
         [deployments.oai]\nbackends = [\"up\"]\n\
         [deployments.oll]\nbackends = [\"ol\"]\nupstream_model = \"{}\"\n",
        model_path(ferrogate_testkit::gateway::SMOLLM2).display(),
        oai.url("/v1"),
        oll.url(""),
        fake_ollama::DEFAULT_MODEL,
    ))
    .await;
    gw.wait_ready(Duration::from_secs(60)).await;
    let mut table = vec![
        "| front | backend kind | whole | streamed | stop reason | usage (prompt, completion) | backend error → status |"
            .to_owned(),
        "|---|---|---|---|---|---|---|".to_owned(),
    ];
    for front in [Front::OpenAi, Front::Anthropic, Front::Ollama] {
        for kind in [Kind::Embedded, Kind::OpenAiCompatible, Kind::Ollama] {
            let model = kind.deployment();
            let (path, body) = request(front, model, false);
            let res = gw.post_json(path, &body).await;
            assert_eq!(res.status(), 200, "{front:?}/{kind:?}");
            let w = whole(front, &res.json().await.unwrap(), model);
            let (path, body) = request(front, model, true);
            let res = gw.post_json(path, &body).await;
            assert_eq!(res.status(), 200, "{front:?}/{kind:?}");
            let s = streamed(front, &res.text().await.unwrap());
            assert_eq!(w, s, "{front:?}/{kind:?}: whole and streamed answers agree");
            assert!(!w.text.is_empty());
            if kind == Kind::Embedded {
                assert!(w.usage.0 > 10 && (1..=8).contains(&w.usage.1), "{w:?}");
            } else {
                assert_eq!(w.text, DEFAULT_TEXT);
                assert_eq!(w.usage, (u64::from(DEFAULT_USAGE.0), u64::from(DEFAULT_USAGE.1)));
            }
            let expected_stop = match (front, w.usage.1 == 8 && kind == Kind::Embedded) {
                (Front::Anthropic, true) => "max_tokens",
                (Front::Anthropic, false) => "end_turn",
                (_, true) => "length",
                (_, false) => "stop",
            };
            assert_eq!(w.stop, expected_stop, "{front:?}/{kind:?}");
            let status = provoke_error(&gw, front, kind, &oai, &oll).await;
            table.push(format!(
                "| {front:?} | {kind:?} | ✓ | ✓ | {} | ({}, {}) | {status} |",
                w.stop, w.usage.0, w.usage.1
            ));
        }
    }
    println!("{}", table.join("\n"));
}

/// One error from the backend, in the front's shape: the embedded engine refuses a prompt longer
/// than its context (400); a fake upstream answers 500 (502 from the gateway).
async fn provoke_error(gw: &TestGateway, front: Front, kind: Kind, oai: &FakeUpstream, oll: &FakeUpstream) -> u16 {
    let (path, mut body) = request(front, kind.deployment(), false);
    let expected = match kind {
        Kind::Embedded => {
            let long = "colour ".repeat(3000);
            match front {
                Front::Anthropic => body["messages"][0]["content"] = json!(long),
                _ => body["messages"][1]["content"] = json!(long),
            }
            400
        }
        Kind::OpenAiCompatible => {
            oai.push("/v1/chat/completions", openai_error(500, "boom"));
            502
        }
        Kind::Ollama => {
            oll.push("/api/chat", fake_ollama::error(500, "boom"));
            502
        }
    };
    let res = gw.post_json(path, &body).await;
    assert_eq!(res.status(), expected, "{front:?}/{kind:?}");
    let message = error_shape(front, &res.json().await.unwrap());
    assert!(!message.contains("boom"), "upstream text stays in the log");
    expected
}
