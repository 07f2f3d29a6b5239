//! A fake Ollama server: the [`FakeUpstream`] machinery (scripted replies, faults, recorded
//! requests, disconnect notices) with Ollama's routes and reply shapes — `/api/chat` and
//! `/api/generate` (NDJSON streaming or whole, by the request's `stream` flag, default true),
//! `/api/tags`, `/api/ps`. Base URL: `url("")`.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::upstream::{DEFAULT_PIECES, DEFAULT_TEXT, DEFAULT_USAGE, FakeUpstream, Recorded, Reply, StreamReply};

/// The model `/api/tags` lists by default.
pub const DEFAULT_MODEL: &str = "llama3.2:latest";

impl FakeUpstream {
    /// An Ollama fake: chat and generate answer "Hello, world!" (four NDJSON lines and a done
    /// line with counts 5 and 4 when streamed), `/api/tags` lists [`DEFAULT_MODEL`], `/api/ps`
    /// lists nothing (no model loaded).
    pub async fn ollama() -> anyhow::Result<Self> {
        let fake = Self::start().await?;
        fake.on("/api/chat", Reply::dynamic(|r| default_reply(r, Kind::Chat)));
        fake.on("/api/generate", Reply::dynamic(|r| default_reply(r, Kind::Generate)));
        fake.on("/api/tags", tags(&[DEFAULT_MODEL]));
        fake.on("/api/ps", ps(&[]));
        Ok(fake)
    }
}

/// Which endpoint a line belongs to: chat lines carry `message`, generate lines `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Generate,
}

fn default_reply(r: &Recorded, kind: Kind) -> Reply {
    if r.wants_stream(true) {
        ndjson(kind, &DEFAULT_PIECES, "stop", Some(DEFAULT_USAGE)).into()
    } else {
        whole(kind, DEFAULT_TEXT, "stop", Some(DEFAULT_USAGE))
    }
}

/// One line's JSON: content plus the `done` fields when `done` is given.
pub fn line(kind: Kind, text: &str, done: Option<(&str, Option<(u32, u32)>)>) -> Value {
    let mut v = json!({"model": DEFAULT_MODEL, "created_at": "2025-01-01T00:00:00Z", "done": done.is_some()});
    match kind {
        Kind::Chat => v["message"] = json!({"role": "assistant", "content": text}),
        Kind::Generate => v["response"] = json!(text),
    }
    if let Some((reason, counts)) = done {
        v["done_reason"] = json!(reason);
        if let Some((p, e)) = counts {
            v["prompt_eval_count"] = json!(p);
            v["eval_count"] = json!(e);
        }
    }
    v
}

/// `<json>\n`
pub fn ndjson_line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

/// A streamed answer: one line per piece, then the done line (`done_reason`, counts).
/// Frames: `pieces.len() + 1`.
pub fn ndjson(kind: Kind, pieces: &[&str], done_reason: &str, counts: Option<(u32, u32)>) -> StreamReply {
    let mut frames: Vec<Bytes> = pieces.iter().map(|p| ndjson_line(&line(kind, p, None))).collect();
    frames.push(ndjson_line(&line(kind, "", Some((done_reason, counts)))));
    StreamReply::new("application/x-ndjson", frames)
}

/// A streamed answer whose line after the first `k` pieces is `{"error": message}`.
pub fn ndjson_error_after(kind: Kind, pieces: &[&str], k: usize, message: &str) -> StreamReply {
    let mut frames: Vec<Bytes> = pieces.iter().take(k).map(|p| ndjson_line(&line(kind, p, None))).collect();
    frames.push(ndjson_line(&json!({"error": message})));
    StreamReply::new("application/x-ndjson", frames)
}

/// A whole (non-streamed) answer.
pub fn whole(kind: Kind, text: &str, done_reason: &str, counts: Option<(u32, u32)>) -> Reply {
    Reply::json(200, &line(kind, text, Some((done_reason, counts))))
}

/// A chat answer that calls a tool.
pub fn tool_call(name: &str, arguments: &Value) -> Reply {
    let mut v = line(Kind::Chat, "", Some(("stop", Some(DEFAULT_USAGE))));
    v["message"]["tool_calls"] = json!([{"function": {"name": name, "arguments": arguments}}]);
    Reply::json(200, &v)
}

fn model_list(names: &[&str]) -> Reply {
    let models: Vec<Value> =
        names.iter().map(|n| json!({"name": n, "model": n, "size": 1, "digest": "sha256:0"})).collect();
    Reply::json(200, &json!({"models": models}))
}

/// `GET /api/tags`: pulled models.
pub fn tags(names: &[&str]) -> Reply {
    model_list(names)
}

/// `GET /api/ps`: loaded models.
pub fn ps(names: &[&str]) -> Reply {
    model_list(names)
}

/// An HTTP error with Ollama's `{"error": "…"}` body.
pub fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, &json!({"error": message}))
}
