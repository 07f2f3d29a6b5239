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

// === run length ===

/// Cases per property: `PROPTEST_CASES` when set (`make fuzz` sets a large number), else the
/// property's own short default (`make test`). proptest's `with_cases` would ignore the variable.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// === OpenAI request bodies: well-typed fields mixed with wrong types, huge numbers, odd keys ===

/// A value for a field: usually of its type (`good`), sometimes anything at all.
fn field(good: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![6 => good, 1 => any_json(), 1 => odd_number()].boxed()
}

/// Numbers at and past the edges of what the typed fields hold.
fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(4_294_967_296u64)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!(1.5)),
        Just(json!(f64::MIN_POSITIVE)),
        any::<i64>().prop_map(|n| json!(n)),
    ]
}

fn openai_content() -> impl Strategy<Value = Value> {
    let part = prop_oneof![
        3 => text().prop_map(|t| json!({"type": "text", "text": t})),
        1 => Just(json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}})),
        1 => Just(json!({"type": "input_audio"})),
        1 => any_json(),
    ];
    prop_oneof![
        4 => text().prop_map(Value::String),
        2 => proptest::collection::vec(part, 0..3).prop_map(Value::Array),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
}

fn openai_message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        5 => Just(json!("user")),
        3 => Just(json!("system")),
        3 => Just(json!("assistant")),
        2 => Just(json!("tool")),
        1 => Just(json!("developer")),
        1 => Just(json!("robot")),
        1 => any_json(),
    ];
    let call = ("[a-c]{0,2}", any_json()).prop_map(
        |(id, args)| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": args.to_string()}}),
    );
    (
        role,
        openai_content(),
        proptest::option::of(proptest::collection::vec(call, 0..2)),
        proptest::option::of(field("[a-c]{0,2}".prop_map(Value::String))),
        proptest::option::of(field(text().prop_map(Value::String))),
    )
        .prop_map(|(role, content, calls, tool_call_id, name)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(c) = calls {
                m["tool_calls"] = Value::Array(c);
            }
            if let Some(id) = tool_call_id {
                m["tool_call_id"] = id;
            }
            if let Some(n) = name {
                m["name"] = n;
            }
            m
        })
}

/// The sampling and control fields chat and legacy completions share, each maybe absent.
fn common_fields() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let stop = prop_oneof![
        text().prop_map(Value::String),
        proptest::collection::vec(text(), 0..6).prop_map(|v| json!(v)),
        Just(json!([""])),
        Just(json!("x".repeat(300))),
    ];
    let logit_bias = proptest::collection::btree_map("[0-9]{1,5}", -100i64..=100, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, json!(v))).collect()));
    let fields: Vec<(&'static str, BoxedStrategy<Value>)> = vec![
        ("temperature", field((-1.0f64..3.0).prop_map(|f| json!(f)))),
        ("top_p", field((0.0f64..1.2).prop_map(|f| json!(f)))),
        ("max_tokens", field((0u64..70_000).prop_map(|n| json!(n)))),
        ("stop", field(stop)),
        ("seed", field(any::<i64>().prop_map(|n| json!(n)))),
        ("n", field((0u64..4).prop_map(|n| json!(n)))),
        ("user", field(text().prop_map(Value::String))),
        ("stream", field(any::<bool>().prop_map(Value::Bool))),
        ("stream_options", field(any::<bool>().prop_map(|b| json!({"include_usage": b})))),
        ("frequency_penalty", field((-3.0f64..3.0).prop_map(|f| json!(f)))),
        ("presence_penalty", field((-3.0f64..3.0).prop_map(|f| json!(f)))),
        ("top_k", field((-1i64..100).prop_map(|n| json!(n)))),
        ("min_p", field((0.0f64..1.0).prop_map(|f| json!(f)))),
        ("logit_bias", field(logit_bias)),
        ("metadata", field(proptest::collection::btree_map("[a-z]{1,4}", text(), 0..3).prop_map(|m| json!(m)))),
        ("response_format", field(Just(json!({"type": "json_object"})))),
        ("logprobs", field(any::<bool>().prop_map(Value::Bool))),
        ("guided_json", any_json().boxed()),
        ("x_vendor", any_json().boxed()),
    ];
    let picked: Vec<_> = fields
        .into_iter()
        .map(|(name, s)| proptest::option::weighted(0.3, s).prop_map(move |v| v.map(|v| (name, v))))
        .collect();
    picked.prop_map(|v| v.into_iter().flatten().collect())
}

