//! What ferrogate answers Ollama clients on `/api/chat` and `/api/generate`: one object when
//! not streaming, else one NDJSON line per piece, the last with `done: true`, `done_reason` and
//! the statistics (durations in nanoseconds, token counts).

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::request::ChatMessage;
use crate::openai::Usage;

/// A `/api/chat` answer or stream line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub model: String,
    /// RFC 3339, see [`rfc3339`].
    pub created_at: String,
    pub message: ChatMessage,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// A `/api/generate` answer or stream line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub model: String,
    pub created_at: String,
    pub response: String,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// The statistics of the final line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Nanoseconds from request to answer.
    pub total_duration: u64,
    /// Nanoseconds spent loading the model (0 when it was loaded).
    pub load_duration: u64,
    pub prompt_eval_count: u32,
    pub prompt_eval_duration: u64,
    pub eval_count: u32,
    pub eval_duration: u64,
}

/// Durations the edge measured, for [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Request received → last token.
    pub total: Duration,
    pub load: Duration,
    /// Request received → first token.
    pub prompt_eval: Duration,
    /// First token → last token.
    pub eval: Duration,
}

impl Stats {
    /// The statistics from the usage and timings; no usage counts as 0 tokens.
    pub fn new(usage: Option<&Usage>, t: &Timings) -> Self {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self {
            total_duration: nanos(t.total),
            load_duration: nanos(t.load),
            prompt_eval_count: usage.map_or(0, |u| u.prompt_tokens),
            prompt_eval_duration: nanos(t.prompt_eval),
            eval_count: usage.map_or(0, |u| u.completion_tokens),
            eval_duration: nanos(t.eval),
        }
    }
}

impl ChatResponse {
    /// The answer to a load (`done_reason: "load"`) or unload (`"unload"`) request.
    pub fn load(model: &str, created_at: String, unload: bool) -> Self {
        Self {
            model: model.to_owned(),
            created_at,
            message: ChatMessage { role: "assistant".to_owned(), ..ChatMessage::default() },
            done: true,
            done_reason: Some(if unload { "unload" } else { "load" }.to_owned()),
            stats: None,
        }
    }
}

impl GenerateResponse {
    /// The answer to a load or unload request.
    pub fn load(model: &str, created_at: String, unload: bool) -> Self {
        Self {
            model: model.to_owned(),
            created_at,
            response: String::new(),
            done: true,
            done_reason: Some(if unload { "unload" } else { "load" }.to_owned()),
            stats: None,
        }
    }
}

/// One NDJSON line: the value's JSON and `\n`.
pub fn ndjson_line<T: Serialize>(value: &T) -> Bytes {
    // Plain types with string keys: serializing can not fail; the fallback keeps the stream
    // line-shaped regardless.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| br#"{"error":"response encoding failed"}"#.to_vec());
    line.push(b'\n');
    Bytes::from(line)
}

/// `since_epoch` as RFC 3339 in UTC with microseconds (`2023-08-04T19:22:45.499127Z`), as
/// Ollama writes `created_at` (microseconds: every ISO 8601 parser takes six digits).
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    let rem = secs % 86_400;
    let micros = since_epoch.subsec_micros();
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The current time as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        // 2023-08-04T19:22:45.499127Z, the date of Ollama's documented examples.
        assert_eq!(rfc3339(Duration::new(1_691_176_965, 499_127_000)), "2023-08-04T19:22:45.499127Z");
        // A leap day and the end of a century leap year.
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(Duration::from_secs(978_307_199)), "2000-12-31T23:59:59.000000Z");
    }
}
