//! The cache key: SHA-256 over a canonical encoding of everything that changes the answer.
//!
//! Covered (version 2 of the encoding): the tenant, the deployment, every message (role, content
//! and its parts, name, tool calls, tool call id), `temperature`, `top_p`, the effective max
//! tokens (`max_completion_tokens`, else `max_tokens`; after caps when keyed from a planned
//! request), `stop` (as a list), `seed`, both penalties, `top_k`, `min_p`,
//! `repetition_penalty`, `tools`, `tool_choice`, and every other
//! field the client sent (`response_format`, `logit_bias`, `logprobs`, …) except the ones listed
//! in [`IGNORED_EXTRA`], which do not change the answer.
//! Not covered: `model` as the client wrote it (the deployment stands for it: aliases of one
//! deployment share entries), `stream` and `stream_options` (a cached answer is replayed either
//! way), `user`, `metadata`, `store`, and `n` (only `n` = 1 is served, so it changes nothing).
//!
//! Two ways in, one encoding ([`KeyParts`]): [`cache_key`] from a chat request as the client sent
//! it, [`KeyParts::of_planned`] from the [`InferenceRequest`] the plan stage built (what the
//! gateway does: no copy of the request, and nothing at all for a deployment that does not cache).
//!
//! Canonical: object keys are sorted at every depth and the encoding is compact JSON, so two
//! requests that differ only in key order or whitespace share a key. The tenant is part of the
//! hash, so tenants never read each other's entries even with identical requests.

use std::fmt;

use ferrogate_protocol::openai::{ChatCompletionRequest, ChatMessage};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::backend::{InferenceRequest, Input};

/// Request fields that never change the answer, left out of the key.
pub const IGNORED_EXTRA: &[&str] =
    &["metadata", "store", "user", "safety_identifier", "prompt_cache_key", "service_tier", "stream_options"];

/// A cache key: the SHA-256 digest. Shown (and stored in Redis) as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..16])
    }
}

/// What the key is computed over (field names are part of the encoding: renaming one changes
/// every key, so bump `v` with any change).
#[derive(Serialize)]
struct Material<'a> {
    v: u32,
    tenant: &'a str,
    deployment: &'a str,
    #[serde(flatten)]
    parts: &'a KeyParts<'a>,
    extra: Map<String, Value>,
}

/// Everything of a request that goes into its key, borrowed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyParts<'a> {
    messages: &'a [ChatMessage],
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    /// `None` for no stop sequence (absent or an empty list).
    stop: Option<Vec<String>>,
    seed: Option<i64>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    tools: &'a Option<Value>,
    tool_choice: &'a Option<Value>,
    #[serde(skip)]
    extra: &'a Map<String, Value>,
}

impl<'a> KeyParts<'a> {
    /// The parts of a chat request as the client sent it.
    pub fn of_chat(req: &'a ChatCompletionRequest) -> Self {
        let stop = req.stop.clone().map(ferrogate_protocol::openai::Stop::into_vec).filter(|s| !s.is_empty());
        Self {
            messages: &req.messages,
            temperature: req.temperature,
            top_p: req.top_p,
            max_tokens: req.effective_max_tokens(),
            stop,
            seed: req.seed,
            frequency_penalty: req.frequency_penalty,
            presence_penalty: req.presence_penalty,
            top_k: req.top_k,
            min_p: req.min_p,
            repetition_penalty: req.repetition_penalty,
            tools: &req.tools,
            tool_choice: &req.tool_choice,
            extra: &req.extra,
        }
    }

    /// The parts of a planned chat request (its `max_tokens` already capped); `None` for a raw
    /// text prompt, which is not cached.
    pub fn of_planned(req: &'a InferenceRequest) -> Option<Self> {
        let Input::Chat { messages, tools, tool_choice } = &req.input else { return None };
        let p = &req.params;
        Some(Self {
            messages,
            temperature: p.temperature,
            top_p: p.top_p,
            max_tokens: p.max_tokens,
            stop: (!p.stop.is_empty()).then(|| p.stop.clone()),
            seed: p.seed,
            frequency_penalty: p.frequency_penalty,
            presence_penalty: p.presence_penalty,
            top_k: p.top_k,
            min_p: p.min_p,
            repetition_penalty: p.repetition_penalty,
            tools,
            tool_choice,
            extra: &req.extra,
        })
    }

