//! Property tests of the translations: the request converters never panic on generated bodies
//! (and what they accept is a valid OpenAI request); the Anthropic stream translator always
//! emits a well-formed event sequence that carries the upstream's text and tool arguments
//! exactly; the Ollama NDJSON translator always ends with one `done` line or one error line.

#![allow(clippy::unwrap_used, clippy::panic)]

mod strategies;

use std::collections::BTreeMap;

use ferrogate_protocol::anthropic::{BlockDelta, ContentBlock, MessagesRequest, StreamEvent, StreamTranslator};
use ferrogate_protocol::ollama::front::{self, Endpoint, Line, NdjsonTranslator, Timings};
use ferrogate_protocol::openai::Role;
use proptest::prelude::*;
use strategies::{Step, steps, to_chunk};

/// What a well-formed stream carried: text, and each tool block's joined arguments by id.
#[derive(Debug, Default)]
struct Carried {
    text: String,
    tools: Vec<String>,
    ended_in_error: bool,
}

/// Checks the event grammar; panics (fails the property) with the reason.
fn check_well_formed(events: &[StreamEvent]) -> Carried {
    assert!(matches!(events.first(), Some(StreamEvent::MessageStart { .. })), "starts with message_start: {events:?}");
    let mut carried = Carried::default();
    let mut open: Option<(u32, bool)> = None; // (index, is_tool)
    let mut next_index = 0;
    let mut saw_delta = false;
    for (k, event) in events.iter().enumerate().skip(1) {
        let last = k == events.len() - 1;
        match event {
            StreamEvent::MessageStart { .. } => panic!("second message_start at {k}"),
            StreamEvent::ContentBlockStart { index, content_block } => {
                assert!(open.is_none(), "block {index} starts while {open:?} is open");
                assert_eq!(*index, next_index, "indexes count up from 0");
                next_index += 1;
                let is_tool = matches!(content_block, ContentBlock::ToolUse { .. });
                if is_tool {
                    carried.tools.push(String::new());
                }
                open = Some((*index, is_tool));
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let (open_index, is_tool) = open.unwrap_or_else(|| panic!("delta for {index} with no open block"));
                assert_eq!(*index, open_index);
                match delta {
                    BlockDelta::TextDelta { text } if !is_tool => carried.text.push_str(text),
                    BlockDelta::InputJsonDelta { partial_json } if is_tool => {
                        carried.tools.last_mut().unwrap().push_str(partial_json);
                    }
                    other => panic!("{other:?} in a block of the other kind"),
                }
            }
            StreamEvent::ContentBlockStop { index } => {
                assert_eq!(open.map(|o| o.0), Some(*index), "stop of the open block");
                open = None;
            }
            StreamEvent::MessageDelta { delta, .. } => {
                assert!(open.is_none() && !saw_delta, "one message_delta, after the blocks closed");
                assert!(delta.stop_reason.is_some());
                saw_delta = true;
            }
            StreamEvent::MessageStop => {
                assert!(last && saw_delta, "message_stop is last, after message_delta");
            }
            StreamEvent::Error { .. } => {
                assert!(last, "error is last");
                carried.ended_in_error = true;
            }
            StreamEvent::Ping => {}
        }
    }
    let ended = matches!(events.last(), Some(StreamEvent::MessageStop | StreamEvent::Error { .. }));
    assert!(ended, "ends with message_stop or error: {events:?}");
    carried
}

/// What the steps sent on choice 0: the text, and per OpenAI index the joined arguments.
fn sent(steps: &[Step]) -> (String, BTreeMap<usize, String>) {
    let mut text = String::new();
    let mut tools: BTreeMap<usize, String> = BTreeMap::new();
    for s in steps {
        match s {
            Step::Text(t) => text.push_str(t),
            Step::Tool(i, _, _, args) => tools.entry(*i).or_default().push_str(args),
            Step::OddTool(v) => {
                if let Some(i) = v.as_object().and_then(|o| o.get("index")).and_then(|i| i.as_u64()) {
                    let args = v["function"]["arguments"].as_str().unwrap_or("");
                    tools.entry(usize::try_from(i).unwrap()).or_default().push_str(args);
                } else {
                    // No usable index: the fragment counts as the call at its position, 0.
                    tools.entry(0).or_default();
                }
            }
            _ => {}
        }
    }
    (text, tools)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(strategies::cases(1024)))]

    #[test]
    fn anthropic_stream_is_well_formed_and_lossless(steps in steps(), fail_at in proptest::option::of(0usize..30)) {
        let mut t = StreamTranslator::new("msg_1", "m", 3);
        let mut events = t.start();
        for (k, step) in steps.iter().enumerate() {
            if fail_at == Some(k) {
                events.extend(t.fail(ferrogate_protocol::anthropic::ErrorType::ApiError, "boom"));
            }
            events.extend(t.push(&to_chunk(step)));
        }
        events.extend(t.finish());
        events.extend(t.finish());
        let carried = check_well_formed(&events);
        prop_assert!(t.is_ended());
        if !carried.ended_in_error {
            let (text, tools) = sent(&steps);
            prop_assert_eq!(carried.text, text);
            let mut got = carried.tools;
            let mut want: Vec<String> = tools.into_values().collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn ollama_stream_ends_with_one_done_or_error_line(steps in steps(), chat in any::<bool>()) {
        let endpoint = if chat { Endpoint::Chat } else { Endpoint::Generate };
        let mut t = NdjsonTranslator::new(endpoint, "m");
        let mut lines = Vec::new();
        for step in &steps {
            lines.extend(t.push(&to_chunk(step), "2024-01-01T00:00:00.000000Z"));
        }
        lines.extend(t.finish("2024-01-01T00:00:01.000000Z", &Timings::default()));
        lines.extend(t.finish("x", &Timings::default()));
        let done = |l: &Line| matches!(l, Line::Chat(r) if r.done) || matches!(l, Line::Generate(r) if r.done);
        let last = lines.last().unwrap();
        prop_assert!(done(last) || matches!(last, Line::Error(_)));
        prop_assert_eq!(lines.iter().filter(|l| done(l) || matches!(l, Line::Error(_))).count(), 1);
        let text: String = lines.iter().map(|l| match l {
            Line::Chat(r) => r.message.content.clone(),
            Line::Generate(r) => r.response.clone(),
            Line::Error(_) => String::new(),
        }).collect();
        prop_assert_eq!(text, sent(&steps).0);
        for l in &lines {
            let bytes = l.to_bytes();
            prop_assert!(bytes.ends_with(b"\n") && !bytes[..bytes.len() - 1].contains(&b'\n'));
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        }
    }

    #[test]
    fn anthropic_requests_never_panic_and_accepted_ones_are_valid_openai(body in strategies::anthropic_request()) {
        if let Ok(req) = serde_json::from_value::<MessagesRequest>(body)
            && let Ok(chat) = req.to_chat_request()
        {
                prop_assert!(chat.validate().is_ok(), "{:?}", chat.validate());
                prop_assert_eq!(chat.is_stream(), req.is_stream());
                // Every tool message answers a call id the client gave.
                prop_assert!(chat.messages.iter().filter(|m| m.role == Role::Tool).all(|m| m.tool_call_id.is_some()));
        }
    }

    #[test]
    fn ollama_requests_never_panic(body in strategies::ollama_chat_request()) {
        if let Ok(req) = serde_json::from_value::<front::ChatRequest>(body)
            && let Ok(chat) = req.to_chat_request()
        {
                prop_assert_eq!(chat.messages.len(), req.messages.len());
                prop_assert_eq!(chat.is_stream(), req.stream);
        }
    }
}
