//! The Anthropic translation checked field by field on the Messages API reference's example
//! payloads (basic request and response, tool use, streaming, count_tokens, errors).

#![allow(clippy::unwrap_used, clippy::panic)]

use ferrogate_protocol::anthropic::{
    self, BlockDelta, ContentBlock, CountTokensRequest, CountTokensResponse, ErrorResponse, ErrorType, MessagesRequest,
    StopReason, StreamEvent, StreamTranslator, message_from_completion, sse_frame,
};
use ferrogate_protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, FinishReason,
    MessageContent, Role, Stop, Usage,
};
use ferrogate_protocol::sse::SseDecoder;
use serde_json::{Value, json};

fn request(v: Value) -> MessagesRequest {
    serde_json::from_value(v).unwrap()
}

fn completion(
    content: Option<&str>,
    tool_calls: Option<Vec<Value>>,
    finish: FinishReason,
    usage: Usage,
) -> ChatCompletion {
    ChatCompletion {
        id: "chatcmpl-013Zva2CMHLNnXjNJJKqJ2EF".into(),
        object: "chat.completion".into(),
        created: 1,
        model: "claude-sonnet-4-5".into(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: content.map(str::to_owned),
                tool_calls,
                refusal: None,
            },
            logprobs: None,
            finish_reason: Some(finish),
        }],
        usage,
        system_fingerprint: None,
    }
}

#[test]
fn the_basic_request_becomes_one_user_message() {
    let r = request(json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, world"}]
    }));
    let chat = r.to_chat_request().unwrap();
    assert_eq!(chat.model, "claude-sonnet-4-5");
    assert_eq!(chat.max_tokens, Some(1024));
    assert_eq!(chat.messages.len(), 1);
    assert_eq!(chat.messages[0].role, Role::User);
    assert_eq!(chat.messages[0].text(), "Hello, world");
    assert_eq!((chat.stream, chat.tools.as_ref(), chat.stop.as_ref()), (None, None, None));
    assert!(chat.validate().is_ok());
}

/// The reference's weather-tool conversation, second turn, with every sampling field set.
fn weather_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Answer briefly."}],
        "messages": [
            {"role": "user", "content": "What's the weather like in San Francisco?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "I'll check the current weather in San Francisco for you."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                 "input": {"location": "San Francisco, CA", "unit": "celsius"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
                {"type": "text", "text": "Thanks, and tomorrow?"}
            ]}
        ],
        "tools": [{
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {"type": "object",
                             "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                             "required": ["location"]}
        }],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["\n\nHuman:"],
        "metadata": {"user_id": "13803d75-b4b5-4c3e-b2a2-6f21399b021b"},
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stream": true
    })
}

#[test]
fn a_tool_conversation_translates_field_by_field() {
    let chat = request(weather_request()).to_chat_request().unwrap();
    let m = &chat.messages;
    assert_eq!(m.len(), 5, "{m:#?}");
    assert_eq!((m[0].role, m[0].text().as_str()), (Role::System, "You are a weather bot.\nAnswer briefly."));
    assert_eq!((m[1].role, m[1].text().as_str()), (Role::User, "What's the weather like in San Francisco?"));
    assert_eq!(m[2].role, Role::Assistant);
    assert_eq!(m[2].text(), "I'll check the current weather in San Francisco for you.");
    let call = &m[2].tool_calls.as_ref().unwrap()[0];
    assert_eq!(call["id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "San Francisco, CA", "unit": "celsius"}));
    assert_eq!((m[3].role, m[3].tool_call_id.as_deref()), (Role::Tool, Some("toolu_01A09q90qw90lq917835lq9")));
    assert_eq!(m[3].text(), "15 degrees");
    assert_eq!((m[4].role, m[4].text().as_str()), (Role::User, "Thanks, and tomorrow?"));

    let tool = &chat.tools.as_ref().unwrap()[0];
    assert_eq!(tool["type"], "function");
    assert_eq!(tool["function"]["name"], "get_weather");
    assert_eq!(tool["function"]["description"], "Get the current weather in a given location");
    assert_eq!(tool["function"]["parameters"]["required"], json!(["location"]));
    assert_eq!(chat.tool_choice, Some(json!("required")));
    assert_eq!(chat.extra.get("parallel_tool_calls"), Some(&json!(false)));
    assert_eq!(chat.stop, Some(Stop::Many(vec!["\n\nHuman:".into()])));
    assert_eq!(chat.user.as_deref(), Some("13803d75-b4b5-4c3e-b2a2-6f21399b021b"));
    assert_eq!((chat.temperature, chat.top_p, chat.top_k), (Some(0.5), Some(0.9), Some(40)));
    assert!(chat.is_stream() && chat.include_usage(), "usage is asked for, for message_delta");
    assert!(chat.validate().is_ok());
}

#[test]
fn tool_choice_maps_to_openai() {
    let with = |choice: Value| {
        let mut v = weather_request();
        v["tool_choice"] = choice;
        request(v).to_chat_request().map(|c| (c.tool_choice, c.extra.get("parallel_tool_calls").cloned()))
    };
    assert_eq!(with(json!({"type": "auto"})).unwrap(), (Some(json!("auto")), None));
    assert_eq!(with(json!({"type": "none"})).unwrap(), (Some(json!("none")), None));
    assert_eq!(
        with(json!({"type": "tool", "name": "get_weather"})).unwrap(),
        (Some(json!({"type": "function", "function": {"name": "get_weather"}})), None)
    );
    assert_eq!(with(json!({"type": "tool", "name": "nope"})).unwrap_err().param, "tool_choice.name");
}

#[test]
fn images_tool_errors_and_result_blocks() {
    let chat = request(json!({
        "model": "m", "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}},
                {"type": "text", "text": "Compare these."}
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": true,
                                          "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry later"}]}]}
        ]
    }))
    .to_chat_request()
    .unwrap();
    let Some(MessageContent::Parts(parts)) = &chat.messages[0].content else { panic!("{:?}", chat.messages[0]) };
    let kinds: Vec<&str> = parts.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["image_url", "image_url", "text"]);
    assert_eq!(parts[0].rest["image_url"]["url"], "data:image/jpeg;base64,/9j/4AAQ");
    assert_eq!(parts[1].rest["image_url"]["url"], "https://upload.wikimedia.org/a.jpg");
    assert_eq!(chat.messages[1].content, None, "a tool-only assistant turn has no content");
    assert_eq!(chat.messages[2].text(), "Error: timeout\nretry later");
    assert_eq!(chat.messages.len(), 3, "no empty user message after the tool result");
}