    /// The key of these parts for `tenant` (its id, or the anonymous owner's) on `deployment`.
    pub fn key(&self, tenant: &str, deployment: &str) -> CacheKey {
        let extra = self.extra.iter().filter(|(k, _)| !IGNORED_EXTRA.contains(&k.as_str()));
        let material = Material {
            v: 2,
            tenant,
            deployment,
            parts: self,
            extra: extra.map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let value = serde_json::to_value(&material).unwrap_or(Value::Null);
        let mut hasher = Sha256::new();
        write_canonical(&value, &mut hasher);
        CacheKey(hasher.finalize().into())
    }
}

/// The key of `req` for `tenant` (its id, or the anonymous owner's) on `deployment`.
pub fn cache_key(tenant: &str, deployment: &str, req: &ChatCompletionRequest) -> CacheKey {
    KeyParts::of_chat(req).key(tenant, deployment)
}

/// Compact JSON with object keys sorted at every depth (independent of serde_json's
/// `preserve_order` feature, which another crate in the build may turn on).
fn write_canonical(v: &Value, h: &mut Sha256) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                h.update(Value::String(k.clone()).to_string().as_bytes());
                h.update(b":");
                if let Some(inner) = m.get(k) {
                    write_canonical(inner, h);
                }
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for (i, inner) in a.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                write_canonical(inner, h);
            }
            h.update(b"]");
        }
        scalar => h.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0})
    }

    fn key_of(v: Value) -> CacheKey {
        cache_key("tenant-a", "dep", &req(v))
    }

    fn with(k: &str, v: Value) -> CacheKey {
        let mut b = base();
        b[k] = v;
        key_of(b)
    }

    #[test]
    fn every_field_that_changes_the_answer_changes_the_key() {
        let k0 = key_of(base());
        let variants = [
            ("messages", json!([{"role": "user", "content": "hi!"}])),
            ("messages", json!([{"role": "system", "content": "hi"}])),
            ("messages", json!([{"role": "user", "content": "hi", "name": "bob"}])),
            ("temperature", json!(0.5)),
            ("top_p", json!(0.9)),
            ("max_tokens", json!(10)),
            ("max_completion_tokens", json!(11)),
            ("stop", json!(["\n"])),
            ("seed", json!(7)),
            ("frequency_penalty", json!(0.1)),
            ("presence_penalty", json!(0.1)),
            ("top_k", json!(40)),
            ("min_p", json!(0.05)),
            ("repetition_penalty", json!(1.1)),
            ("tools", json!([{"type": "function", "function": {"name": "f"}}])),
            ("tool_choice", json!("none")),
            ("response_format", json!({"type": "json_object"})),
            ("logit_bias", json!({"50256": -100})),
            ("logprobs", json!(true)),
        ];
        let mut seen = std::collections::HashSet::from([k0]);
        for (field, value) in variants {
            let k = with(field, value);
            assert!(seen.insert(k), "{field} did not change the key (or collided)");
        }
    }

    #[test]
    fn tenants_and_deployments_never_share_a_key() {
        let r = req(base());
        let a = cache_key("tenant-a", "dep", &r);
        assert_ne!(a, cache_key("tenant-b", "dep", &r));
        assert_ne!(a, cache_key("tenant-a", "dep2", &r));
        // No ambiguity at the field boundary.
        assert_ne!(cache_key("ab", "c", &r), cache_key("a", "bc", &r));
    }

    #[test]
    fn what_does_not_change_the_answer_keeps_the_key() {
        let k0 = key_of(base());
        assert_eq!(with("stream", json!(true)), k0);
        assert_eq!(with("user", json!("u-1")), k0);
        assert_eq!(with("metadata", json!({"a": "b"})), k0);
        assert_eq!(with("n", json!(1)), k0, "n = 1 is the only n served");
        assert_eq!(with("stop", json!([])), k0, "no stop sequence either way");
        assert_eq!(with("model", json!("alias-of-dep")), k0, "the deployment stands for the model");
        // A single stop string and a one-element list ask for the same thing.
        assert_eq!(with("stop", json!("\n")), with("stop", json!(["\n"])));
        // Key order inside tools does not matter.
        let t1 = with("tools", json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]));
        let t2 = with("tools", json!([{"function": {"parameters": {}, "name": "f"}, "type": "function"}]));
        assert_eq!(t1, t2);
    }

    /// The gateway keys the planned request: the same key as the request it came from, with the
    /// capped `max_tokens`.
    #[test]
    fn a_planned_request_has_its_chat_request_key() {
        let mut v = base();
        v["stop"] = json!("\n");
        v["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        v["response_format"] = json!({"type": "json_object"});
        v["max_tokens"] = json!(64);
        let chat = req(v);
        let planned = InferenceRequest {
            request_id: "r".into(),
            model: String::new(),
            input: Input::Chat { messages: chat.messages.clone(), tools: chat.tools.clone(), tool_choice: None },
            params: crate::backend::GenParams {
                temperature: Some(0.0),
                max_tokens: Some(64),
                stop: vec!["\n".into()],
                ..Default::default()
            },
            extra: chat.extra.clone(),
            obs: Default::default(),
            passthrough: false,
        };
        let k = KeyParts::of_planned(&planned).unwrap().key("t", "d");
        assert_eq!(k, cache_key("t", "d", &chat));
        let text = InferenceRequest { input: Input::Text("x".into()), ..planned };
        assert!(KeyParts::of_planned(&text).is_none(), "raw prompts are not cached");
    }

    #[test]
    fn keys_show_as_hex() {
        let k = key_of(base());
        assert_eq!(k.to_hex().len(), 64);
        assert!(format!("{k:?}").starts_with("CacheKey("));
    }
}
