//! The Ollama front translation checked field by field on the payloads of Ollama's API reference
//! (docs/api.md): chat and generate requests and answers, streaming lines, tools, structured
//! outputs, images, the model endpoints and embeddings.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use ferrogate_protocol::ollama::ErrorResponse;
use ferrogate_protocol::ollama::front::{
    ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, Endpoint, GenerateRequest, GenerateTarget, Line,
    ListResponse, NdjsonTranslator, PsResponse, ShowRequest, ShowResponse, Timings, VersionResponse, chat_response,
    generate_response, is_unload,
};
use ferrogate_protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, FinishReason,
    MessageContent, Role, Stop, Usage,
};
use serde_json::{Value, json};

fn chat(v: Value) -> ChatRequest {
    serde_json::from_value(v).unwrap()
}

fn generate(v: Value) -> GenerateRequest {
    serde_json::from_value(v).unwrap()
}

const CREATED: &str = "2023-12-12T14:13:43.416799Z";

fn timings() -> Timings {
    Timings {
        total: Duration::from_nanos(5_191_566_416),
        load: Duration::from_nanos(2_154_458),
        prompt_eval: Duration::from_nanos(383_809_000),
        eval: Duration::from_nanos(4_799_921_000),
    }
}

fn completion(content: &str, tool_calls: Option<Vec<Value>>, finish: FinishReason) -> ChatCompletion {
    ChatCompletion {
        id: "chatcmpl-1".into(),
        object: "chat.completion".into(),
        created: 1,
        model: "llama3.2".into(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: Role::Assistant,
                content: Some(content.into()),
                tool_calls,
                refusal: None,
            },
            logprobs: None,
            finish_reason: Some(finish),
        }],
        usage: Usage::new(26, 298, None),
        system_fingerprint: None,
    }
}

#[test]
fn a_chat_request_streams_by_default_and_keeps_history() {
    let r = chat(json!({
        "model": "llama3.2",
        "messages": [
            {"role": "user", "content": "why is the sky blue?"},
            {"role": "assistant", "content": "due to rayleigh scattering."},
            {"role": "user", "content": "how is that different than mie scattering?"}
        ]
    }));
    assert!(r.stream, "Ollama streams unless told not to");
    let c = r.to_chat_request().unwrap();
    assert_eq!(c.model, "llama3.2");
    let roles: Vec<Role> = c.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
    assert_eq!(c.messages[2].text(), "how is that different than mie scattering?");
    assert!(c.is_stream() && c.include_usage(), "the final line's counts come from the usage chunk");
    assert!(!chat(json!({"model": "m", "messages": [], "stream": false})).stream);
}

#[test]
fn every_documented_option_is_accepted_and_the_per_request_ones_are_used() {
    let r = generate(json!({
        "model": "llama3.2", "prompt": "Why is the sky blue?", "stream": false,
        "options": {"num_keep": 5, "seed": 42, "num_predict": 100, "top_k": 20, "top_p": 0.9, "min_p": 0.0,
                    "typical_p": 0.7, "repeat_last_n": 33, "temperature": 0.8, "repeat_penalty": 1.2,
                    "presence_penalty": 1.5, "frequency_penalty": 1.0, "mirostat": 1, "mirostat_tau": 0.8,
                    "mirostat_eta": 0.6, "penalize_newline": true, "stop": ["\n", "user:"], "numa": false,
                    "num_ctx": 1024, "num_batch": 2, "num_gpu": 1, "main_gpu": 0, "low_vram": false,
                    "vocab_only": false, "use_mmap": true, "use_mlock": false, "num_thread": 8}
    }));
    let mut ignored: Vec<&str> = r.options.as_ref().unwrap().ignored().collect();
    ignored.sort_unstable();
    assert!(ignored.contains(&"num_ctx") && ignored.contains(&"mirostat") && !ignored.contains(&"seed"), "{ignored:?}");
    let GenerateTarget::Chat(c) = r.to_openai().unwrap() else { panic!("templated generate is a chat") };
    assert_eq!(
        (c.max_tokens, c.seed, c.top_k, c.top_p, c.min_p),
        (Some(100), Some(42), Some(20), Some(0.9), Some(0.0))
    );
    assert_eq!((c.temperature, c.repetition_penalty), (Some(0.8), Some(1.2)));
    assert_eq!((c.presence_penalty, c.frequency_penalty), (Some(1.5), Some(1.0)));
    assert_eq!(c.stop, Some(Stop::Many(vec!["\n".into(), "user:".into()])));
    assert_eq!(c.stream, None);
    assert_eq!(c.messages.len(), 1);
    assert_eq!(c.messages[0].text(), "Why is the sky blue?");
}

