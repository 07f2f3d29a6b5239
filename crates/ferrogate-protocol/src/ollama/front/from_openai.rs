//! OpenAI answers → Ollama's: whole answers for `stream: false`, and the NDJSON translator for
//! streams.
//!
//! Tool calls: Ollama writes `tool_calls[].function.arguments` as a JSON object (OpenAI: JSON
//! text) and sends a streamed answer's calls whole, so the translator gathers the fragments and
//! writes the calls in one line before the final one. `done_reason` is `length` when the token
//! budget ran out and `stop` otherwise (tool calls included, as Ollama does).

use bytes::Bytes;

use super::request::{ChatMessage, ToolCall, ToolCallFunction};
use super::response::{ChatResponse, GenerateResponse, Stats, Timings, ndjson_line};
use crate::error::ResponseError;
use crate::ollama::wire::ErrorResponse;
use crate::openai::tools::{GatheredCall, ToolCallGatherer, ToolCallView, arguments_object};
use crate::openai::{ChatCompletion, ChatCompletionChunk, Completion, FinishReason, Usage};

/// Ollama's `done_reason`.
pub fn done_reason(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "length",
        _ => "stop",
    }
}

/// A whole `/api/chat` answer.
pub fn chat_response(c: &ChatCompletion, created_at: String, t: &Timings) -> Result<ChatResponse, ResponseError> {
    let choice = c.choices.first().ok_or(ResponseError::NoChoice)?;
    let calls = choice.message.tool_calls.as_deref().unwrap_or_default();
    let tool_calls = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let v = ToolCallView::read(call, i);
            tool_call(i, v.name.unwrap_or_default(), v.arguments.unwrap_or_default())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let message = ChatMessage {
        role: "assistant".to_owned(),
        content: choice.message.content.clone().unwrap_or_default(),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        ..ChatMessage::default()
    };
    Ok(ChatResponse {
        model: c.model.clone(),
        created_at,
        message,
        done: true,
        done_reason: Some(done_reason(choice.finish_reason).to_owned()),
        stats: Some(Stats::new(Some(&c.usage), t)),
    })
}

/// A whole `/api/generate` answer from a chat completion (templated prompt).
pub fn generate_response(
    c: &ChatCompletion,
    created_at: String,
    t: &Timings,
) -> Result<GenerateResponse, ResponseError> {
    let choice = c.choices.first().ok_or(ResponseError::NoChoice)?;
    let text = choice.message.content.clone().unwrap_or_default();
    Ok(generate(&c.model, created_at, text, choice.finish_reason, Some(&c.usage), t))
}

/// A whole `/api/generate` answer from a legacy completion (`raw: true`).
pub fn generate_from_completion(
    c: &Completion,
    created_at: String,
    t: &Timings,
) -> Result<GenerateResponse, ResponseError> {
    let choice = c.choices.first().ok_or(ResponseError::NoChoice)?;
    Ok(generate(&c.model, created_at, choice.text.clone(), choice.finish_reason, c.usage.as_ref(), t))
}

fn generate(
    model: &str,
    created_at: String,
    response: String,
    finish: Option<FinishReason>,
    usage: Option<&Usage>,
    t: &Timings,
) -> GenerateResponse {
    GenerateResponse {
        model: model.to_owned(),
        created_at,
        response,
        done: true,
        done_reason: Some(done_reason(finish).to_owned()),
        stats: Some(Stats::new(usage, t)),
    }
}

fn tool_call(index: usize, name: &str, arguments: &str) -> Result<ToolCall, ResponseError> {
    let arguments = arguments_object(arguments).ok_or(ResponseError::ToolArguments { index })?;
    Ok(ToolCall { function: ToolCallFunction { name: name.to_owned(), arguments, index: u32::try_from(index).ok() } })
}

/// Which endpoint a stream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Generate,
}

/// One NDJSON line of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Chat(ChatResponse),
    Generate(GenerateResponse),
    /// `{"error": "…"}`: the stream's end after a failure.
    Error(ErrorResponse),
}

impl Line {
    /// The line's bytes, `\n` included.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Line::Chat(r) => ndjson_line(r),
            Line::Generate(r) => ndjson_line(r),
            Line::Error(e) => ndjson_line(e),
        }
    }
}

