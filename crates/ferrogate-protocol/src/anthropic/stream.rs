//! The streaming translator: OpenAI `ChatCompletionChunk`s in, Anthropic events out.
//!
//! Invariants, whatever chunks arrive (property-tested): the first event is `message_start`; the
//! last is `message_stop`, or a single `error`; content blocks are numbered 0, 1, 2… and each
//! one's `content_block_stop` comes before the next one's `content_block_start`; deltas only go
//! to the open block; `message_delta` comes once, after the last block closed. A text run is one
//! `text` block; each tool call is one `tool_use` block whose `input_json_delta`s, joined, are
//! exactly the upstream's argument fragments.
//!
//! A tool call's block opens once its name is known (argument fragments seen before are held
//! back, then sent). Fragments for a call whose block already closed (an upstream interleaving
//! two calls) can not be expressed: the stream ends with an `api_error` event.

use super::content::ContentBlock;
use super::error::ErrorType;
use super::events::{BlockDelta, MessageDeltaBody, StreamEvent};
use super::from_openai::{fallback_tool_id, stop_reason, usage};
use super::response::{DeltaUsage, Message, Usage};
use crate::openai::tools::{CallNumbering, ToolCallView};
use crate::openai::{self, ChatCompletionChunk, FinishReason};

/// State of one streamed Messages response.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    /// Prompt tokens known before the upstream answers (the gateway's count), for
    /// `message_start`; the upstream's final count goes in `message_delta`.
    input_tokens: u32,
    started: bool,
    /// `message_stop` or `error` was emitted: nothing more is.
    ended: bool,
    /// The Anthropic index the next block gets.
    next_index: u32,
    open: Option<Open>,
    numbering: CallNumbering,
    /// Indexed by call number.
    calls: Vec<Call>,
    finish: Option<FinishReason>,
    usage: Option<openai::Usage>,
    matched_stop: Option<String>,
}

/// The block currently open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    /// A tool block and its call's number.
    Tool(u32, usize),
}

/// One OpenAI tool call of the stream.
#[derive(Debug)]
struct Call {
    id: Option<String>,
    name: Option<String>,
    /// Argument fragments received before the block opened.
    held: String,
    state: CallState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Waiting,
    Open,
    Closed,
}

impl StreamTranslator {
    /// `id` is the `msg_…` id, `input_tokens` the gateway's own prompt count.
    pub fn new(id: impl Into<String>, model: impl Into<String>, input_tokens: u32) -> Self {
        Self {
            id: id.into(),
            model: model.into(),
            input_tokens,
            started: false,
            ended: false,
            next_index: 0,
            open: None,
            numbering: CallNumbering::default(),
            calls: Vec::new(),
            finish: None,
            usage: None,
            matched_stop: None,
        }
    }

    /// `message_start` and a `ping`, once; later calls return nothing. [`push`](Self::push)
    /// starts the stream itself if needed.
    pub fn start(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.ensure_started(&mut out);
        out
    }

    /// The stop sequence that ended generation, when the backend says so: the stop reason is
    /// then `stop_sequence`.
    pub fn set_matched_stop(&mut self, stop: Option<String>) {
        self.matched_stop = stop;
    }

    /// The gateway's own count, used when the upstream reported no usage (call before
    /// [`finish`](Self::finish)); the upstream's numbers win when it did.
    pub fn fill_usage(&mut self, usage: openai::Usage) {
        self.usage.get_or_insert(usage);
    }

    /// The events one upstream chunk gives. Only choice 0 is read (n > 1 is not served here).
    pub fn push(&mut self, chunk: &ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.ensure_started(&mut out);
        if let Some(Some(u)) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else { return out };
        if let Some(text) = choice.delta.content.as_deref().filter(|t| !t.is_empty()) {
            self.text(text, &mut out);
        }
        for (position, fragment) in choice.delta.tool_calls.iter().flatten().enumerate() {
            if !self.tool_fragment(ToolCallView::read(fragment, position), &mut out) {
                return out;
            }
        }
        if choice.finish_reason.is_some() {
            self.finish = choice.finish_reason;
        }
        out
    }

