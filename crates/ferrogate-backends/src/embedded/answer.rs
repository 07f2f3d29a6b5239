//! Engine events → the gateway's answer: a whole `Completion`, or stream events. Text passes
//! through, or (when the request offers tools) through the envelope parser into `tool_calls`;
//! log probabilities are collected (whole) or ride on the next delta (stream).

use ferrogate_core::{BackendError, Completion, StreamEvent};
use ferrogate_engine::grammar::{ToolChoice, ToolEvent, ToolParser};
use ferrogate_engine::{Finish, OutputFormat, TokenLogprob};
use ferrogate_protocol::openai::{FinishReason, Usage};
use serde_json::{Value, json};

use super::convert::usage_of;
use super::output;

type Item = Result<StreamEvent, BackendError>;

/// What one request's answer is being built from.
pub struct AnswerState {
    request_id: std::sync::Arc<str>,
    /// The envelope parser, when the request offers tools.
    parser: Option<ToolParser>,
    /// Log probabilities not yet attached to a delta (stream) or all of them (whole).
    logprobs: Vec<Value>,
    /// Generated text (whole answers only).
    text: String,
}

impl AnswerState {
    pub fn new(request_id: std::sync::Arc<str>, output: &OutputFormat) -> Self {
        let parser = match output {
            OutputFormat::Tools(spec) => Some(ToolParser::new(spec.choice != ToolChoice::Auto)),
            OutputFormat::Text | OutputFormat::JsonObject | OutputFormat::JsonSchema(_) => None,
        };
        Self { request_id, parser, logprobs: Vec::new(), text: String::new() }
    }

    pub fn logprob(&mut self, lp: &TokenLogprob) {
        self.logprobs.push(logprob_entry(lp));
    }

    /// Whole answers: text accumulates until `complete`.
    pub fn push_text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// The whole answer: text, or tool calls (`finish_reason: tool_calls`). An envelope cut
    /// short by max_tokens is returned as the text it is, with `length`.
    pub fn complete(mut self, f: &Finish) -> Result<Completion, BackendError> {
        let (finish_reason, usage) = usage_of(f);
        let logprobs = (!self.logprobs.is_empty()).then(|| std::mem::take(&mut self.logprobs));
        let text = std::mem::take(&mut self.text);
        let whole =
            |text, tool_calls| Completion { text, tool_calls, logprobs, finish_reason, usage: Some(usage), raw: None };
        let Some(p) = self.parser.as_mut() else { return Ok(whole(text, None)) };
        let mut events = p.feed(&text);
        match p.finish() {
            Ok(rest) => events.extend(rest),
            Err(_) if finish_reason == FinishReason::Length => return Ok(whole(text, None)),
            Err(e) => return Err(BackendError::Internal(e)),
        }
        let (text, deltas) = output::deltas(&self.request_id, events);
        let calls = output::whole_calls(&deltas);
        if calls.is_empty() {
            return Ok(whole(text, None));
        }
        let finish_reason = if finish_reason == FinishReason::Stop { FinishReason::ToolCalls } else { finish_reason };
        Ok(Completion { finish_reason, ..whole(text, Some(calls)) })
    }

    /// Streams: the delta(s) for newly generated text.
    pub fn stream_text(&mut self, text: String) -> Vec<Item> {
        match self.parser.as_mut() {
            None => self.delta(text, Vec::new()),
            Some(p) => {
                let events = p.feed(&text);
                self.deltas(events)
            }
        }
    }

    /// Streams: what the parser still holds (and unsent log probabilities), the finish reason
    /// and the usage.
    pub fn stream_end(&mut self, f: &Finish) -> Vec<Item> {
        let (mut reason, usage): (_, Usage) = usage_of(f);
        let mut out = Vec::new();
        if let Some(p) = self.parser.as_mut() {
            match p.finish() {
                Ok(rest) => out.extend(self.deltas(rest)),
                Err(_) if reason == FinishReason::Length => {}
                Err(e) => return vec![Err(BackendError::Internal(e))],
            }
        }
        if self.parser.as_ref().is_some_and(|p| p.calls() > 0) && reason == FinishReason::Stop {
            reason = FinishReason::ToolCalls;
        }
        if !self.logprobs.is_empty() {
            out.extend(self.delta(String::new(), Vec::new()));
        }
        out.extend([Ok(StreamEvent::Finish(reason)), Ok(StreamEvent::Usage(usage))]);
        out
    }

    fn deltas(&mut self, events: Vec<ToolEvent>) -> Vec<Item> {
        let (text, calls) = output::deltas(&self.request_id, events);
        if text.is_empty() && calls.is_empty() {
            return Vec::new();
        }
        self.delta(text, calls)
    }

    /// One delta carrying the pending log probabilities.
    fn delta(&mut self, text: String, calls: Vec<Value>) -> Vec<Item> {
        let logprobs = (!self.logprobs.is_empty()).then(|| std::mem::take(&mut self.logprobs));
        let tool_calls = (!calls.is_empty()).then_some(calls);
        vec![Ok(StreamEvent::Delta { text, tool_calls, logprobs })]
    }
}

/// One OpenAI `logprobs.content` entry.
fn logprob_entry(lp: &TokenLogprob) -> Value {
    let top: Vec<Value> = lp.top.iter().map(|(bytes, logprob)| token_value(bytes, *logprob)).collect();
    let mut entry = token_value(&lp.bytes, lp.logprob);
    entry["top_logprobs"] = Value::Array(top);
    entry
}

fn token_value(bytes: &[u8], logprob: f32) -> Value {
    json!({"token": String::from_utf8_lossy(bytes), "logprob": logprob, "bytes": bytes})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn logprob_entries_have_openai_shape() {
        let lp = TokenLogprob {
            bytes: b"Hi".to_vec(),
            logprob: -0.5,
            top: vec![(b"Hi".to_vec(), -0.5), (vec![0xC3], -2.0)],
        };
        let v = logprob_entry(&lp);
        assert_eq!(v["token"], "Hi");
        assert_eq!(v["bytes"], json!([72, 105]));
        assert_eq!(v["top_logprobs"][1]["bytes"], json!([195]));
        assert_eq!(v["top_logprobs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn streamed_logprobs_ride_on_the_next_delta_and_flush_at_the_end() {
        let mut st = AnswerState::new("r".into(), &OutputFormat::Text);
        st.logprob(&TokenLogprob { bytes: b"a".to_vec(), logprob: -1.0, top: vec![] });
        let items = st.stream_text("a".into());
        assert!(matches!(&items[0], Ok(StreamEvent::Delta { logprobs: Some(l), .. }) if l.len() == 1));
        st.logprob(&TokenLogprob { bytes: b"b".to_vec(), logprob: -1.0, top: vec![] });
        let finish = Finish {
            reason: ferrogate_engine::FinishReason::Stop,
            prompt_tokens: 1,
            cached_tokens: 0,
            completion_tokens: 2,
        };
        let end = st.stream_end(&finish);
        assert!(matches!(&end[0], Ok(StreamEvent::Delta { logprobs: Some(l), .. }) if l.len() == 1));
        assert_eq!(end.len(), 3);
    }
}