/// Turns a stream of OpenAI chunks into Ollama's NDJSON lines: one line per text piece, the
/// gathered tool calls, then the `done: true` line with the statistics. After `finish` or
/// `fail`, nothing more is written.
#[derive(Debug)]
pub struct NdjsonTranslator {
    endpoint: Endpoint,
    model: String,
    calls: ToolCallGatherer,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    ended: bool,
}

impl NdjsonTranslator {
    /// `model` is the name the client asked for (Ollama echoes it).
    pub fn new(endpoint: Endpoint, model: impl Into<String>) -> Self {
        Self {
            endpoint,
            model: model.into(),
            calls: ToolCallGatherer::default(),
            finish: None,
            usage: None,
            ended: false,
        }
    }

    /// The gateway's own count, used when the upstream reported no usage (call before
    /// [`finish`](Self::finish)).
    pub fn fill_usage(&mut self, usage: Usage) {
        self.usage.get_or_insert(usage);
    }

    /// The lines of one chat chunk (`created_at` is the time it arrived).
    pub fn push(&mut self, chunk: &ChatCompletionChunk, created_at: &str) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        if let Some(Some(u)) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else { return Vec::new() };
        if let Some(fragments) = &choice.delta.tool_calls {
            self.calls.push(fragments);
        }
        self.finish = choice.finish_reason.or(self.finish);
        self.text(choice.delta.content.as_deref().unwrap_or_default(), created_at)
    }

    /// The lines of one legacy completion chunk (`raw` generate streams).
    pub fn push_completion(&mut self, chunk: &Completion, created_at: &str) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        let Some(choice) = chunk.choices.iter().find(|c| c.index == 0) else { return Vec::new() };
        self.finish = choice.finish_reason.or(self.finish);
        self.text(&choice.text, created_at)
    }

    /// The end of the upstream stream: the tool calls (chat) and the final line.
    pub fn finish(&mut self, created_at: &str, t: &Timings) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        let mut out = Vec::with_capacity(2);
        let calls = self.calls.take();
        if self.endpoint == Endpoint::Chat && !calls.is_empty() {
            match gathered_calls(&calls) {
                Ok(tool_calls) => {
                    let message = ChatMessage { tool_calls: Some(tool_calls), ..assistant("") };
                    out.push(Line::Chat(ChatResponse { message, ..self.chat("", created_at) }));
                }
                Err(e) => return vec![Line::Error(ErrorResponse::new(e.to_string()))],
            }
        }
        let stats = Some(Stats::new(self.usage.as_ref(), t));
        let reason = Some(done_reason(self.finish).to_owned());
        out.push(match self.endpoint {
            Endpoint::Chat => {
                Line::Chat(ChatResponse { done: true, done_reason: reason, stats, ..self.chat("", created_at) })
            }
            Endpoint::Generate => Line::Generate(GenerateResponse {
                done: true,
                done_reason: reason,
                stats,
                ..self.generate("", created_at)
            }),
        });
        out
    }

    /// A failure after the stream began: one `{"error": …}` line, and the stream is over.
    pub fn fail(&mut self, message: impl Into<String>) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        vec![Line::Error(ErrorResponse::new(message))]
    }

    fn text(&self, text: &str, created_at: &str) -> Vec<Line> {
        if text.is_empty() {
            return Vec::new();
        }
        vec![match self.endpoint {
            Endpoint::Chat => Line::Chat(self.chat(text, created_at)),
            Endpoint::Generate => Line::Generate(self.generate(text, created_at)),
        }]
    }

    fn chat(&self, text: &str, created_at: &str) -> ChatResponse {
        ChatResponse {
            model: self.model.clone(),
            created_at: created_at.to_owned(),
            message: assistant(text),
            done: false,
            done_reason: None,
            stats: None,
        }
    }

    fn generate(&self, text: &str, created_at: &str) -> GenerateResponse {
        GenerateResponse {
            model: self.model.clone(),
            created_at: created_at.to_owned(),
            response: text.to_owned(),
            done: false,
            done_reason: None,
            stats: None,
        }
    }
}

fn assistant(text: &str) -> ChatMessage {
    ChatMessage { role: "assistant".to_owned(), content: text.to_owned(), ..ChatMessage::default() }
}

fn gathered_calls(calls: &[GatheredCall]) -> Result<Vec<ToolCall>, ResponseError> {
    calls.iter().enumerate().map(|(i, c)| tool_call(i, c.name.as_deref().unwrap_or_default(), &c.arguments)).collect()
}
