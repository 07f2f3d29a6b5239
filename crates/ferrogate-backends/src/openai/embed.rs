//! Embeddings over an OpenAI-compatible API (`POST {base_url}/embeddings`): the request body and
//! the answer's parsing, pure functions. Vectors are asked for as floats whatever the client
//! wants (the gateway encodes base64 itself): every compatible server speaks floats.

use ferrogate_core::{BackendError, EmbedItem, EmbedOutput, EmbedRequest};
use ferrogate_protocol::openai::embeddings::EmbeddingResponse;
use serde_json::{Value, json};

/// The upstream request body.
pub(crate) fn body(req: &EmbedRequest) -> Value {
    let input: Vec<Value> = req
        .inputs
        .iter()
        .map(|i| match i {
            EmbedItem::Text(t) => Value::from(t.as_str()),
            EmbedItem::Tokens(ids) => Value::from(ids.clone()),
        })
        .collect();
    let mut body = json!({"model": req.model, "input": input, "encoding_format": "float"});
    if let Some(d) = req.dimensions {
        body["dimensions"] = d.into();
    }
    if let Some(u) = &req.user {
        body["user"] = u.as_str().into();
    }
    body
}

/// The upstream's answer: exactly one float vector per input.
pub(crate) fn parse(bytes: &[u8], inputs: usize) -> Result<EmbedOutput, BackendError> {
    let resp: EmbeddingResponse = serde_json::from_slice(bytes)
        .map_err(|e| BackendError::Protocol(format!("the embeddings response is not valid: {e}")))?;
    let prompt_tokens = resp.usage.map(|u| u.prompt_tokens);
    let vectors = resp
        .float_vectors()
        .ok_or_else(|| BackendError::Protocol("the embeddings response has missing or non-float vectors".into()))?;
    if vectors.len() != inputs {
        return Err(BackendError::Protocol(format!("{} vectors for {inputs} inputs", vectors.len())));
    }
    Ok(EmbedOutput { vectors, prompt_tokens })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(inputs: Vec<EmbedItem>) -> EmbedRequest {
        EmbedRequest { request_id: "r".into(), model: "up".into(), inputs, dimensions: Some(8), user: None }
    }

    #[test]
    fn body_carries_texts_or_token_lists() {
        let b = body(&req(vec![EmbedItem::Text("a".into()), EmbedItem::Text("b".into())]));
        assert_eq!(b, json!({"model": "up", "input": ["a", "b"], "encoding_format": "float", "dimensions": 8}));
        let b = body(&req(vec![EmbedItem::Tokens(vec![1, 2])]));
        assert_eq!(b["input"], json!([[1, 2]]));
    }

    #[test]
    fn parse_checks_the_count() {
        let ok = br#"{"data":[{"index":0,"embedding":[0.25]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(parse(ok, 1).unwrap(), EmbedOutput { vectors: vec![vec![0.25]], prompt_tokens: Some(4) });
        assert!(matches!(parse(ok, 2), Err(BackendError::Protocol(_))));
        assert!(matches!(parse(b"{}", 1), Err(BackendError::Protocol(_))));
        let no_usage = br#"{"data":[{"index":0,"embedding":[1]}]}"#;
        assert_eq!(parse(no_usage, 1).unwrap().prompt_tokens, None);
    }
}