#[test]
fn option_errors_name_ollama_fields() {
    let bad = |options: Value| {
        chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": options}))
            .to_chat_request()
            .unwrap_err()
            .param
    };
    assert_eq!(bad(json!({"temperature": 9.0})), "options.temperature");
    assert_eq!(bad(json!({"repeat_penalty": 20.0})), "options.repeat_penalty");
    assert_eq!(bad(json!({"stop": ["a", "b", "c", "d", "e"]})), "options.stop");
    let unlimited =
        chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "options": {"num_predict": -1}}));
    assert_eq!(unlimited.to_chat_request().unwrap().max_tokens, None, "-1 is no limit");
}

#[test]
fn format_json_and_schema_become_response_format() {
    let schema = json!({"type": "object", "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
                        "required": ["age", "available"]});
    let structured =
        chat(json!({"model": "llama3.1", "stream": false, "format": schema, "options": {"temperature": 0},
        "messages": [{"role": "user", "content": "Ollama is 22 years old and busy saving the world."}]}));
    let c = structured.to_chat_request().unwrap();
    assert_eq!(
        c.extra["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "response", "schema": schema}})
    );
    let json_mode =
        generate(json!({"model": "llama3.2", "prompt": "Respond using JSON", "format": "json", "stream": false}));
    let GenerateTarget::Chat(c) = json_mode.to_openai().unwrap() else { panic!() };
    assert_eq!(c.extra["response_format"], json!({"type": "json_object"}));
    let bad = chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "format": "yaml"}));
    assert_eq!(bad.to_chat_request().unwrap_err().param, "format");
}

#[test]
fn images_become_data_url_parts() {
    let r = chat(json!({"model": "llava", "messages": [{"role": "user", "content": "what is in this image?",
        "images": ["iVBORw0KGgoAAAANSUhEUgAAAG0AAABmCAYAAADBPx+VAAAACXBIWXMAAAsTAAALEwEAmpwYAAAAAXNSR0IArs4c6QAAAARnQU1BAACxjwv8YQUAAA3VSURBVHgB7Z27r0zdG8fX743i1bi1ikMoFMQloXRpKFFIqI7LH4BEQ+NWIkjQuSWCRIEoULk0gsK1kCBI0IhrQVT7tz/7zZo888yz1r7MnDl7z5xvsjkzs2fP3uu71nNfa7lkAsm7d++Sffv2JbNmzUqcc8m0adOSzZs3Z+/XES4ZckAWJEGWPiCxjsQNLWmQsWjRIpMseaxcuTKpG/7HP27I8P79e7dq1ars/yL4/v27S0ejqwv+cUOGEGGpKHR37tzJCEpHV9tnT58+dXXCJDdECBE2Ojrqjh071hpNECjx4cMHVycM1Uhbv359B2F79+"]}]}));
    let c = r.to_chat_request().unwrap();
    let Some(MessageContent::Parts(parts)) = &c.messages[0].content else { panic!("{:?}", c.messages[0]) };
    assert_eq!(parts[0].text.as_deref(), Some("what is in this image?"));
    let url = parts[1].rest["image_url"]["url"].as_str().unwrap();
    assert!(url.starts_with("data:image/png;base64,iVBORw0KGgo"), "{url}");
    let jpeg = chat(json!({"model": "m", "messages": [{"role": "user", "content": "", "images": ["/9j/4AAQSkZJRg"]}]}));
    let c = jpeg.to_chat_request().unwrap();
    let Some(MessageContent::Parts(parts)) = &c.messages[0].content else { panic!() };
    assert!(parts[1].rest["image_url"]["url"].as_str().unwrap().starts_with("data:image/jpeg;base64,"));
}

