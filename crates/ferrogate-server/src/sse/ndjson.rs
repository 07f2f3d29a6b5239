//! Ollama's stream framing (`application/x-ndjson`): each backend event becomes an OpenAI chunk
//! (the pivot), which the protocol crate's [`NdjsonTranslator`] turns into Ollama's lines — text
//! pieces, the gathered tool calls, the `done: true` line with the statistics; a failure after
//! the first byte is one `{"error": …}` line. NDJSON has no keep-alive line.

use std::time::Instant;

use bytes::Bytes;
use ferrogate_protocol::ollama::front::{Endpoint, Line, NdjsonTranslator, Timings, now_rfc3339};
use ferrogate_protocol::openai::{Delta, FinishReason, Usage, unix_now};
use serde_json::Value;

use super::Frames;
use super::openai::chat_chunk;
use crate::error::ApiError;

/// The frames of one Ollama `/api/chat` or `/api/generate` stream.
pub struct NdjsonFrames {
    translator: NdjsonTranslator,
    created: u64,
    model: String,
    /// When the request arrived and when its first token did, for the final line's durations.
    started: Instant,
    first_token: Instant,
}

impl NdjsonFrames {
    pub fn new(endpoint: Endpoint, model: &str, started: Instant) -> Self {
        Self {
            translator: NdjsonTranslator::new(endpoint, model),
            created: unix_now(),
            model: model.to_owned(),
            started,
            first_token: Instant::now(),
        }
    }

    fn push(&mut self, delta: Delta, finish: Option<FinishReason>) -> Vec<Bytes> {
        let chunk = chat_chunk("", self.created, &self.model, delta, finish, false);
        lines(self.translator.push(&chunk, &now_rfc3339()))
    }
}

fn lines(lines: Vec<Line>) -> Vec<Bytes> {
    lines.iter().map(Line::to_bytes).collect()
}

/// The durations of an answer that started at `started` and whose first token came at `first`.
pub fn timings(started: Instant, first: Instant) -> Timings {
    let now = Instant::now();
    Timings {
        total: now.duration_since(started),
        load: std::time::Duration::ZERO,
        prompt_eval: first.duration_since(started),
        eval: now.duration_since(first),
    }
}

impl Frames for NdjsonFrames {
    fn content_type(&self) -> &'static str {
        "application/x-ndjson"
    }

    fn opening(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn delta(&mut self, text: String, tool_calls: Option<Vec<Value>>) -> Vec<Bytes> {
        self.push(Delta { role: None, content: (!text.is_empty()).then_some(text), tool_calls }, None)
    }

    fn finish(&mut self, reason: FinishReason) -> Vec<Bytes> {
        self.push(Delta::default(), Some(reason))
    }

    fn close(&mut self, usage: Usage) -> Vec<Bytes> {
        self.translator.fill_usage(usage);
        let t = timings(self.started, self.first_token);
        lines(self.translator.finish(&now_rfc3339(), &t))
    }

    fn fail(&mut self, e: &ApiError) -> Vec<Bytes> {
        lines(self.translator.fail(e.message.clone()))
    }

    fn keepalive(&self) -> Option<Bytes> {
        None
    }
}
