//! Embeddings over Ollama's native API (`POST /api/embed`): the request body and the answer's
//! parsing, pure functions. Ollama takes text only; an over-long input is refused
//! (`truncate: false`) as OpenAI does, rather than cut silently.

use ferrogate_core::{BackendError, EmbedItem, EmbedOutput, EmbedRequest};
use ferrogate_protocol::ollama::front::EmbedResponse;
use serde_json::{Value, json};

pub(crate) const PATH: &str = "/api/embed";

/// The upstream request body; token-id inputs are refused (Ollama has no such input).
pub(crate) fn body(req: &EmbedRequest, keep_alive: Option<&Value>) -> Result<Value, BackendError> {
    let input = req
        .inputs
        .iter()
        .map(|i| match i {
            EmbedItem::Text(t) => Ok(Value::from(t.as_str())),
            EmbedItem::Tokens(_) => Err(BackendError::InvalidRequest {
                param: Some("input".into()),
                message: "this model is served by Ollama, which embeds text only (not token ids)".into(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = json!({"model": req.model, "input": input, "truncate": false});
    if let Some(d) = req.dimensions {
        body["dimensions"] = d.into();
    }
    if let Some(k) = keep_alive {
        body["keep_alive"] = k.clone();
    }
    Ok(body)
}

/// The upstream's answer: exactly one vector per input.
pub(crate) fn parse(bytes: &[u8], inputs: usize) -> Result<EmbedOutput, BackendError> {
    let resp: EmbedResponse = serde_json::from_slice(bytes)
        .map_err(|e| BackendError::Protocol(format!("the /api/embed response is not valid: {e}")))?;
    if resp.embeddings.len() != inputs {
        return Err(BackendError::Protocol(format!("{} vectors for {inputs} inputs", resp.embeddings.len())));
    }
    Ok(EmbedOutput { vectors: resp.embeddings, prompt_tokens: resp.prompt_eval_count })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn text_only_and_counted() {
        let mut req = EmbedRequest {
            request_id: "r".into(),
            model: "all-minilm".into(),
            inputs: vec![EmbedItem::Text("a".into())],
            dimensions: None,
            user: None,
        };
        assert_eq!(body(&req, None).unwrap(), json!({"model": "all-minilm", "input": ["a"], "truncate": false}));
        req.inputs.push(EmbedItem::Tokens(vec![1]));
        assert!(matches!(body(&req, None), Err(BackendError::InvalidRequest { .. })));
        let out = parse(br#"{"model":"m","embeddings":[[0.5,0.5]],"prompt_eval_count":3}"#, 1).unwrap();
        assert_eq!(out, EmbedOutput { vectors: vec![vec![0.5, 0.5]], prompt_tokens: Some(3) });
        assert!(parse(br#"{"model":"m","embeddings":[]}"#, 1).is_err());
    }
}
