//! A cached answer: enough to answer again as JSON or replay as a stream.

use ferrogate_protocol::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta, FinishReason, Role, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One cached completion. Field names are short: entries are stored serialized (Redis).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedCompletion {
    /// The model that answered (the response's `model`).
    #[serde(rename = "m")]
    pub model: String,
    /// The answer's text.
    #[serde(rename = "t")]
    pub text: String,
    /// Tool calls, as the upstream returned them.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// Why generation ended.
    #[serde(rename = "f")]
    pub finish_reason: FinishReason,
    /// The usage of the original computation (a hit reports it, flagged as cached by the edge).
    #[serde(rename = "u")]
    pub usage: Usage,
}

impl CachedCompletion {
    /// The first choice of a completion; `None` when it has none (nothing worth caching).
    pub fn from_completion(c: &ChatCompletion) -> Option<Self> {
        let choice = c.choices.first()?;
        Some(Self {
            model: c.model.clone(),
            text: choice.message.content.clone().unwrap_or_default(),
            tool_calls: choice.message.tool_calls.clone(),
            finish_reason: choice.finish_reason.unwrap_or(FinishReason::Stop),
            usage: c.usage,
        })
    }

    /// About how many bytes the entry holds (the in-process cache's weight).
    pub fn weight(&self) -> u32 {
        let calls = self.tool_calls.as_ref().map_or(0, |c| c.iter().map(|v| v.to_string().len()).sum());
        u32::try_from(64 + self.model.len() + self.text.len() + calls).unwrap_or(u32::MAX)
    }

    /// The answer as a completion with a fresh `id` and `created`.
    pub fn to_completion(&self, id: &str, created: u64) -> ChatCompletion {
        let message = AssistantMessage {
            role: Role::Assistant,
            content: Some(self.text.clone()),
            tool_calls: self.tool_calls.clone(),
            refusal: None,
        };
        ChatCompletion {
            id: id.to_owned(),
            object: "chat.completion".into(),
            created,
            model: self.model.clone(),
            choices: vec![ChatChoice { index: 0, message, logprobs: None, finish_reason: Some(self.finish_reason) }],
            usage: self.usage,
            system_fingerprint: None,
        }
    }

    /// The answer as stream chunks: the role, the text, the tool calls, the finish reason, and
    /// (when asked for) a final usage chunk.
    pub fn to_chunks(&self, id: &str, created: u64, include_usage: bool) -> Vec<ChatCompletionChunk> {
        let chunk = |delta: Delta, finish: Option<FinishReason>| ChatCompletionChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".into(),
            created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: finish }],
            usage: include_usage.then_some(None),
            system_fingerprint: None,
        };
        let mut chunks = vec![chunk(Delta { role: Some(Role::Assistant), ..Delta::default() }, None)];
        if !self.text.is_empty() {
            chunks.push(chunk(Delta { content: Some(self.text.clone()), ..Delta::default() }, None));
        }
        if let Some(calls) = &self.tool_calls {
            chunks.push(chunk(Delta { tool_calls: Some(calls.clone()), ..Delta::default() }, None));
        }
        chunks.push(chunk(Delta::default(), Some(self.finish_reason)));
        if include_usage {
            let mut last = chunk(Delta::default(), None);
            last.choices.clear();
            last.usage = Some(Some(self.usage));
            chunks.push(last);
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn completion() -> ChatCompletion {
        serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "smollm2",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        }))
        .unwrap()
    }

    #[test]
    fn a_completion_round_trips_through_the_entry() {
        let entry = CachedCompletion::from_completion(&completion()).unwrap();
        let again = entry.to_completion("chatcmpl-2", 5);
        assert_eq!(again.choices[0].message.content.as_deref(), Some("Paris."));
        assert_eq!((again.id.as_str(), again.created, again.usage), ("chatcmpl-2", 5, completion().usage));
        let stored = serde_json::to_string(&entry).unwrap();
        assert!(stored.len() < 120, "compact: {stored}");
        assert_eq!(serde_json::from_str::<CachedCompletion>(&stored).unwrap(), entry);
    }

    #[test]
    fn a_replayed_stream_carries_the_text_the_finish_and_the_usage() {
        let entry = CachedCompletion::from_completion(&completion()).unwrap();
        let chunks = entry.to_chunks("chatcmpl-2", 5, true);
        let text: String = chunks.iter().filter_map(|c| c.choices.first()?.delta.content.clone()).collect();
        assert_eq!(text, "Paris.");
        assert_eq!(chunks[chunks.len() - 2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(chunks.last().unwrap().usage, Some(Some(entry.usage)));
        let without = entry.to_chunks("chatcmpl-2", 5, false);
        assert!(without.iter().all(|c| c.usage.is_none()));
    }
}