#[test]
fn tools_and_tool_turns_translate_with_ids() {
    let r = chat(json!({
        "model": "llama3.2", "stream": false,
        "messages": [
            {"role": "user", "content": "What is the weather today in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_time", "arguments": {}}},
                {"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}}}]},
            {"role": "tool", "content": "22 degrees", "tool_name": "get_current_weather"},
            {"role": "tool", "content": "noon"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_current_weather", "description": "Get the current weather for a location",
                   "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
    }));
    let c = r.to_chat_request().unwrap();
    let calls = c.messages[1].tool_calls.as_ref().unwrap();
    assert_eq!(c.messages[1].content, None);
    assert_eq!((calls[0]["id"].as_str(), calls[1]["id"].as_str()), (Some("call_0"), Some("call_1")));
    let args: Value = serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"format": "celsius", "location": "Paris, FR"}));
    assert_eq!(c.messages[2].tool_call_id.as_deref(), Some("call_1"), "matched by tool_name");
    assert_eq!(c.messages[3].tool_call_id.as_deref(), Some("call_0"), "the remaining call");
    assert_eq!(c.tools.as_ref().unwrap()[0]["function"]["name"], "get_current_weather");
}

#[test]
fn a_whole_chat_answer_has_the_reference_shape() {
    let r =
        chat_response(&completion("Hello! How are you today?", None, FinishReason::Stop), CREATED.into(), &timings());
    assert_eq!(
        serde_json::to_value(r.unwrap()).unwrap(),
        json!({
            "model": "llama3.2",
            "created_at": "2023-12-12T14:13:43.416799Z",
            "message": {"role": "assistant", "content": "Hello! How are you today?"},
            "done": true,
            "done_reason": "stop",
            "total_duration": 5191566416u64,
            "load_duration": 2154458,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 383809000,
            "eval_count": 298,
            "eval_duration": 4799921000u64
        })
    );
}

#[test]
fn tool_call_answers_carry_arguments_as_objects() {
    let call = json!({"id": "call_1", "type": "function", "function": {"name": "get_current_weather",
                      "arguments": "{\"format\":\"celsius\",\"location\":\"Paris, FR\"}"}});
    let r =
        chat_response(&completion("", Some(vec![call]), FinishReason::ToolCalls), CREATED.into(), &timings()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["message"]["tool_calls"],
        json!([{"function": {"name": "get_current_weather", "arguments": {"format": "celsius", "location": "Paris, FR"}, "index": 0}}])
    );
    assert_eq!(v["done_reason"], "stop", "Ollama reports tool calls as a plain stop");
    let parsed: ChatResponse = serde_json::from_value(v).unwrap();
    assert_eq!(parsed, r);
    let length = generate_response(&completion("The sky", None, FinishReason::Length), CREATED.into(), &timings());
    assert_eq!(length.unwrap().done_reason.as_deref(), Some("length"));
}

fn chunk(delta: Delta, finish: Option<FinishReason>, usage: Option<Usage>) -> ChatCompletionChunk {
    ChatCompletionChunk {
        id: "chatcmpl-1".into(),
        object: "chat.completion.chunk".into(),
        created: 1,
        model: "llama3.2".into(),
        choices: if usage.is_some() {
            vec![]
        } else {
            vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }]
        },
        usage: Some(usage),
        system_fingerprint: None,
    }
}

#[test]
fn a_chat_stream_is_the_reference_ndjson() {
    let mut t = NdjsonTranslator::new(Endpoint::Chat, "llama3.2");
    let mut lines = Vec::new();
    lines.extend(t.push(
        &chunk(Delta { content: Some("The".into()), ..Delta::default() }, None, None),
        "2023-08-04T08:52:19.385406Z",
    ));
    lines.extend(t.push(&chunk(Delta::default(), Some(FinishReason::Stop), None), "x"));
    lines.extend(t.push(&chunk(Delta::default(), None, Some(Usage::new(26, 282, None))), "x"));
    lines.extend(t.finish("2023-08-04T19:22:45.499127Z", &timings()));
    let text: Vec<u8> = lines.iter().flat_map(|l| l.to_bytes().to_vec()).collect();
    let parsed: Vec<Value> =
        String::from_utf8(text).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        parsed[0],
        json!({"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406Z",
               "message": {"role": "assistant", "content": "The"}, "done": false})
    );
    assert_eq!(parsed.len(), 2);
    let last = &parsed[1];
    assert_eq!((last["done"].as_bool(), last["done_reason"].as_str()), (Some(true), Some("stop")));
    assert_eq!((last["prompt_eval_count"].as_u64(), last["eval_count"].as_u64()), (Some(26), Some(282)));
    assert_eq!(last["total_duration"], 5_191_566_416u64);
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
}

