//! The Messages stream: its events and their SSE framing (`event: <type>\ndata: <json>\n\n`).
//!
//! A stream is `message_start`, then per content block `content_block_start`,
//! `content_block_delta`…, `content_block_stop`, then `message_delta` (stop reason and usage)
//! and `message_stop`; `ping` may come anywhere, `error` ends the stream.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::content::ContentBlock;
use super::error::{ErrorObject, ErrorType};
use super::response::{DeltaUsage, Message, StopReason};

/// One event. Its `data` JSON carries the same `type` as its SSE `event:` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart { message: Message },
    ContentBlockStart { index: u32, content_block: ContentBlock },
    ContentBlockDelta { index: u32, delta: BlockDelta },
    ContentBlockStop { index: u32 },
    MessageDelta { delta: MessageDeltaBody, usage: DeltaUsage },
    MessageStop,
    Ping,
    Error { error: ErrorObject },
}

/// A fragment of the open content block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text of a `text` block.
    TextDelta { text: String },
    /// More of a `tool_use` block's `input`, as JSON text to be joined and parsed at its stop.
    InputJsonDelta { partial_json: String },
}

/// `message_delta.delta`: both fields are always written (`null` when unset), as Anthropic does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    pub stop_reason: Option<StopReason>,
    pub stop_sequence: Option<String>,
}

impl StreamEvent {
    /// The SSE `event:` name, equal to the data's `type`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
        }
    }

    /// An `error` event, which ends a stream that already answered 200.
    pub fn error(kind: ErrorType, message: impl Into<String>) -> Self {
        StreamEvent::Error { error: ErrorObject { kind, message: message.into() } }
    }
}

/// The event as one SSE frame: `event: <type>\ndata: <json>\n\n`.
pub fn sse_frame(event: &StreamEvent) -> Bytes {
    // Serializing these plain types can not fail (no maps with non-string keys, no foreign
    // Serialize impls); the fallback keeps the stream well-formed regardless.
    let data = serde_json::to_vec(event).unwrap_or_else(|_| {
        br#"{"type":"error","error":{"type":"api_error","message":"event encoding failed"}}"#.to_vec()
    });
    let name = if data.starts_with(br#"{"type":"error""#) { "error" } else { event.name() };
    let mut frame = Vec::with_capacity(data.len() + name.len() + 16);
    frame.extend_from_slice(b"event: ");
    frame.extend_from_slice(name.as_bytes());
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(&data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::sse::SseDecoder;

    #[test]
    fn frames_name_the_event_and_decode_back() {
        let events = [
            StreamEvent::ContentBlockDelta {
                index: 1,
                delta: BlockDelta::InputJsonDelta { partial_json: "{\"a\"".into() },
            },
            StreamEvent::MessageDelta {
                delta: MessageDeltaBody { stop_reason: Some(StopReason::EndTurn), stop_sequence: None },
                usage: DeltaUsage { output_tokens: 15, ..DeltaUsage::default() },
            },
            StreamEvent::MessageStop,
            StreamEvent::Ping,
            StreamEvent::error(ErrorType::OverloadedError, "Overloaded"),
        ];
        let bytes: Vec<u8> = events.iter().flat_map(|e| sse_frame(e).to_vec()).collect();
        let decoded = SseDecoder::new().push(&bytes);
        assert_eq!(decoded.len(), events.len());
        for (frame, event) in decoded.iter().zip(&events) {
            assert_eq!(frame.event.as_deref(), Some(event.name()));
            assert_eq!(&serde_json::from_str::<StreamEvent>(&frame.data).unwrap(), event);
        }
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&decoded[1].data).unwrap(),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}})
        );
        assert_eq!(decoded[3].data, r#"{"type":"ping"}"#);
    }
}
