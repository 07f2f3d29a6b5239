//! Encoding of chat-shaped answers, shared by `/v1/chat/completions`, `/generate` and `/stream`:
//! a stream (`sse`), the seeds' `/generate` body, or an OpenAI chat completion — the upstream's
//! own when it came as one (passthrough: its body with the gateway's id and the model name the
//! client asked for written in), else encoded from the answer's fields.

use axum::Json;
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use ferrogate_core::Completion;
use ferrogate_core::chunk::{escaped, splice};
use ferrogate_protocol::openai::{AssistantMessage, ChatChoice, ChatCompletion, Role, Usage, unix_now};

use crate::handlers::decorate;
use crate::pipeline::{Answer, Body};
use crate::request::Endpoint;
use crate::state::AppState;

/// Encodes a chat-shaped answer: a stream, the seeds' `/generate` body, or a chat completion.
pub fn respond(st: AppState, answer: Answer) -> Response {
    let Answer { endpoint, shown, include_usage, body } = answer;
    let (completion, usage, settle) = match body {
        Body::Whole { completion, usage, settle } => (completion, usage, settle),
        stream @ Body::Stream { .. } => {
            return crate::sse::respond(st, Answer { endpoint, shown, include_usage, body: stream });
        }
    };
    let mut res = match endpoint {
        Endpoint::Generate => generate_body(&settle.request_id, &shown, completion, usage),
        _ => match passed_through(&settle.request_id, &shown, &completion, usage) {
            Some(body) => ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
            None => Json(chat_completion(&settle.request_id, &shown, completion, usage)).into_response(),
        },
    };
    decorate(&mut res, &shown, &settle);
    res
}

pub fn chat_completion(request_id: &str, model: &str, c: Completion, usage: Usage) -> ChatCompletion {
    let content = if c.text.is_empty() && c.tool_calls.is_some() { None } else { Some(c.text) };
    let logprobs = c.logprobs.map(|content| serde_json::json!({ "content": content, "refusal": null }));
    ChatCompletion {
        id: format!("chatcmpl-{request_id}"),
        object: "chat.completion".into(),
        created: unix_now(),
        model: model.to_owned(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage { role: Role::Assistant, content, tool_calls: c.tool_calls, refusal: None },
            logprobs,
            finish_reason: Some(c.finish_reason),
        }],
        usage,
        system_fingerprint: None,
    }
}

/// The upstream's chat completion as it came, its `id` and `model` written over with the
/// gateway's id and the model name the client asked for; `None` (encode instead) when there is
/// none or the usage settled is not the upstream's.
fn passed_through(request_id: &str, model: &str, c: &Completion, usage: Usage) -> Option<Vec<u8>> {
    let raw = c.raw.as_ref()?;
    if c.usage != Some(usage) {
        return None;
    }
    let (request_id_json, model_json) = (escaped(request_id), escaped(model));
    let request_id = request_id_json.as_deref().unwrap_or(request_id);
    let model = model_json.as_deref().unwrap_or(model);
    let mut out = Vec::with_capacity(raw.json.len() + request_id.len() + model.len() + 16);
    let id_end = raw.id.end..raw.id.end;
    splice(
        &raw.json,
        &mut [(raw.id.clone(), "chatcmpl-"), (id_end, request_id), (raw.model.clone(), model)],
        &mut out,
    )?;
    Some(out)
}

/// The seeds' `/generate` body: `{"id", "model", "text", "finish_reason", "usage"}`.
pub fn generate_body(request_id: &str, model: &str, c: Completion, usage: Usage) -> Response {
    Json(serde_json::json!({
        "id": request_id,
        "model": model,
        "text": c.text,
        "finish_reason": c.finish_reason.as_str(),
        "usage": usage,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use ferrogate_core::chunk::RawCompletion;
    use ferrogate_protocol::openai::FinishReason;
    use serde_json::Value;

    use super::*;

    const UPSTREAM: &str = r#"{"id":"up-id","object":"chat.completion","created":7,"model":"up-model","system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":"r"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

    fn completion(raw: bool) -> Completion {
        let at = |s: &str| UPSTREAM.find(s).map(|i| i..i + s.len()).unwrap();
        Completion {
            text: "Hi".into(),
            tool_calls: None,
            logprobs: None,
            finish_reason: FinishReason::Stop,
            usage: Some(Usage::new(3, 1, None)),
            raw: raw.then(|| RawCompletion { json: UPSTREAM.into(), id: at("up-id"), model: at("up-model") }),
        }
    }

    #[test]
    fn the_upstream_answer_passes_with_the_gateway_id_and_model() {
        let body = passed_through("r\"1", "my-\"alias", &completion(true), Usage::new(3, 1, None)).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["id"].as_str(), v["model"].as_str()), (Some("chatcmpl-r\"1"), Some("my-\"alias")));
        // Everything else as the upstream wrote it, fields the typed answer has no room for too.
        let mut up: Value = serde_json::from_str(UPSTREAM).unwrap();
        (up["id"], up["model"]) = (v["id"].clone(), v["model"].clone());
        assert_eq!(v, up);
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "r");
        // The bytes around the two strings are the upstream's own.
        let plain = passed_through("r1", "m", &completion(true), Usage::new(3, 1, None)).unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            UPSTREAM.replace("up-id", "chatcmpl-r1").replace("up-model", "m")
        );
    }

    #[test]
    fn encoded_when_there_is_no_upstream_body_or_another_usage() {
        assert_eq!(passed_through("r1", "m", &completion(false), Usage::new(3, 1, None)), None);
        assert_eq!(passed_through("r1", "m", &completion(true), Usage::new(3, 2, None)), None);
    }
}
