//! Property tests of the request decoders (issue 17 item 11; proptest stands in for cargo-fuzz,
//! which needs a nightly toolchain): the bodies of every front — OpenAI chat and legacy
//! completions, Anthropic Messages, Ollama chat and generate — as generated JSON (right and wrong
//! types, huge numbers, unknown fields) and then as mangled bytes (a BOM, truncation, flipped
//! bytes, invalid UTF-8, a duplicated key, 20,000 levels of nesting). Decoding never panics;
//! a body that decodes validates and converts without panicking, and it survives a round trip
//! (what the gateway forwards decodes to the same request).
//!
//! `PROPTEST_CASES` sets the cases per property (`make fuzz`: 100,000).

#![allow(clippy::unwrap_used, clippy::panic)]

mod strategies;

use ferrogate_protocol::anthropic::MessagesRequest;
use ferrogate_protocol::ollama::front;
use ferrogate_protocol::openai::shape::ShapeLimits;
use ferrogate_protocol::openai::{ChatCompletionRequest, CompletionRequest};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strategies::{Mangle, bytes_of, cases, mangle};

/// Decodes `bytes` as `T`, or `None`.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice::<T>(bytes).ok()
}

/// A request that passed validation survives a round trip: what the gateway forwards decodes
/// to the same request again.
fn round_trips<T>(req: &T) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let again = serde_json::to_vec(req).map_err(|e| TestCaseError::fail(format!("re-encoding failed: {e}")))?;
    let back: T = serde_json::from_slice(&again).map_err(|e| TestCaseError::fail(format!("round trip: {e}")))?;
    // serde_json's default float parsing may move a number by its last bit (its `float_roundtrip`
    // feature is off): numbers compare to 1e-12 relative, everything else exactly.
    let (a, b) = (serde_json::to_value(&back), serde_json::to_value(req));
    let (Ok(a), Ok(b)) = (a, b) else { return Err(TestCaseError::fail("not representable as JSON")) };
    prop_assert!(same(&a, &b), "round trip changed the request:\n{back:?}\n{req:?}");
    Ok(())
}

/// Equal JSON, floats within 1e-12 relative.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every decoder on the same bytes: none may panic, whichever front the body was meant for.
fn every_decoder(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(r) = decode::<ChatCompletionRequest>(bytes) {
        chat_checks(&r)?;
    }
    if let Some(r) = decode::<CompletionRequest>(bytes)
        && r.validate().is_ok()
    {
        let _ = r.prompt_text();
        round_trips(&r)?;
    }
    if let Some(r) = decode::<MessagesRequest>(bytes)
        && let Ok(chat) = r.to_chat_request()
    {
        prop_assert!(chat.validate().is_ok(), "{:?}", chat.validate());
        round_trips(&r)?;
    }
    if let Some(r) = decode::<front::ChatRequest>(bytes)
        && let Ok(chat) = r.to_chat_request()
    {
        prop_assert!(chat.validate().is_ok(), "{:?}", chat.validate());
    }
    if let Some(r) = decode::<front::GenerateRequest>(bytes) {
        let _ = r.to_openai();
    }
    Ok(())
}

fn chat_checks(r: &ChatCompletionRequest) -> Result<(), TestCaseError> {
    if r.validate().is_ok() {
        // The accepted request's own bounds hold as validation promises.
        prop_assert!(!r.messages.is_empty() && r.model.len() <= 256);
        let _ = r.check_shape(&ShapeLimits::default());
        let _ = r.check_shape(&ShapeLimits { max_messages: 1, max_message_bytes: 4 });
        round_trips(r)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn openai_chat_bodies_never_panic(body in strategies::openai_chat_request(), how in mangle()) {
        every_decoder(&bytes_of(&body, &how))?;
        if matches!(how, Mangle::None) {
            // Unmangled, the generated JSON decodes exactly when its typed fields have their types.
            let typed = serde_json::from_value::<ChatCompletionRequest>(body.clone());
            prop_assert_eq!(typed.is_ok(), decode::<ChatCompletionRequest>(&bytes_of(&body, &how)).is_some());
        }
    }

    #[test]
    fn openai_completion_bodies_never_panic(body in strategies::openai_completion_request(), how in mangle()) {
        every_decoder(&bytes_of(&body, &how))?;
    }

    #[test]
    fn anthropic_bodies_never_panic(body in strategies::anthropic_request(), how in mangle()) {
        every_decoder(&bytes_of(&body, &how))?;
    }

    #[test]
    fn ollama_bodies_never_panic(chat in strategies::ollama_chat_request(), generate in strategies::ollama_generate_request(), how in mangle()) {
        every_decoder(&bytes_of(&chat, &how))?;
        every_decoder(&bytes_of(&generate, &how))?;
    }

    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        every_decoder(&bytes)?;
    }
}

/// The nesting a client can send is bounded by the decoder, not by the thread's stack.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"a\":", "{\"messages\":["] {
        let body = open.repeat(200_000);
        every_decoder(body.as_bytes()).unwrap();
        assert!(serde_json::from_str::<ChatCompletionRequest>(&body).is_err());
    }
}