    /// The end of the upstream stream: open blocks close, then `message_delta` (stop reason,
    /// usage) and `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.ensure_started(&mut out);
        // A call whose name never came still becomes a block: its arguments are not lost.
        while let Some(i) = self.calls.iter().position(|c| c.state == CallState::Waiting) {
            self.open_tool(i, &mut out);
        }
        self.close(&mut out);
        let (stop, sequence) = stop_reason(self.finish, !self.calls.is_empty(), self.matched_stop.as_deref());
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody { stop_reason: Some(stop), stop_sequence: sequence },
            usage: self.delta_usage(),
        });
        out.push(StreamEvent::MessageStop);
        self.ended = true;
        out
    }

    /// An upstream failure after the stream began: one `error` event, and the stream is over.
    pub fn fail(&mut self, kind: ErrorType, message: impl Into<String>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        self.ensure_started(&mut out);
        out.push(StreamEvent::error(kind, message));
        self.ended = true;
        out
    }

    /// True once `message_stop` or `error` was emitted.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = Usage { input_tokens: self.input_tokens, output_tokens: 0, ..Usage::default() };
        let message = Message::new(self.id.clone(), self.model.clone(), Vec::new(), usage);
        out.push(StreamEvent::MessageStart { message });
        out.push(StreamEvent::Ping);
    }

    fn delta_usage(&self) -> DeltaUsage {
        match &self.usage {
            Some(u) => {
                let u = usage(u);
                DeltaUsage {
                    output_tokens: u.output_tokens,
                    input_tokens: Some(u.input_tokens),
                    cache_creation_input_tokens: u.cache_creation_input_tokens,
                    cache_read_input_tokens: u.cache_read_input_tokens,
                }
            }
            None => DeltaUsage::default(),
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        let index = match self.open {
            Some(Open::Text(index)) => index,
            _ => {
                self.close(out);
                let index = self.begin(ContentBlock::text(""), out);
                self.open = Some(Open::Text(index));
                index
            }
        };
        out.push(StreamEvent::ContentBlockDelta { index, delta: BlockDelta::TextDelta { text: text.to_owned() } });
    }

    /// Handles one fragment; false when it ended the stream.
    fn tool_fragment(&mut self, view: ToolCallView<'_>, out: &mut Vec<StreamEvent>) -> bool {
        let i = self.numbering.number(&view);
        if i == self.calls.len() {
            self.calls.push(Call { id: None, name: None, held: String::new(), state: CallState::Waiting });
        }
        let Some(call) = self.calls.get_mut(i) else { return true };
        call.id = call.id.take().or_else(|| view.id.filter(|s| !s.is_empty()).map(str::to_owned));
        call.name = call.name.take().or_else(|| view.name.filter(|s| !s.is_empty()).map(str::to_owned));
        let fragment = view.arguments.unwrap_or("");
        match call.state {
            CallState::Closed if fragment.is_empty() => true,
            CallState::Closed => {
                let message = "the upstream interleaved the arguments of two tool calls";
                out.push(StreamEvent::error(ErrorType::ApiError, message));
                self.ended = true;
                false
            }
            CallState::Open => {
                if !fragment.is_empty() {
                    let index = self.block_index();
                    out.push(json_delta(index, fragment.to_owned()));
                }
                true
            }
            CallState::Waiting => {
                call.held.push_str(fragment);
                if call.name.is_some() {
                    self.open_tool(i, out);
                }
                true
            }
        }
    }

    fn open_tool(&mut self, i: usize, out: &mut Vec<StreamEvent>) {
        self.close(out);
        let fallback = fallback_tool_id(&self.id, i);
        let Some(call) = self.calls.get_mut(i) else { return };
        call.state = CallState::Open;
        let block = ContentBlock::tool_use(
            call.id.clone().unwrap_or(fallback),
            call.name.clone().unwrap_or_default(),
            serde_json::Value::Object(serde_json::Map::new()),
        );
        let held = std::mem::take(&mut call.held);
        let index = self.begin(block, out);
        self.open = Some(Open::Tool(index, i));
        if !held.is_empty() {
            out.push(json_delta(index, held));
        }
    }

    fn begin(&mut self, content_block: ContentBlock, out: &mut Vec<StreamEvent>) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::ContentBlockStart { index, content_block });
        index
    }

    fn block_index(&self) -> u32 {
        match self.open {
            Some(Open::Text(i) | Open::Tool(i, _)) => i,
            None => 0,
        }
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(open) = self.open.take() else { return };
        let index = match open {
            Open::Text(index) => index,
            Open::Tool(index, number) => {
                if let Some(call) = self.calls.get_mut(number) {
                    call.state = CallState::Closed;
                }
                index
            }
        };
        out.push(StreamEvent::ContentBlockStop { index });
    }
}

fn json_delta(index: u32, partial_json: String) -> StreamEvent {
    StreamEvent::ContentBlockDelta { index, delta: BlockDelta::InputJsonDelta { partial_json } }
}
