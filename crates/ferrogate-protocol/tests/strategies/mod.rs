//! Generators shared by the property tests: OpenAI stream chunks (text, tool-call fragments,
//! finish reasons, usage, odd values) and Anthropic / Ollama request bodies as JSON, valid or not.

#![allow(dead_code)]

use ferrogate_protocol::openai::{ChatCompletionChunk, ChunkChoice, Delta, FinishReason, Role, Usage};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One thing an upstream stream may do.
#[derive(Debug, Clone)]
pub enum Step {
    Text(String),
    /// A tool-call fragment: OpenAI index, whether it carries the id, name, arguments fragment.
    Tool(usize, bool, Option<String>, String),
    /// A fragment whose fields have the wrong types.
    OddTool(Value),
    Finish(FinishReason),
    Usage(u32, u32, u32),
    RoleOnly,
    /// A chunk for another choice, or with no choice at all.
    OtherChoice(String),
    NoChoice,
}

pub fn step() -> impl Strategy<Value = Step> {
    let finish = prop_oneof![
        Just(FinishReason::Stop),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
        Just(FinishReason::FunctionCall),
    ];
    prop_oneof![
        4 => "[a-zé🦀 \n]{0,6}".prop_map(Step::Text),
        4 => (0usize..3, any::<bool>(), proptest::option::of("[a-z_]{0,5}"), "[{}\":a-z0-9, ]{0,6}")
            .prop_map(|(i, id, name, args)| Step::Tool(i, id, name, args)),
        1 => prop_oneof![
            Just(json!({"index": "zero", "function": {"arguments": 5}})),
            Just(json!({"function": null})),
            Just(json!("not an object")),
            Just(json!({"index": 1u64 << 40, "id": "x", "function": {"name": "big", "arguments": "{}"}})),
        ].prop_map(Step::OddTool),
        1 => finish.prop_map(Step::Finish),
        1 => (0u32..1000, 0u32..1000, 0u32..2000).prop_map(|(p, c, k)| Step::Usage(p, c, k)),
        1 => Just(Step::RoleOnly),
        1 => "[a-z]{0,3}".prop_map(Step::OtherChoice),
        1 => Just(Step::NoChoice),
    ]
}

pub fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 0..24)
}

fn chunk(choices: Vec<ChunkChoice>, usage: Option<Option<Usage>>) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "m".into(),
        choices,
        usage,
        system_fingerprint: None,
    }
}

fn choice(index: u32, delta: Delta, finish_reason: Option<FinishReason>) -> ChunkChoice {
    ChunkChoice { index, delta, logprobs: None, finish_reason }
}

/// The chunk a step sends.
pub fn to_chunk(step: &Step) -> ChatCompletionChunk {
    let one = |delta: Delta, finish| chunk(vec![choice(0, delta, finish)], Some(None));
    match step {
        Step::Text(t) => one(Delta { content: Some(t.clone()), ..Delta::default() }, None),
        Step::Tool(i, id, name, args) => {
            let mut function = json!({"arguments": args});
            if let Some(name) = name {
                function["name"] = json!(name);
            }
            let mut call = json!({"index": i, "type": "function", "function": function});
            if *id {
                // One id per index, as servers send them (a different id is a different call).
                call["id"] = json!(format!("call_{i}"));
            }
            one(Delta { tool_calls: Some(vec![call]), ..Delta::default() }, None)
        }
        Step::OddTool(v) => one(Delta { tool_calls: Some(vec![v.clone()]), ..Delta::default() }, None),
        Step::Finish(f) => one(Delta::default(), Some(*f)),
        Step::Usage(p, c, k) => chunk(vec![], Some(Some(Usage::new(*p, *c, Some(*k))))),
        Step::RoleOnly => {
            one(Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Delta::default() }, None)
        }
        Step::OtherChoice(t) => {
            chunk(vec![choice(1, Delta { content: Some(t.clone()), ..Delta::default() }, None)], None)
        }
        Step::NoChoice => chunk(vec![], None),
    }
}

// === request bodies ===

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é🦀\n]{0,12}"
}

/// Any JSON value, small.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Content blocks a user turn may hold.
fn user_block() -> impl Strategy<Value = Value> {
    let result_content = prop_oneof![
        4 => text().prop_map(Value::String),
        2 => Just(json!([{"type": "text", "text": "r"}])),
        1 => Just(json!([{"type": "image", "source": {"type": "url", "url": "u"}}])),
        1 => Just(Value::Null),
    ];
    prop_oneof![
        4 => text().prop_map(|t| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})),
        1 => Just(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})),
        1 => Just(json!({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}})),
        3 => ("[a-z_]{1,6}", result_content, any::<bool>()).prop_map(|(id, content, is_error)| {
            json!({"type": "tool_result", "tool_use_id": id, "content": content, "is_error": is_error})
        }),
    ]
}

/// Content blocks an assistant turn may hold.
fn assistant_block() -> impl Strategy<Value = Value> {
    let input = prop_oneof![4 => Just(json!({"city": "Paris"})), 1 => any_json()];
    prop_oneof![
        4 => text().prop_map(|t| json!({"type": "text", "text": t})),
        4 => ("[a-z_]{1,6}", "[a-z]{0,4}", input)
            .prop_map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input})),
        1 => Just(json!({"type": "thinking", "thinking": "hmm", "signature": "s"})),
    ]
}

/// A block from the wrong side, of an unknown type, or not a block at all.
fn odd_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        user_block(),
        assistant_block(),
        Just(json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}})),
        any_json(),
    ]
}

fn blocks(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    let block = prop_oneof![30 => good, 1 => odd_block()];
    prop_oneof![
        1 => text().prop_map(Value::String),
        3 => proptest::collection::vec(block, 0..4).prop_map(Value::Array),
    ]
}