#[test]
fn what_can_not_be_served_is_refused_by_name() {
    let refused = |patch: Value| {
        let mut v = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        v.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        request(v).to_chat_request().unwrap_err().param
    };
    assert_eq!(refused(json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})), "thinking");
    assert_eq!(refused(json!({"mcp_servers": []})), "mcp_servers");
    assert_eq!(refused(json!({"max_tokens": 0})), "max_tokens");
    assert_eq!(refused(json!({"temperature": 1.5})), "temperature");
    assert_eq!(refused(json!({"stop_sequences": ["a", "b", "c", "d", "e"]})), "stop_sequences");
    assert_eq!(refused(json!({"messages": []})), "messages");
    assert_eq!(refused(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})), "tools[0].type");
    assert_eq!(refused(json!({"tools": [{"name": "f"}]})), "tools[0].input_schema");
    let doc = json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Summarize"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "…"}}]}]});
    assert_eq!(refused(doc), "messages[0].content[1]");
    let ok = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                    "thinking": {"type": "disabled"}, "service_tier": "auto"});
    assert!(request(ok).to_chat_request().is_ok(), "disabled thinking and service_tier are accepted");
}

#[test]
fn the_basic_response_has_the_reference_shape() {
    let c = completion(Some("Hi! My name is Claude."), None, FinishReason::Stop, Usage::new(2095, 503, None));
    let m = message_from_completion(&c, None).unwrap();
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "Hi! My name is Claude."}],
            "model": "claude-sonnet-4-5",
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        })
    );
}

#[test]
fn tool_calls_become_tool_use_blocks_and_stop_reasons_map() {
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}});
    let c = completion(Some("I'll check."), Some(vec![call]), FinishReason::ToolCalls, Usage::new(100, 20, Some(60)));
    let m = message_from_completion(&c, None).unwrap();
    assert_eq!(m.content[0], ContentBlock::text("I'll check."));
    assert_eq!(m.content[1], ContentBlock::tool_use("call_1", "get_weather", json!({"location": "San Francisco, CA"})));
    assert_eq!(m.stop_reason, Some(StopReason::ToolUse));
    assert_eq!((m.usage.input_tokens, m.usage.cache_read_input_tokens), (40, Some(60)), "cached tokens counted apart");

    let reason = |finish, stop: Option<&str>| {
        let m = message_from_completion(&completion(Some("x"), None, finish, Usage::default()), stop).unwrap();
        (m.stop_reason.unwrap(), m.stop_sequence)
    };
    assert_eq!(reason(FinishReason::Length, None), (StopReason::MaxTokens, None));
    assert_eq!(reason(FinishReason::ContentFilter, None), (StopReason::Refusal, None));
    assert_eq!(reason(FinishReason::Stop, Some("\n\nHuman:")), (StopReason::StopSequence, Some("\n\nHuman:".into())));

    let bad = json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}});
    let c = completion(None, Some(vec![bad]), FinishReason::ToolCalls, Usage::default());
    assert_eq!(message_from_completion(&c, None).unwrap_err(), anthropic::ResponseError::ToolArguments { index: 0 });
}

