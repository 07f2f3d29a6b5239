//! Constrained output and log probabilities with the real SmolLM2: JSON object, JSON Schema
//! (the output parses and has the schema's shape), tool calls in the envelope, refusals of
//! schemas the grammar cannot enforce, and logprobs consistent with greedy decoding.

use ferrogate_engine::grammar::{Function, ToolChoice, ToolEvent, ToolParser, ToolSpec};
use ferrogate_engine::{GenEvent, GenerateRequest, OutputFormat, SubmitError, TokenLogprob};
use serde_json::{Value, json};

use crate::common::{GUARD, greedy, run, smollm2, start, user};

fn constrained(prompt: &str, output: OutputFormat, max_tokens: u32) -> GenerateRequest {
    GenerateRequest { output, ..greedy(vec![user(prompt)], max_tokens) }
}

#[tokio::test]
async fn json_object_output_parses() {
    let engine = start(smollm2()).await;
    let out = run(
        &engine,
        constrained(
            "Reply with a JSON object whose only key is \"name\", the name of a cat.",
            OutputFormat::JsonObject,
            200,
        ),
    )
    .await;
    assert_eq!(out.finish.reason, ferrogate_engine::FinishReason::Stop, "grammar ends the object: {}", out.text);
    let v: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.text));
    assert!(v.is_object(), "{v}");
}

#[tokio::test]
async fn json_schema_output_has_the_schema_shape() {
    let engine = start(smollm2()).await;
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "mood": {"enum": ["happy", "sad"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
            "pet": {"type": ["object", "null"], "properties": {"kind": {"type": "string", "maxLength": 10}}, "required": ["kind"]}
        },
        "required": ["name", "age", "mood", "tags", "pet"]
    });
    let prompt = "Give a person's name, age, mood, tags and pet as JSON.";
    let out = run(&engine, constrained(prompt, OutputFormat::JsonSchema(schema), 160)).await;
    let v: Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.text));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5, "exactly the schema's properties: {v}");
    assert!(v["name"].as_str().is_some_and(|s| s.chars().count() <= 20), "{v}");
    assert!(v["age"].is_i64(), "{v}");
    assert!(["happy", "sad"].contains(&v["mood"].as_str().unwrap_or("")), "{v}");
    let tags = v["tags"].as_array().unwrap();
    assert!(tags.len() <= 3 && tags.iter().all(Value::is_string), "{v}");
    assert!(v["pet"].is_null() || v["pet"]["kind"].is_string(), "{v}");
}

#[tokio::test]
async fn unsupported_schemas_are_refused_with_the_keyword() {
    let engine = start(smollm2()).await;
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}});
    let err = engine.submit(constrained("x", OutputFormat::JsonSchema(schema), 8)).unwrap_err();
    assert!(
        matches!(&err, SubmitError::InvalidRequest(m) if m.contains("minimum") && m.contains("#/properties/n")),
        "{err}"
    );
}

fn weather_tools(choice: ToolChoice) -> ToolSpec {
    ToolSpec {
        functions: vec![
            Function {
                name: "get_weather".into(),
                description: Some("Current weather in a city.".into()),
                parameters: Some(json!({
                    "type": "object",
                    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                    "required": ["city", "unit"]
                })),
            },
            Function { name: "get_time".into(), description: Some("Current time.".into()), parameters: None },
        ],
        choice,
        parallel: false,
    }
}

#[tokio::test]
async fn a_required_tool_call_is_a_valid_envelope() {
    let engine = start(smollm2()).await;
    let req =
        constrained("What is the weather in Paris?", OutputFormat::Tools(weather_tools(ToolChoice::Required)), 80);
    let out = run(&engine, req).await;
    let mut parser = ToolParser::new(true);
    let mut events = parser.feed(&out.text);
    events.extend(parser.finish().unwrap_or_else(|e| panic!("{e}: {}", out.text)));
    let ToolEvent::Start { index: 0, name } = &events[0] else { panic!("a call first: {events:?}") };
    let args: String = events
        .iter()
        .filter_map(|e| match e {
            ToolEvent::Args { fragment, .. } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap_or_else(|e| panic!("arguments not JSON ({e}): {}", out.text));
    if name == "get_weather" {
        assert!(args["city"].is_string(), "{args}");
        assert!(["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or("")), "{args}");
    } else {
        assert_eq!(name, "get_time", "{}", out.text);
        assert!(args.is_object());
    }
    assert_eq!(parser.calls(), 1, "parallel off: one call");
}

#[tokio::test]
async fn a_named_tool_choice_calls_that_function() {
    let engine = start(smollm2()).await;
    let spec = weather_tools(ToolChoice::Named("get_time".into()));
    let out = run(&engine, constrained("Hello!", OutputFormat::Tools(spec), 60)).await;
    assert!(out.text.starts_with(r#"{"tool_calls":[{"name":"get_time","arguments":{"#), "{}", out.text);
}

#[tokio::test]
async fn logprobs_follow_greedy_decoding() {
    let engine = start(smollm2()).await;
    let req = GenerateRequest { logprobs: Some(3), ..greedy(vec![user("Name a colour.")], 12) };
    let mut generation = engine.submit(req).unwrap();
    let mut lps: Vec<TokenLogprob> = Vec::new();
    let mut text = String::new();
    let finish = tokio::time::timeout(GUARD, async {
        loop {
            match generation.next().await.expect("events until Done") {
                GenEvent::Logprob(lp) => lps.push(lp),
                GenEvent::Text(t) => text.push_str(&t),
                GenEvent::Done(f) => break f,
                GenEvent::Error(e) => panic!("{e}"),
                GenEvent::Started { .. } => {}
            }
        }
    })
    .await
    .unwrap();
    // One entry per generated token except an end-of-generation token.
    let eog = u32::from(finish.reason == ferrogate_engine::FinishReason::Stop);
    assert_eq!(lps.len() as u32 + eog, finish.completion_tokens);
    let joined: Vec<u8> = lps.iter().flat_map(|l| l.bytes.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&joined), text);
    for lp in &lps {
        assert!(lp.logprob <= 0.0 && lp.logprob.is_finite(), "{lp:?}");
        assert_eq!(lp.top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(lp.top[0].0, lp.bytes);
        assert!((lp.top[0].1 - lp.logprob).abs() < 1e-4);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    assert!(engine.submit(GenerateRequest { logprobs: Some(21), ..greedy(vec![user("x")], 2) }).is_err());
}