#[test]
fn a_streamed_tool_call_is_sent_whole_before_the_final_line() {
    let mut t = NdjsonTranslator::new(Endpoint::Chat, "llama3.2");
    let frag = |v: Value| chunk(Delta { tool_calls: Some(vec![v]), ..Delta::default() }, None, None);
    let mut lines = t.push(
        &frag(
            json!({"index": 0, "id": "c", "function": {"name": "get_current_weather", "arguments": "{\"location\":"}}),
        ),
        "x",
    );
    lines.extend(t.push(&frag(json!({"index": 0, "function": {"arguments": "\"Paris, FR\"}"}})), "x"));
    assert!(lines.is_empty(), "fragments are held until the call is whole");
    lines.extend(t.finish("x", &Timings::default()));
    let Line::Chat(calls) = &lines[0] else { panic!("{lines:?}") };
    let call = &calls.message.tool_calls.as_ref().unwrap()[0].function;
    assert_eq!(
        (call.name.as_str(), Value::Object(call.arguments.clone())),
        ("get_current_weather", json!({"location": "Paris, FR"}))
    );
    assert!(!calls.done);
    assert!(matches!(&lines[1], Line::Chat(r) if r.done));

    let mut broken = NdjsonTranslator::new(Endpoint::Chat, "m");
    broken.push(&frag(json!({"index": 0, "function": {"name": "f", "arguments": "{\"a\""}})), "x");
    let end = broken.finish("x", &Timings::default());
    assert!(
        matches!(&end[..], [Line::Error(ErrorResponse { error })] if error.contains("not a JSON object")),
        "{end:?}"
    );
}

#[test]
fn generate_streams_response_lines_and_raw_is_a_legacy_completion() {
    let mut t = NdjsonTranslator::new(Endpoint::Generate, "llama3.2");
    let lines = t.push(
        &chunk(Delta { content: Some("The".into()), ..Delta::default() }, None, None),
        "2023-08-04T08:52:19.385406Z",
    );
    assert_eq!(
        serde_json::to_value(match &lines[0] {
            Line::Generate(g) => g,
            other => panic!("{other:?}"),
        })
        .unwrap(),
        json!({"model": "llama3.2", "created_at": "2023-08-04T08:52:19.385406Z", "response": "The", "done": false})
    );
    let raw = generate(
        json!({"model": "mistral", "prompt": "[INST] why is the sky blue? [/INST]", "raw": true, "stream": false}),
    );
    let GenerateTarget::Completion(c) = raw.to_openai().unwrap() else { panic!("raw is a legacy completion") };
    assert_eq!(c.prompt_text(), "[INST] why is the sky blue? [/INST]");
    let system = generate(json!({"model": "m", "prompt": "hi", "system": "be brief"}));
    let GenerateTarget::Chat(c) = system.to_openai().unwrap() else { panic!() };
    assert_eq!((c.messages[0].role, c.messages[1].role), (Role::System, Role::User));
    for (field, value) in
        [("suffix", json!("    return result")), ("template", json!("{{ .Prompt }}")), ("context", json!([1, 2, 3]))]
    {
        let mut v = json!({"model": "codellama:code", "prompt": "def compute_gcd(a, b):"});
        v[field] = value;
        assert_eq!(generate(v).to_openai().unwrap_err().param, field);
    }
}

#[test]
fn load_and_unload_requests_are_recognised() {
    let load = chat(json!({"model": "llama3.2", "messages": []}));
    assert!(load.is_load_request() && !is_unload(load.keep_alive.as_ref()));
    let unload = generate(json!({"model": "llama3.2", "keep_alive": 0}));
    assert!(unload.is_load_request() && is_unload(unload.keep_alive.as_ref()));
    assert!(!is_unload(Some(&json!("5m"))) && is_unload(Some(&json!("0s"))));
    assert_eq!(
        serde_json::to_value(ChatResponse::load("llama3.2", "2024-09-12T21:17:29.110811Z".into(), false)).unwrap(),
        json!({"model": "llama3.2", "created_at": "2024-09-12T21:17:29.110811Z",
               "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": true})
    );
}

