//! The cache key: SHA-256 over a canonical encoding of everything that changes the answer.
//!
//! Covered (version 1 of the encoding): the tenant, the deployment, every message (role, content
//! and its parts, name, tool calls, tool call id), `temperature`, `top_p`, the effective max
//! tokens (`max_completion_tokens`, else `max_tokens`), `stop` (as a list), `seed`, `n`, both
//! penalties, `top_k`, `min_p`, `repetition_penalty`, `tools`, `tool_choice`, and every other
//! field the client sent (`response_format`, `logit_bias`, `logprobs`, …) except the ones listed
//! in [`IGNORED_EXTRA`], which do not change the answer.
//! Not covered: `model` as the client wrote it (the deployment stands for it: aliases of one
//! deployment share entries), `stream` and `stream_options` (a cached answer is replayed either
//! way), `user`, `metadata`, `store`.
//!
//! Canonical: object keys are sorted at every depth and the encoding is compact JSON, so two
//! requests that differ only in key order or whitespace share a key. The tenant is part of the
//! hash, so tenants never read each other's entries even with identical requests.

use std::fmt;

use ferrogate_protocol::openai::ChatCompletionRequest;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

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
    messages: &'a [ferrogate_protocol::openai::ChatMessage],
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    stop: Option<Vec<String>>,
    seed: Option<i64>,
    n: Option<u32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    top_k: Option<i32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    tools: &'a Option<Value>,
    tool_choice: &'a Option<Value>,
    extra: Map<String, Value>,
}

/// The key of `req` for `tenant` (its id, or the anonymous owner's) on `deployment`.
pub fn cache_key(tenant: &str, deployment: &str, req: &ChatCompletionRequest) -> CacheKey {
    let extra = req.extra.iter().filter(|(k, _)| !IGNORED_EXTRA.contains(&k.as_str()));
    let material = Material {
        v: 1,
        tenant,
        deployment,
        messages: &req.messages,
        temperature: req.temperature,
        top_p: req.top_p,
        max_tokens: req.effective_max_tokens(),
        stop: req.stop.clone().map(ferrogate_protocol::openai::Stop::into_vec),
        seed: req.seed,
        n: req.n,
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        top_k: req.top_k,
        min_p: req.min_p,
        repetition_penalty: req.repetition_penalty,
        tools: &req.tools,
        tool_choice: &req.tool_choice,
        extra: extra.map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let value = serde_json::to_value(&material).unwrap_or(Value::Null);
    let mut hasher = Sha256::new();
    write_canonical(&value, &mut hasher);
    CacheKey(hasher.finalize().into())
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
            ("n", json!(1)),
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
        assert_eq!(with("model", json!("alias-of-dep")), k0, "the deployment stands for the model");
        // A single stop string and a one-element list ask for the same thing.
        assert_eq!(with("stop", json!("\n")), with("stop", json!(["\n"])));
        // Key order inside tools does not matter.
        let t1 = with("tools", json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]));
        let t2 = with("tools", json!([{"function": {"parameters": {}, "name": "f"}, "type": "function"}]));
        assert_eq!(t1, t2);
    }

    #[test]
    fn keys_show_as_hex() {
        let k = key_of(base());
        assert_eq!(k.to_hex().len(), 64);
        assert!(format!("{k:?}").starts_with("CacheKey("));
    }
}
