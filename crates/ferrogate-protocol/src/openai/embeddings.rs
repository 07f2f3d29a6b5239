//! `POST /v1/embeddings`: the request (`input` as a string, strings, token ids or lists of
//! token ids; `encoding_format`; `dimensions`) and the answer (`object: "list"` of
//! `object: "embedding"` items with usage).
//!
//! Invariant: [`EmbeddingRequest::validate`] accepts only what every backend can be asked —
//! non-empty inputs, at most [`MAX_INPUTS`] of them, a positive `dimensions`, no unknown field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{InvalidParam, shape};

/// OpenAI's own limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields OpenAI does not define: refused by `validate`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: OpenAI accepts four shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<i64>),
    ManyTokens(Vec<Vec<i64>>),
}

/// One input after shape normalization.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingItem {
    Text(String),
    Tokens(Vec<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    Float,
    /// Little-endian f32 bytes, base64 (the official SDKs' default).
    Base64,
}

impl EmbeddingRequest {
    pub fn validate(&self) -> Result<(), InvalidParam> {
        shape::check_model(&self.model)?;
        if let Some(k) = self.extra.keys().next() {
            let k = shape::clip(k);
            return Err(InvalidParam::new(k.clone(), format!("Unrecognized request argument supplied: '{k}'")));
        }
        let n = self.input.len();
        if n == 0 {
            return Err(InvalidParam::new("input", "'input' must not be empty"));
        }
        if n > MAX_INPUTS {
            return Err(InvalidParam::new("input", format!("'input' has {n} items; at most {MAX_INPUTS} are allowed")));
        }
        if let Some(i) = self.input.empty_item() {
            return Err(InvalidParam::new(format!("input[{i}]"), "an input must not be empty"));
        }
        if self.dimensions == Some(0) {
            return Err(InvalidParam::new("dimensions", "'dimensions' must be at least 1"));
        }
        Ok(())
    }

    /// Whether vectors go back as base64 (else JSON floats).
    pub fn wants_base64(&self) -> bool {
        self.encoding_format == Some(EncodingFormat::Base64)
    }
}

impl EmbeddingInput {
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::One(_) => 1,
            EmbeddingInput::Many(v) => v.len(),
            EmbeddingInput::Tokens(v) => usize::from(!v.is_empty()),
            EmbeddingInput::ManyTokens(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn empty_item(&self) -> Option<usize> {
        match self {
            EmbeddingInput::One(s) => s.is_empty().then_some(0),
            EmbeddingInput::Many(v) => v.iter().position(String::is_empty),
            EmbeddingInput::Tokens(_) => None,
            EmbeddingInput::ManyTokens(v) => v.iter().position(Vec::is_empty),
        }
    }

    /// The inputs, in order.
    pub fn into_items(self) -> Vec<EmbeddingItem> {
        match self {
            EmbeddingInput::One(s) => vec![EmbeddingItem::Text(s)],
            EmbeddingInput::Many(v) => v.into_iter().map(EmbeddingItem::Text).collect(),
            EmbeddingInput::Tokens(v) if v.is_empty() => Vec::new(),
            EmbeddingInput::Tokens(v) => vec![EmbeddingItem::Tokens(v)],
            EmbeddingInput::ManyTokens(v) => v.into_iter().map(EmbeddingItem::Tokens).collect(),
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    #[serde(default)]
    pub object: String,
    pub data: Vec<Embedding>,
    #[serde(default)]
    pub model: String,
    /// Upstreams that report none are counted locally (`usage_reported`).
    #[serde(default)]
    pub usage: Option<EmbeddingUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    #[serde(default)]
    pub object: String,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

impl EmbeddingResponse {
    /// `vectors` in input order, as the response's `data`.
    pub fn new(model: String, vectors: Vec<EmbeddingVector>, prompt_tokens: u32) -> Self {
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, embedding)| Embedding { object: "embedding".into(), index, embedding })
            .collect();
        Self {
            object: "list".into(),
            data,
            model,
            usage: Some(EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens }),
        }
    }

    /// An upstream's answer as float vectors in input order (`data` sorted by `index`); `None`
    /// when an item is not a float vector or the indices are not 0..n.
    pub fn float_vectors(mut self) -> Option<Vec<Vec<f32>>> {
        self.data.sort_by_key(|e| e.index);
        if self.data.iter().enumerate().any(|(i, e)| e.index != i) {
            return None;
        }
        self.data
            .into_iter()
            .map(|e| match e.embedding {
                EmbeddingVector::Float(v) => Some(v),
                EmbeddingVector::Base64(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn req(v: Value) -> Result<EmbeddingRequest, String> {
        let r: EmbeddingRequest = serde_json::from_value(v).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| format!("{}: {}", e.param, e.message))?;
        Ok(r)
    }

    #[test]
    fn every_input_shape() {
        let items = |v| req(json!({"model": "m", "input": v})).unwrap().input.into_items();
        assert_eq!(items(json!("a")), vec![EmbeddingItem::Text("a".into())]);
        assert_eq!(items(json!(["a", "b"])).len(), 2);
        assert_eq!(items(json!([1, 2, 3])), vec![EmbeddingItem::Tokens(vec![1, 2, 3])]);
        assert_eq!(items(json!([[1], [2, 3]])).len(), 2);
    }

    #[test]
    fn refusals_name_the_param() {
        let e = |v| req(v).unwrap_err();
        assert!(e(json!({"model": "m", "input": []})).starts_with("input:"));
        assert!(e(json!({"model": "m", "input": ""})).starts_with("input[0]:"));
        assert!(e(json!({"model": "m", "input": ["a", ""]})).starts_with("input[1]:"));
        assert!(e(json!({"model": "m", "input": [[1], []]})).starts_with("input[1]:"));
        assert!(e(json!({"model": "m", "input": "a", "dimensions": 0})).starts_with("dimensions:"));
        assert!(e(json!({"model": "m", "input": "a", "foo": 1})).starts_with("foo:"));
        assert!(e(json!({"model": "m", "input": "a", "encoding_format": "hex"})).contains("variant"));
        assert!(e(json!({"model": "m", "input": [1, "a"]})).contains("did not match"));
        let many: Vec<String> = (0..=MAX_INPUTS).map(|i| i.to_string()).collect();
        assert!(e(json!({"model": "m", "input": many})).contains("at most 2048"));
    }

    #[test]
    fn response_shape_and_upstream_order() {
        let r = EmbeddingResponse::new("m".into(), vec![EmbeddingVector::Float(vec![0.5])], 3);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0], json!({"object": "embedding", "index": 0, "embedding": [0.5]}));
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        let up: EmbeddingResponse = serde_json::from_value(json!({
            "object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2},
            "data": [{"object": "embedding", "index": 1, "embedding": [2.0]},
                     {"object": "embedding", "index": 0, "embedding": [1.0]}]
        }))
        .unwrap();
        assert_eq!(up.float_vectors().unwrap(), vec![vec![1.0], vec![2.0]]);
    }
}
