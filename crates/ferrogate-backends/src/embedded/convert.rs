//! Pure conversions between the gateway's request/answer types and the engine's.

use ferrogate_core::{BackendError, GenParams, InferenceRequest, Input};
use ferrogate_engine::{
    AcquireError, EngineError, Finish, GenerateRequest, MAX_TOP_LOGPROBS, Prompt, SamplingParams, SubmitError,
};
use ferrogate_protocol::openai::{ChatMessage, FinishReason, Role, Usage};
use serde_json::{Map, Value, json};

use super::output::output_format;

/// Builds the engine request; refuses client options the engine cannot honour (400), rather
/// than silently ignoring them.
pub fn to_generate_request(req: InferenceRequest) -> Result<GenerateRequest, BackendError> {
    check_unsupported(&req.extra)?;
    let logprobs = logprobs(&req.extra)?;
    let (prompt, output) = match req.input {
        Input::Text(t) => (Prompt::Text(t), output_format(None, None, &req.extra)?),
        Input::Chat { messages, tools, tool_choice } => {
            let output = output_format(tools.as_ref(), tool_choice.as_ref(), &req.extra)?;
            (Prompt::Chat { messages: messages.iter().map(message).collect(), tools: None }, output)
        }
    };
    Ok(GenerateRequest {
        prompt,
        sampling: sampling(&req.params),
        max_tokens: req.params.max_tokens,
        stop: req.params.stop,
        output,
        logprobs,
    })
}

fn check_unsupported(extra: &Map<String, Value>) -> Result<(), BackendError> {
    let unsupported = |param: &str, why: &str| {
        Err(BackendError::InvalidRequest {
            param: Some(param.into()),
            message: format!("'{param}' {why} with the embedded engine"),
        })
    };
    if extra.get("logit_bias").is_some_and(|v| v.as_object().is_some_and(|m| !m.is_empty())) {
        return unsupported("logit_bias", "is not supported");
    }
    Ok(())
}

/// `logprobs: true` → alternatives per token (`top_logprobs`, default 0); `None` when off.
fn logprobs(extra: &Map<String, Value>) -> Result<Option<u8>, BackendError> {
    let on = extra.get("logprobs").is_some_and(|v| v.as_bool() == Some(true));
    let top = match extra.get("top_logprobs") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|&k| k <= u64::from(MAX_TOP_LOGPROBS)) {
            Some(k) => Some(k as u8),
            None => {
                let message = format!("'top_logprobs' must be an integer in 0..={MAX_TOP_LOGPROBS}");
                return Err(BackendError::InvalidRequest { param: Some("top_logprobs".into()), message });
            }
        },
    };
    match (on, top) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(BackendError::InvalidRequest {
            param: Some("logprobs".into()),
            message: "'logprobs' must be true when 'top_logprobs' is set".into(),
        }),
        (true, top) => Ok(Some(top.unwrap_or(0))),
    }
}