pub fn anthropic_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => blocks(user_block()).prop_map(|c| json!({"role": "user", "content": c})),
        40 => blocks(assistant_block()).prop_map(|c| json!({"role": "assistant", "content": c})),
        // Anthropic has no system role: a body that does not parse.
        1 => text().prop_map(|c| json!({"role": "system", "content": c})),
    ]
}

fn anthropic_tools() -> impl Strategy<Value = (Option<Value>, Option<Value>)> {
    let tool = ("[a-c]{1,2}", proptest::bool::weighted(0.05)).prop_map(|(name, server)| match server {
        true => json!({"type": "web_search_20250305", "name": name}),
        false => json!({"name": name, "description": "d", "input_schema": {"type": "object"}}),
    });
    let tool_choice = prop_oneof![
        Just(json!({"type": "auto"})),
        Just(json!({"type": "any", "disable_parallel_tool_use": true})),
        Just(json!({"type": "none"})),
        "[a-c]{1,2}".prop_map(|n| json!({"type": "tool", "name": n})),
    ];
    let tools = proptest::collection::vec(tool, 0..4).prop_map(Value::Array);
    (proptest::option::of(tools), proptest::option::of(tool_choice))
}

pub fn anthropic_request() -> impl Strategy<Value = Value> {
    let model = prop_oneof![20 => "[a-z0-9-]{1,10}", 1 => Just(String::new())];
    let max_tokens = prop_oneof![20 => 1u32..5000, 1 => Just(0u32)];
    let system = prop_oneof![
        10 => text().prop_map(Value::String),
        10 => proptest::collection::vec(text().prop_map(|t| json!({"type": "text", "text": t})), 0..3).prop_map(Value::Array),
        1 => Just(json!([{"type": "image"}])),
    ];
    let temperature = prop_oneof![20 => 0.0f64..=1.0, 1 => -1.0f64..3.0];
    let stop = proptest::collection::vec(prop_oneof![20 => "[a-z]{1,3}", 1 => Just(String::new())], 0..5);
    let thinking = prop_oneof![1 => Just("enabled"), 5 => Just("disabled")];
    (
        (
            model,
            max_tokens,
            prop_oneof![1 => Just(Vec::new()), 12 => proptest::collection::vec(anthropic_message(), 1..7)],
        ),
        (proptest::option::of(system), proptest::option::of(temperature), proptest::option::of(stop)),
        anthropic_tools(),
        (any::<bool>(), proptest::option::of(thinking), proptest::option::weighted(0.05, "[a-z_]{1,8}")),
    )
        .prop_map(
            |(
                (model, max_tokens, messages),
                (system, temperature, stop),
                (tools, choice),
                (stream, thinking, extra),
            )| {
                let mut r = json!({"model": model, "max_tokens": max_tokens, "messages": messages, "stream": stream,
                "metadata": {"user_id": "u"}, "top_k": 5});
                let mut set = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        r[k] = v;
                    }
                };
                set("system", system);
                set("temperature", temperature.map(|t| json!(t)));
                set("stop_sequences", stop.map(|s| json!(s)));
                set("tools", tools);
                set("tool_choice", choice);
                set("thinking", thinking.map(|t| json!({"type": t, "budget_tokens": 1024})));
                if let Some(extra) = extra {
                    r[extra] = json!(1);
                }
                r
            },
        )
}

fn ollama_message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![5 => Just("system"), 5 => Just("user"), 5 => Just("assistant"), 5 => Just("tool"), 1 => Just("robot")];
    let arguments = prop_oneof![4 => Just(json!({"city": "Paris"})), 1 => any_json()];
    let call = ("[a-c]{1,2}", arguments).prop_map(|(n, a)| json!({"function": {"name": n, "arguments": a}}));
    let calls = proptest::option::of(proptest::collection::vec(call, 0..3));
    (role, text(), calls, proptest::bool::weighted(0.1), proptest::option::of("[a-c]{1,2}")).prop_map(
        |(role, content, calls, image, tool_name)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(calls) = calls {
                m["tool_calls"] = Value::Array(calls);
            }
            if image {
                m["images"] = json!(["/9j/4AAQ"]);
            }
            if let Some(n) = tool_name {
                m["tool_name"] = json!(n);
            }
            m
        },
    )
}

/// An Ollama `/api/chat` body.
pub fn ollama_chat_request() -> impl Strategy<Value = Value> {
    let format = prop_oneof![
        5 => Just(Value::Null),
        5 => Just(json!("json")),
        1 => Just(json!("")),
        1 => Just(json!("yaml")),
        5 => Just(json!({"type": "object"})),
        1 => Just(json!(3)),
    ];
    let temperature = prop_oneof![10 => 0.0f64..2.0, 1 => -1.0f64..3.0];
    let options = (
        proptest::option::of(-3i64..100),
        proptest::option::of(temperature),
        proptest::option::of(proptest::collection::vec("[a-z]{1,3}", 0..5)),
    )
        .prop_map(
            |(n, t, stop)| json!({"num_predict": n, "temperature": t, "stop": stop, "num_ctx": 4096, "mirostat": 1}),
        );
    let model = "[a-z0-9:]{1,8}";
    (
        model,
        proptest::collection::vec(ollama_message(), 0..6),
        format,
        proptest::option::of(options),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(model, messages, format, options, stream)| {
            let mut r = json!({"model": model, "messages": messages, "format": format, "keep_alive": "5m"});
            if let Some(o) = options {
                r["options"] = o;
            }
            if let Some(s) = stream {
                r["stream"] = json!(s);
            }
            r
        })
}
