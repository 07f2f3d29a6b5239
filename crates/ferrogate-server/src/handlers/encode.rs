//! Encoding of chat-shaped answers, shared by `/v1/chat/completions`, `/generate` and `/stream`:
//! a stream (`sse`), the seeds' `/generate` body, or an OpenAI chat completion.

use axum::Json;
use axum::response::{IntoResponse, Response};
use ferrogate_core::Completion;
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
        _ => Json(chat_completion(&settle.request_id, &shown, completion, usage)).into_response(),
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