/// An OpenAI message as the chat template expects it: `content` a string; `developer` is `system`.
fn message(m: &ChatMessage) -> Value {
    let role = match m.role {
        Role::Developer => "system",
        r => r.as_str(),
    };
    let mut v = json!({ "role": role, "content": m.text() });
    if let Some(n) = &m.name {
        v["name"] = json!(n);
    }
    if let Some(tc) = &m.tool_calls {
        v["tool_calls"] = json!(tc);
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// OpenAI defaults where the client set nothing (temperature 1, top_p 1, no penalties).
fn sampling(p: &GenParams) -> SamplingParams {
    let d = SamplingParams::default();
    SamplingParams {
        temperature: p.temperature.unwrap_or(d.temperature),
        top_p: p.top_p.unwrap_or(d.top_p),
        top_k: p.top_k.unwrap_or(d.top_k).max(0),
        min_p: p.min_p.unwrap_or(d.min_p),
        // A negative i64 seed maps to a distinct u64: same seed in, same stream out.
        seed: p.seed.map(|s| s as u64),
        repeat_penalty: p.repetition_penalty.unwrap_or(d.repeat_penalty),
        frequency_penalty: p.frequency_penalty.unwrap_or(d.frequency_penalty),
        presence_penalty: p.presence_penalty.unwrap_or(d.presence_penalty),
    }
}

/// The engine's exact counts, in OpenAI terms.
pub fn usage_of(f: &Finish) -> (FinishReason, Usage) {
    let reason = match f.reason {
        ferrogate_engine::FinishReason::Stop => FinishReason::Stop,
        ferrogate_engine::FinishReason::Length => FinishReason::Length,
    };
    (reason, Usage::new(f.prompt_tokens, f.completion_tokens, Some(f.cached_tokens)))
}

pub fn submit_error(e: SubmitError) -> BackendError {
    match e {
        SubmitError::NotReady => BackendError::NotReady("the model is still loading".into()),
        SubmitError::QueueFull { retry_after } => {
            BackendError::Overloaded { message: "The model's request queue is full; retry shortly".into(), retry_after }
        }
        e @ (SubmitError::ContextLengthExceeded { .. } | SubmitError::PromptTooLong { .. }) => {
            BackendError::ContextLength { message: e.to_string() }
        }
        SubmitError::InvalidRequest(message) => BackendError::InvalidRequest { param: None, message },
        SubmitError::Engine(e) => engine_error(e),
    }
}

/// A request that could not get its model loaded: a load that outlasts `load_timeout_ms` (or
/// waits that long for room in the budget) is a 503 the client may retry.
pub fn acquire_error(e: AcquireError) -> BackendError {
    match e {
        e @ AcquireError::Timeout { .. } => BackendError::NotReady(e.to_string()),
        AcquireError::Load(e) => engine_error(e),
    }
}

pub fn engine_error(e: EngineError) -> BackendError {
    match e {
        EngineError::Loading => BackendError::NotReady("the model is still loading".into()),
        EngineError::InvalidRequest(message) => {
            BackendError::InvalidRequest { param: Some("messages".into()), message }
        }
        e
        @ (EngineError::Config(_) | EngineError::LoadFailed(_) | EngineError::Inference(_) | EngineError::Stopped) => {
            BackendError::Internal(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn req(extra: Value) -> InferenceRequest {
        InferenceRequest {
            request_id: "r".into(),
            model: "m".into(),
            input: Input::Chat {
                messages: vec![ChatMessage::new(Role::Developer, "be brief"), ChatMessage::new(Role::User, "hi")],
                tools: None,
                tool_choice: None,
            },
            params: GenParams { temperature: Some(0.0), seed: Some(-1), max_tokens: Some(5), ..GenParams::default() },
            extra: extra.as_object().cloned().unwrap_or_default(),
            obs: Default::default(),
            passthrough: false,
        }
    }

    #[test]
    fn maps_messages_and_sampling() {
        let g = to_generate_request(req(json!({}))).unwrap();
        let Prompt::Chat { messages, .. } = g.prompt else { panic!("chat expected") };
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(messages[1]["content"], "hi");
        assert_eq!(g.sampling.temperature, 0.0);
        assert_eq!(g.sampling.top_p, 1.0);
        assert_eq!(g.sampling.seed, Some(u64::MAX));
        assert_eq!(g.max_tokens, Some(5));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for extra in [
            json!({"response_format": {"type": "regex"}}),
            json!({"top_logprobs": 2}),
            json!({"logprobs": true, "top_logprobs": 21}),
            json!({"logit_bias": {"1": 5}}),
        ] {
            assert!(matches!(to_generate_request(req(extra)), Err(BackendError::InvalidRequest { .. })));
        }
        assert!(to_generate_request(req(json!({"response_format": {"type": "text"}, "logprobs": false}))).is_ok());
    }

    #[test]
    fn submit_errors_keep_blame() {
        let full = submit_error(SubmitError::QueueFull { retry_after: Duration::from_secs(2) });
        assert!(matches!(full, BackendError::Overloaded { .. }));
        let ctx = submit_error(SubmitError::ContextLengthExceeded { prompt_tokens: 10, max_tokens: 5, context: 12 });
        assert_eq!(ctx.blame(), ferrogate_core::Blame::Caller);
    }
}