fn chunk(delta: Delta, finish: Option<FinishReason>, usage: Option<Usage>) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "m".into(),
        choices: if usage.is_some() {
            vec![]
        } else {
            vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }]
        },
        usage: Some(usage),
        system_fingerprint: None,
    }
}

fn text(t: &str) -> Delta {
    Delta { content: Some(t.into()), ..Delta::default() }
}

fn tool(call: Value) -> Delta {
    Delta { tool_calls: Some(vec![call]), ..Delta::default() }
}

fn run(chunks: &[ChatCompletionChunk]) -> Vec<Value> {
    let mut t = StreamTranslator::new("msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "claude-sonnet-4-5", 25);
    let mut events = t.start();
    for c in chunks {
        events.extend(t.push(c));
    }
    events.extend(t.finish());
    events.iter().map(|e| serde_json::to_value(e).unwrap()).collect()
}

#[test]
fn a_text_stream_is_the_reference_event_sequence() {
    let events = run(&[
        chunk(Delta { role: Some(Role::Assistant), content: Some(String::new()), ..Delta::default() }, None, None),
        chunk(text("Hello"), None, None),
        chunk(text("!"), None, None),
        chunk(Delta::default(), Some(FinishReason::Stop), None),
        chunk(Delta::default(), None, Some(Usage::new(25, 15, None))),
    ]);
    let expected = [
        json!({"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant",
               "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 25, "output_tokens": 0, "cache_creation_input_tokens": null, "cache_read_input_tokens": null}}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": 15, "input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}),
        json!({"type": "message_stop"}),
    ];
    assert_eq!(events, expected);
}

#[test]
fn a_tool_stream_opens_a_tool_use_block_with_input_json_deltas() {
    let events = run(&[
        chunk(text("Okay, let's check."), None, None),
        chunk(
            tool(
                json!({"index": 0, "id": "call_T1x1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
            ),
            None,
            None,
        ),
        chunk(tool(json!({"index": 0, "function": {"arguments": "{\"location\":"}})), None, None),
        chunk(tool(json!({"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}})), None, None),
        chunk(
            tool(json!({"index": 1, "id": "call_T2", "function": {"name": "get_time", "arguments": "{}"}})),
            None,
            None,
        ),
        chunk(Delta::default(), Some(FinishReason::ToolCalls), None),
    ]);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[5],
        json!({"type": "content_block_start", "index": 1,
        "content_block": {"type": "tool_use", "id": "call_T1x1", "name": "get_weather", "input": {}}})
    );
    assert_eq!(events[6]["delta"], json!({"type": "input_json_delta", "partial_json": "{\"location\":"}));
    assert_eq!(events[9]["content_block"]["name"], "get_time");
    assert_eq!(events[9]["index"], 2);
    assert_eq!(events[12]["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[12]["usage"], json!({"output_tokens": 0}), "no usage reported: 0, input unknown");
}

#[test]
fn an_error_after_the_start_is_one_error_event() {
    let mut t = StreamTranslator::new("msg_1", "m", 0);
    let mut events = t.push(&chunk(text("par"), None, None));
    events.extend(t.fail(ErrorType::OverloadedError, "Overloaded"));
    events.extend(t.finish());
    let last = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(last, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
    assert_eq!(events.iter().filter(|e| matches!(e, StreamEvent::MessageStop)).count(), 0);
    let frame = sse_frame(events.last().unwrap());
    assert_eq!(
        &frame[..],
        &b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"[..]
    );
}

/// A stream recorded from the real API (tool use with `ping` between deltas, extra usage
/// fields): every event parses into our types, through the SSE decoder.
#[test]
fn a_recorded_anthropic_stream_parses() {
    let lines = [
        r#"{"type":"message_start","message":{"model":"claude-haiku-4-5-20251001","id":"msg_01K2JbSUMYhez5RHoK9ZCj9U","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":10,"service_tier":"standard"}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_01KFbKqPYSuAKujiL6mTfzYA","name":"json","input":{}}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"elements\": [{\"location\": \"San Francisco\"}]"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"}"}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":849,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":47}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let sse: String = lines
        .iter()
        .map(|l| {
            let kind: Value = serde_json::from_str(l).unwrap();
            format!("event: {}\ndata: {l}\n\n", kind["type"].as_str().unwrap())
        })
        .collect();
    let frames = SseDecoder::new().push(sse.as_bytes());
    let events: Vec<StreamEvent> = frames.iter().map(|f| serde_json::from_str(&f.data).unwrap()).collect();
    assert_eq!(events.len(), lines.len());
    for (frame, event) in frames.iter().zip(&events) {
        assert_eq!(frame.event.as_deref(), Some(event.name()));
    }
    let StreamEvent::ContentBlockDelta { delta: BlockDelta::InputJsonDelta { partial_json }, .. } = &events[4] else {
        panic!("{:?}", events[4])
    };
    assert!(partial_json.starts_with("{\"elements\""));
    let StreamEvent::MessageDelta { delta, usage } = &events[7] else { panic!("{:?}", events[7]) };
    assert_eq!(
        (delta.stop_reason, usage.output_tokens, usage.input_tokens),
        (Some(StopReason::ToolUse), 47, Some(849))
    );
}

#[test]
fn count_tokens_takes_the_prompt_part() {
    let r: CountTokensRequest = serde_json::from_value(json!({
        "model": "claude-sonnet-4-5",
        "system": "You are a scientist",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]
    }))
    .unwrap();
    let chat = r.to_chat_request().unwrap();
    assert_eq!(chat.messages.len(), 2);
    assert_eq!(chat.messages[0].role, Role::System);
    assert!(chat.tools.is_some() && chat.max_tokens.is_none());
    assert_eq!(serde_json::to_value(CountTokensResponse { input_tokens: 14 }).unwrap(), json!({"input_tokens": 14}));
}

#[test]
fn the_documented_error_body_parses_and_is_written_back() {
    let body = json!({"type": "error", "error": {"type": "not_found_error", "message": "The requested resource could not be found."},
                      "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"});
    let e: ErrorResponse = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(e.error.kind, ErrorType::NotFoundError);
    assert_eq!(e.error.kind.status(), 404);
    assert_eq!(serde_json::to_value(&e).unwrap(), body);
}

#[test]
fn local_counts_fill_in_when_the_upstream_reports_no_usage() {
    let finish = |upstream: Option<Usage>| {
        let mut t = StreamTranslator::new("msg_1", "m", 7);
        let mut events = t.push(&chunk(text("hi"), Some(FinishReason::Stop), None));
        if let Some(u) = upstream {
            events.extend(t.push(&chunk(Delta::default(), None, Some(u))));
        }
        t.fill_usage(Usage::new(7, 1, None));
        let events = t.finish();
        serde_json::to_value(&events[events.len() - 2]).unwrap()["usage"].clone()
    };
    assert_eq!(finish(None)["output_tokens"], 1);
    assert_eq!(finish(Some(Usage::new(9, 4, None)))["output_tokens"], 4, "the upstream's numbers win");
    let empty_system =
        request(json!({"model": "m", "max_tokens": 5, "system": [], "messages": [{"role": "user", "content": "x"}]}));
    assert_eq!(empty_system.to_chat_request().unwrap().messages.len(), 1, "an empty system prompt adds no message");
}

/// Servers that send each whole call in its own chunk without `index` (every call reads as
/// position 0): calls are told apart by their ids.
#[test]
fn whole_tool_calls_without_index_become_separate_blocks() {
    let whole = |id: &str, name: &str, args: &str| {
        tool(json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
    };
    let events = run(&[
        chunk(whole("call_a", "get_weather", "{\"city\":\"Paris\"}"), None, None),
        chunk(whole("call_b", "get_time", "{\"tz\":\"CET\"}"), None, None),
        chunk(Delta::default(), Some(FinishReason::ToolCalls), None),
    ]);
    let starts: Vec<&Value> = events.iter().filter(|e| e["type"] == "content_block_start").collect();
    assert_eq!(starts.len(), 2, "{events:#?}");
    assert_eq!(
        (starts[0]["content_block"]["id"].as_str(), starts[1]["content_block"]["id"].as_str()),
        (Some("call_a"), Some("call_b"))
    );
    let args: Vec<&str> = events.iter().filter_map(|e| e["delta"]["partial_json"].as_str()).collect();
    assert_eq!(args, ["{\"city\":\"Paris\"}", "{\"tz\":\"CET\"}"]);
}

#[test]
fn refusals_tell_a_malformed_block_from_an_unsupported_one() {
    let message = |content: Value| {
        request(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}))
            .to_chat_request()
            .unwrap_err()
            .message
    };
    assert!(message(json!([{"type": "text", "text": 5}])).contains("malformed"));
    assert!(message(json!([{"type": "document", "source": {}}])).contains("'document' blocks are not supported"));
    assert!(message(json!([{"type": "tool_use", "id": "t", "name": "f", "input": {}}])).contains("not supported here"));
}
