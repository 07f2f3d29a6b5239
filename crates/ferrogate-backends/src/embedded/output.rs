//! The embedded engine's constrained output, both ways: the request's `response_format`,
//! `tools`, `tool_choice` and `parallel_tool_calls` → an engine `OutputFormat`; the generated
//! envelope → OpenAI `tool_calls` (whole, or as streamed deltas with index, id and argument
//! fragments). Pure.

use ferrogate_core::BackendError;
use ferrogate_engine::OutputFormat;
use ferrogate_engine::grammar::{Function, ToolChoice, ToolEvent, ToolSpec};
use serde_json::{Map, Value, json};

/// The output format a request asks for; 400 for what the engine cannot enforce.
pub fn output_format(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
    extra: &Map<String, Value>,
) -> Result<OutputFormat, BackendError> {
    let response = response_format(extra.get("response_format"))?;
    let Some(spec) = tool_spec(tools, tool_choice, extra.get("parallel_tool_calls"))? else {
        return Ok(response);
    };
    if response != OutputFormat::Text {
        return Err(invalid(
            "response_format",
            "'response_format' together with tools is not supported by the embedded engine (set tool_choice 'none' or drop one)",
        ));
    }
    Ok(OutputFormat::Tools(spec))
}

fn response_format(rf: Option<&Value>) -> Result<OutputFormat, BackendError> {
    let Some(rf) = rf.filter(|v| !v.is_null()) else { return Ok(OutputFormat::Text) };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(OutputFormat::Text),
        Some("json_object") => Ok(OutputFormat::JsonObject),
        Some("json_schema") => match rf.get("json_schema").and_then(|j| j.get("schema")) {
            Some(schema @ (Value::Object(_) | Value::Bool(true))) => Ok(OutputFormat::JsonSchema(schema.clone())),
            _ => Err(invalid("response_format", "'response_format.json_schema.schema' must be a JSON Schema object")),
        },
        _ => Err(invalid("response_format", "'response_format.type' must be 'text', 'json_object' or 'json_schema'")),
    }
}

/// `None` when there are no tools or `tool_choice` is `none`.
fn tool_spec(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<ToolSpec>, BackendError> {
    let Some(tools) = tools.filter(|t| !t.is_null()) else { return Ok(None) };
    let Some(list) = tools.as_array() else { return Err(invalid("tools", "'tools' must be an array")) };
    let choice = match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Value::String(s)) if s == "none" => return Ok(None),
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_owned()),
            None => {
                return Err(invalid(
                    "tool_choice",
                    "'tool_choice' must be 'auto', 'none', 'required' or {\"type\":\"function\",\"function\":{\"name\":…}}",
                ));
            }
        },
    };
    let functions = list.iter().enumerate().map(|(i, t)| function(i, t)).collect::<Result<Vec<_>, _>>()?;
    if functions.is_empty() {
        return Ok(None);
    }
    let parallel = parallel.and_then(Value::as_bool).unwrap_or(true);
    Ok(Some(ToolSpec { functions, choice, parallel }))
}

fn function(i: usize, tool: &Value) -> Result<Function, BackendError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid(&format!("tools[{i}].type"), "only tools of type 'function' are supported"));
    }
    let f = &tool["function"];
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(invalid(
            &format!("tools[{i}].function.name"),
            "a function name must be 1-64 of a-z, A-Z, 0-9, _ and -",
        ));
    }
    Ok(Function {
        name: name.to_owned(),
        description: f.get("description").and_then(Value::as_str).map(str::to_owned),
        parameters: f.get("parameters").filter(|p| !p.is_null()).cloned(),
    })
}

fn invalid(param: &str, message: &str) -> BackendError {
    BackendError::InvalidRequest { param: Some(param.to_owned()), message: message.to_owned() }
}

/// The id of call `index` of request `request_id`: unique across requests, stable within one.
pub fn call_id(request_id: &str, index: usize) -> String {
    let tail: String = request_id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("call_{tail}_{index}")
}

/// Parser events → OpenAI streamed `tool_calls` deltas, and plain text.
pub fn deltas(request_id: &str, events: Vec<ToolEvent>) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for e in events {
        match e {
            ToolEvent::Text(t) => text.push_str(&t),
            ToolEvent::Start { index, name } => calls.push(json!({
                "index": index,
                "id": call_id(request_id, index),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            })),
            ToolEvent::Args { index, fragment } => {
                calls.push(json!({"index": index, "function": {"arguments": fragment}}));
            }
        }
    }
    (text, calls)
}

/// Deltas merged into whole calls (the non-streamed `message.tool_calls`).
pub fn whole_calls(deltas: &[Value]) -> Vec<Value> {
    let mut calls: Vec<Value> = Vec::new();
    for d in deltas {
        let fragment = d["function"]["arguments"].as_str().unwrap_or("");
        if d.get("id").is_some() {
            let mut call = d.clone();
            if let Some(o) = call.as_object_mut() {
                o.remove("index");
            }
            calls.push(call);
        } else if let Some(last) = calls.last_mut() {
            let joined = format!("{}{fragment}", last["function"]["arguments"].as_str().unwrap_or(""));
            last["function"]["arguments"] = Value::String(joined);
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    #[test]
    fn maps_response_format_and_tools() {
        let extra = |v: Value| v.as_object().cloned().unwrap();
        assert_eq!(output_format(None, None, &extra(json!({}))).unwrap(), OutputFormat::Text);
        let rf = json!({"response_format": {"type": "json_object"}});
        assert_eq!(output_format(None, None, &extra(rf)).unwrap(), OutputFormat::JsonObject);
        let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}});
        assert!(matches!(output_format(None, None, &extra(rf)).unwrap(), OutputFormat::JsonSchema(_)));
        let rf = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}});
        assert!(output_format(None, None, &extra(rf)).is_err());
        let tools = weather();
        let OutputFormat::Tools(spec) =
            output_format(Some(&tools), None, &extra(json!({"parallel_tool_calls": false}))).unwrap()
        else {
            panic!("tools expected")
        };
        assert_eq!((spec.choice, spec.parallel), (ToolChoice::Auto, false));
        let none = json!("none");
        assert_eq!(output_format(Some(&tools), Some(&none), &extra(json!({}))).unwrap(), OutputFormat::Text);
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let OutputFormat::Tools(spec) = output_format(Some(&tools), Some(&named), &extra(json!({}))).unwrap() else {
            panic!("tools expected")
        };
        assert_eq!(spec.choice, ToolChoice::Named("get_weather".into()));
        let both = json!({"response_format": {"type": "json_object"}});
        assert!(output_format(Some(&tools), None, &extra(both)).is_err());
        let bad = json!([{"type": "function", "function": {"name": "a b"}}]);
        assert!(output_format(Some(&bad), None, &extra(json!({}))).is_err());
    }

    #[test]
    fn deltas_merge_into_whole_calls() {
        let events = vec![
            ToolEvent::Start { index: 0, name: "f".into() },
            ToolEvent::Args { index: 0, fragment: "{\"a\":".into() },
            ToolEvent::Args { index: 0, fragment: "1}".into() },
        ];
        let (text, d) = deltas("req-1", events);
        assert!(text.is_empty());
        assert_eq!(d[0]["id"], "call_req1_0");
        assert_eq!(
            whole_calls(&d),
            vec![json!({"id": "call_req1_0", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}})]
        );
    }
}
