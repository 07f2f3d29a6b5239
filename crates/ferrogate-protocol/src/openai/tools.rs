//! OpenAI tool calls as the pivot carries them (`serde_json::Value`s): a typed view of one call
//! or stream fragment, the builder of a call, and the accumulation of stream fragments into
//! whole calls. Shared by the Anthropic and Ollama translations.
//!
//! Invariant: reading never fails — a field of the wrong type reads as absent, so an odd
//! upstream fragment can not panic a translation; what is missing is decided by the caller.

use serde_json::{Map, Value, json};

/// One tool call, or one fragment of a streamed tool call, read from OpenAI's shape
/// `{"index", "id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolCallView<'a> {
    /// `index` of a stream fragment; the position in the list when absent.
    pub index: usize,
    pub id: Option<&'a str>,
    pub name: Option<&'a str>,
    /// The arguments as JSON text (whole, or a fragment of it in a stream).
    pub arguments: Option<&'a str>,
}

impl<'a> ToolCallView<'a> {
    /// Reads `call`, the `position`-th entry of its list.
    pub fn read(call: &'a Value, position: usize) -> Self {
        let function = call.get("function");
        let text = |v: Option<&'a Value>| v.and_then(Value::as_str);
        let index = call.get("index").and_then(Value::as_u64).and_then(|i| usize::try_from(i).ok());
        Self {
            index: index.unwrap_or(position),
            id: text(call.get("id")),
            name: text(function.and_then(|f| f.get("name"))),
            arguments: text(function.and_then(|f| f.get("arguments"))),
        }
    }
}

/// An OpenAI tool call, `arguments` being JSON text.
pub fn function_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// The arguments text as the JSON object other protocols carry (Anthropic's `input`, Ollama's
/// `arguments`): empty text is the empty object; anything but an object is `None`.
pub fn arguments_object(arguments: &str) -> Option<Map<String, Value>> {
    if arguments.trim().is_empty() {
        return Some(Map::new());
    }
    match serde_json::from_str(arguments) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// Numbers the tool calls of a stream 0, 1, 2… in order of appearance. A fragment continues the
/// latest call with its `index`, unless it carries an `id` other than that call's: some servers
/// send each whole call in its own chunk without an `index`, so every call reads as position 0.
#[derive(Debug, Clone, Default)]
pub struct CallNumbering {
    /// Per call number: its OpenAI index and id.
    calls: Vec<(usize, Option<String>)>,
}

impl CallNumbering {
    /// The number of the call `view` belongs to (a new number for a new call).
    pub fn number(&mut self, view: &ToolCallView<'_>) -> usize {
        let id = view.id.filter(|id| !id.is_empty());
        let latest = self.calls.iter().rposition(|(index, _)| *index == view.index);
        match latest {
            Some(n) if !matches!((self.calls[n].1.as_deref(), id), (Some(a), Some(b)) if a != b) => {
                if self.calls[n].1.is_none() {
                    self.calls[n].1 = id.map(str::to_owned);
                }
                n
            }
            _ => {
                self.calls.push((view.index, id.map(str::to_owned)));
                self.calls.len() - 1
            }
        }
    }
}

/// A tool call gathered from stream fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatheredCall {
    /// The OpenAI `index` of the call in the stream.
    pub index: usize,
    pub id: Option<String>,
    pub name: Option<String>,
    /// All argument fragments, joined.
    pub arguments: String,
}

/// Joins streamed tool-call fragments into calls (see [`CallNumbering`]), keeping the order
/// calls first appeared.
#[derive(Debug, Clone, Default)]
pub struct ToolCallGatherer {
    numbering: CallNumbering,
    /// Indexed by call number.
    calls: Vec<GatheredCall>,
}

impl ToolCallGatherer {
    /// Adds the fragments of one `delta.tool_calls` list.
    pub fn push(&mut self, fragments: &[Value]) {
        for (position, fragment) in fragments.iter().enumerate() {
            let view = ToolCallView::read(fragment, position);
            let n = self.numbering.number(&view);
            if n == self.calls.len() {
                self.calls.push(GatheredCall { index: view.index, ..GatheredCall::default() });
            }
            let Some(call) = self.calls.get_mut(n) else { continue };
            call.id = call.id.take().or_else(|| view.id.map(str::to_owned));
            call.name = call.name.take().or_else(|| view.name.map(str::to_owned));
            call.arguments.push_str(view.arguments.unwrap_or(""));
        }
    }

    /// True when no fragment was pushed.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The calls gathered so far, leaving the gatherer empty.
    pub fn take(&mut self) -> Vec<GatheredCall> {
        self.numbering = CallNumbering::default();
        std::mem::take(&mut self.calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_whole_calls_and_fragments_and_tolerate_odd_types() {
        let whole = function_call("call_1", "get_weather", "{\"city\":\"Paris\"}");
        let v = ToolCallView::read(&whole, 3);
        assert_eq!((v.index, v.id, v.name), (3, Some("call_1"), Some("get_weather")));
        assert_eq!(v.arguments, Some("{\"city\":\"Paris\"}"));
        let odd = json!({"index": "zero", "id": 7, "function": "x"});
        assert_eq!(ToolCallView::read(&odd, 1), ToolCallView { index: 1, id: None, name: None, arguments: None });
    }

    #[test]
    fn arguments_must_be_an_object_or_empty() {
        assert_eq!(arguments_object("  "), Some(Map::new()));
        assert_eq!(arguments_object("{\"a\":1}").map(|m| m.len()), Some(1));
        assert_eq!(arguments_object("[1]"), None);
        assert_eq!(arguments_object("{\"a\":"), None);
    }

    #[test]
    fn fragments_are_joined_per_index_in_first_seen_order() {
        let mut g = ToolCallGatherer::default();
        g.push(&[json!({"index": 1, "id": "b", "function": {"name": "g", "arguments": "{"}})]);
        g.push(&[json!({"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}})]);
        g.push(&[
            json!({"index": 1, "function": {"arguments": "}"}}),
            json!({"index": 0, "function": {"arguments": "{}"}}),
        ]);
        let calls = g.take();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].id.as_deref(), calls[0].arguments.as_str()), (Some("b"), "{}"));
        assert_eq!((calls[1].name.as_deref(), calls[1].arguments.as_str()), (Some("f"), "{}"));
        assert!(g.is_empty());
    }

    #[test]
    fn whole_calls_without_index_are_told_apart_by_id() {
        let mut g = ToolCallGatherer::default();
        g.push(&[function_call("a", "f", "{\"x\":1}")]);
        g.push(&[function_call("b", "g", "{}")]);
        g.push(&[json!({"function": {"arguments": ""}})]);
        let calls = g.take();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].arguments.as_str(), calls[1].name.as_deref()), ("{\"x\":1}", Some("g")));
    }
}