#[test]
fn the_model_endpoints_read_the_reference_payloads() {
    let tags: ListResponse = serde_json::from_value(json!({"models": [{
        "name": "codellama:13b", "model": "codellama:13b", "modified_at": "2023-11-04T14:56:49.277302595-07:00",
        "size": 7365960935u64, "digest": "9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697",
        "details": {"format": "gguf", "family": "llama", "families": null, "parameter_size": "13B", "quantization_level": "Q4_0"}}]}))
    .unwrap();
    assert_eq!((tags.models[0].size, tags.models[0].details.parameter_size.as_str()), (7_365_960_935, "13B"));
    let ps: PsResponse = serde_json::from_value(json!({"models": [{
        "name": "mistral:latest", "model": "mistral:latest", "size": 5137025024u64,
        "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"], "parameter_size": "7.2B", "quantization_level": "Q4_0"},
        "expires_at": "2024-06-04T14:38:31.83753-07:00", "size_vram": 5137025024u64}]}))
    .unwrap();
    assert_eq!(ps.models[0].details.families.as_deref(), Some(&["llama".to_owned()][..]));
    let show: ShowRequest = serde_json::from_value(json!({"name": "llama3.2"})).unwrap();
    assert_eq!(show.model, "llama3.2", "the older `name` field is read too");
    let info: ShowResponse = serde_json::from_value(json!({"modelfile": "# Modelfile", "parameters": "num_keep 24",
        "template": "{{ .Prompt }}", "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
        "parameter_size": "8.0B", "quantization_level": "Q4_0"}, "model_info": {"general.architecture": "llama", "llama.context_length": 8192}}))
    .unwrap();
    assert_eq!(info.model_info["llama.context_length"], 8192);
    assert_eq!(serde_json::to_value(VersionResponse { version: "0.5.1".into() }).unwrap(), json!({"version": "0.5.1"}));
}

#[test]
fn embed_takes_one_or_many_inputs() {
    let one: EmbedRequest =
        serde_json::from_value(json!({"model": "all-minilm", "input": "Why is the sky blue?"})).unwrap();
    assert_eq!((one.inputs(), one.truncates()), (vec!["Why is the sky blue?"], true));
    let many: EmbedRequest = serde_json::from_value(
        json!({"model": "all-minilm", "input": ["Why is the sky blue?", "Why is the grass green?"], "truncate": false}),
    )
    .unwrap();
    assert_eq!((many.inputs().len(), many.truncates()), (2, false));
    let answer = EmbedResponse {
        model: "all-minilm".into(),
        embeddings: vec![vec![0.010071029, -0.0017594862]],
        total_duration: Some(14143917),
        load_duration: Some(1019500),
        prompt_eval_count: Some(8),
    };
    let v = serde_json::to_value(&answer).unwrap();
    assert_eq!(v["embeddings"][0].as_array().unwrap().len(), 2);
    assert_eq!(v["prompt_eval_count"], 8);
    assert_eq!(
        serde_json::to_value(ErrorResponse::new("model 'x' not found")).unwrap(),
        json!({"error": "model 'x' not found"})
    );
}

#[test]
fn raw_generate_streams_from_legacy_chunks_and_local_counts_fill_in() {
    use ferrogate_protocol::openai::{Completion, CompletionChoice};
    let piece = |text: &str, finish: Option<FinishReason>| Completion {
        id: "cmpl-1".into(),
        object: "text_completion".into(),
        created: 1,
        model: "mistral".into(),
        choices: vec![CompletionChoice { index: 0, text: text.into(), logprobs: None, finish_reason: finish }],
        usage: None,
    };
    let mut t = NdjsonTranslator::new(Endpoint::Generate, "mistral");
    let mut lines = t.push_completion(&piece(" The sky", None), "x");
    lines.extend(t.push_completion(&piece("", Some(FinishReason::Length)), "x"));
    t.fill_usage(Usage::new(14, 2, None));
    lines.extend(t.finish("x", &Timings::default()));
    let [Line::Generate(first), Line::Generate(last)] = &lines[..] else { panic!("{lines:?}") };
    assert_eq!((first.response.as_str(), first.done), (" The sky", false));
    assert_eq!((last.done, last.done_reason.as_deref()), (true, Some("length")));
    let stats = last.stats.unwrap();
    assert_eq!((stats.prompt_eval_count, stats.eval_count), (14, 2), "the gateway's count when the upstream gave none");
}

#[test]
fn listed_models_have_every_key_clients_read() {
    use ferrogate_protocol::ollama::front::{ListedModel, RunningModel};
    let v = serde_json::to_value(ListResponse { models: vec![ListedModel::named("llama3.2", CREATED)] }).unwrap();
    let keys: Vec<&String> = v["models"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["details", "digest", "model", "modified_at", "name", "size"]);
    assert_eq!(
        (v["models"][0]["name"].as_str(), v["models"][0]["model"].as_str()),
        (Some("llama3.2"), Some("llama3.2"))
    );
    let ps = serde_json::to_value(RunningModel::named("llama3.2", CREATED)).unwrap();
    assert_eq!(ps["expires_at"], CREATED);
    assert!(ps.get("context_length").is_none());
}