fn model() -> BoxedStrategy<Value> {
    field(prop_oneof![
        6 => "[a-z0-9:/._-]{0,12}".prop_map(Value::String),
        1 => Just(Value::String("m".repeat(300))),
    ])
}

fn with(mut base: Value, fields: Vec<(&'static str, Value)>) -> Value {
    for (k, v) in fields {
        base[k] = v;
    }
    base
}

/// An OpenAI `/v1/chat/completions` body.
pub fn openai_chat_request() -> impl Strategy<Value = Value> {
    let messages = field(proptest::collection::vec(openai_message(), 0..5).prop_map(Value::Array));
    let tools = proptest::option::of(field(Just(
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]),
    )));
    (model(), messages, tools, common_fields()).prop_map(|(model, messages, tools, fields)| {
        let mut r = with(json!({"model": model, "messages": messages}), fields);
        if let Some(t) = tools {
            r["tools"] = t;
        }
        r
    })
}

/// An OpenAI `/v1/completions` body.
pub fn openai_completion_request() -> impl Strategy<Value = Value> {
    let prompt = field(prop_oneof![
        text().prop_map(Value::String),
        proptest::collection::vec(text(), 0..3).prop_map(|v| json!(v)),
        Just(json!([1, 2, 3])),
    ]);
    let echo = proptest::option::of(any::<bool>());
    (model(), prompt, echo, common_fields()).prop_map(|(model, prompt, echo, fields)| {
        let mut r = with(json!({"model": model, "prompt": prompt}), fields);
        if let Some(e) = echo {
            r["echo"] = json!(e);
        }
        r
    })
}

/// An Ollama `/api/generate` body.
pub fn ollama_generate_request() -> impl Strategy<Value = Value> {
    let opt_text = || proptest::option::of(field(text().prop_map(Value::String)));
    (
        model(),
        opt_text(),
        opt_text(),
        proptest::option::of(field(any::<bool>().prop_map(Value::Bool))),
        proptest::option::of(field(any::<bool>().prop_map(Value::Bool))),
        proptest::option::of(field(Just(json!({"num_predict": 8, "temperature": 0.5, "stop": ["x"]})))),
        proptest::option::of(field(Just(json!([1, 2])))),
        opt_text(),
    )
        .prop_map(|(model, prompt, system, stream, raw, options, context, suffix)| {
            let mut r = json!({"model": model});
            let pairs = [
                ("prompt", prompt),
                ("system", system),
                ("stream", stream),
                ("raw", raw),
                ("options", options),
                ("context", context),
                ("suffix", suffix),
            ];
            for (k, v) in pairs {
                if let Some(v) = v {
                    r[k] = v;
                }
            }
            r
        })
}

/// What a body's bytes may suffer on the wire: nothing, a BOM, truncation, a flipped byte,
/// invalid UTF-8, a duplicated key, deep nesting around it.
#[derive(Debug, Clone)]
pub enum Mangle {
    None,
    Bom,
    Truncate(usize),
    Flip(usize, u8),
    InvalidUtf8(usize),
    DuplicateModel,
    Nest(usize),
}

pub fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        8 => Just(Mangle::None),
        1 => Just(Mangle::Bom),
        1 => any::<usize>().prop_map(Mangle::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mangle::Flip(i, b)),
        1 => any::<usize>().prop_map(Mangle::InvalidUtf8),
        1 => Just(Mangle::DuplicateModel),
        1 => (1usize..20_000).prop_map(Mangle::Nest),
    ]
}

/// `body` serialized, then mangled.
pub fn bytes_of(body: &Value, how: &Mangle) -> Vec<u8> {
    let mut b = serde_json::to_vec(body).unwrap_or_default();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *how {
        Mangle::None => {}
        Mangle::Bom => {
            b.splice(0..0, *b"\xEF\xBB\xBF");
        }
        Mangle::Truncate(i) => b.truncate(at(i, b.len())),
        Mangle::Flip(i, x) => {
            let i = at(i, b.len());
            if let Some(c) = b.get_mut(i) {
                *c = x;
            }
        }
        Mangle::InvalidUtf8(i) => {
            let i = at(i, b.len());
            b.splice(i..i, [0xC3, 0x28, 0xFF]);
        }
        Mangle::DuplicateModel if b.first() == Some(&b'{') => {
            b.splice(1..1, *br#""model":7,"#);
        }
        Mangle::DuplicateModel => {}
        Mangle::Nest(depth) => {
            let mut nested = "[{\"a\":".repeat(depth).into_bytes();
            nested.extend_from_slice(&b);
            nested.extend(std::iter::repeat_n(b"}]".iter().copied(), depth).flatten());
            b = nested;
        }
    }
    b
}
