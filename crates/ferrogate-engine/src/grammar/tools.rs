//! Tool calling on the embedded engine: one envelope for every model, enforced by grammar.
//!
//! The model answers a call as exactly `{"tool_calls":[{"name":"NAME","arguments":{…}},…]}`
//! (no whitespace outside the arguments): NAME is one of the request's functions, the arguments
//! match that function's `parameters` schema. With `tool_choice` `auto` the grammar also allows
//! plain text that does not start with `{` or whitespace, so the first character decides.
//! `required` forces at least one call, a named choice exactly one call of that function.
//!
//! Small models' chat templates (SmolLM2, Gemma 3) know nothing of tools, so the engine writes
//! its own protocol into the prompt (`prepare`): the functions and the envelope in the system
//! message; earlier assistant calls as their envelope text; `tool` results as user turns.
//! `ToolParser` reads the envelope back incrementally (names as soon as they are complete,
//! arguments as fragments), which is what streamed `tool_calls` deltas need.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::schema::{Converter, SchemaError, gbnf_string};

const PREFIX: &str = "{\"tool_calls\":[";
const CALL_OPEN: &str = "{\"name\":\"";
const ARGS_KEY: &str = "\",\"arguments\":";
const SUFFIX: &str = "]}";
/// Calls one answer may hold (bounds a model that would repeat calls until max_tokens).
const MAX_CALLS: usize = 8;

/// The functions a request offers and how the model must use them.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub functions: Vec<Function>,
    pub choice: ToolChoice,
    /// More than one call per answer (OpenAI's `parallel_tool_calls`, default true).
    pub parallel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments; `None`: any JSON object.
    pub parameters: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text or calls, the model's choice.
    Auto,
    /// At least one call.
    Required,
    /// Exactly one call of this function.
    Named(String),
}

/// What `ToolParser` reads, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolEvent {
    /// Plain text (`auto` answered without a call).
    Text(String),
    /// Call `index` begins; its name is complete.
    Start { index: usize, name: String },
    /// The next piece of call `index`'s arguments text.
    Args { index: usize, fragment: String },
}

/// GBNF for `spec`: the envelope, or (auto) the envelope or text.
pub(crate) fn grammar(spec: &ToolSpec) -> Result<Option<String>, SchemaError> {
    let named = match &spec.choice {
        ToolChoice::Named(n) => Some(n.as_str()),
        ToolChoice::Auto | ToolChoice::Required => None,
    };
    let offered: Vec<(usize, &Function)> =
        spec.functions.iter().enumerate().filter(|(_, f)| named.is_none_or(|n| f.name == n)).collect();
    if offered.is_empty() {
        let message = match named {
            Some(n) => format!("tool_choice names '{n}', which is not among the tools"),
            None => "tools must list at least one function".to_owned(),
        };
        return Err(SchemaError { path: "tools".into(), message });
    }
    let empty = Value::Null;
    let mut conv = Converter::new(&empty);
    let mut calls = Vec::with_capacity(offered.len());
    for (i, f) in &offered {
        let args = match &f.parameters {
            None => "object".to_owned(),
            Some(p) => {
                // Each function's `$ref`s resolve against its own parameters document.
                conv.set_root(p);
                let path = format!("/tools/{i}/function/parameters");
                conv.rule(p, "").map_err(|e| SchemaError { path: format!("#{path}{}", &e.path[1..]), ..e })?
            }
        };
        calls.push(format!("{} {args} \"}}\"", gbnf_string(&format!("{CALL_OPEN}{}{ARGS_KEY}", f.name))));
    }
    let more = if spec.parallel && named.is_none() {
        format!(" ( \",\" call ){{0,{}}}", MAX_CALLS - 1)
    } else {
        String::new()
    };
    let root = match spec.choice {
        ToolChoice::Auto => "envelope | text",
        ToolChoice::Required | ToolChoice::Named(_) => "envelope",
    };
    let mut g = format!("root ::= {root}\n");
    let _ = writeln!(g, "envelope ::= {} call{more} {}", gbnf_string(PREFIX), gbnf_string(SUFFIX));
    let _ = writeln!(g, "call ::= {}", calls.join(" | "));
    g.push_str("text ::= [^{ \\t\\n\\r] [^\\x00]*\n");
    g.push_str(&conv.finish());
    Ok(Some(g))
}

/// The messages the template renders: the tool protocol in the system message (when `spec`),
/// assistant calls as envelopes, tool results as user turns (several in a row merged).
pub fn prepare(messages: &[Value], spec: Option<&ToolSpec>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "assistant" if m.get("tool_calls").is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty())) => {
                out.push(json!({"role": "assistant", "content": envelope_of(&m["tool_calls"])}));
            }
            "tool" => {
                let result = format!(
                    "Result of {}: {}",
                    call_name(messages, m.get("tool_call_id")).unwrap_or("the function"),
                    text_of(m.get("content"))
                );
                match out.last_mut() {
                    Some(prev) if prev.get("tool_result").is_some() => {
                        let joined = format!("{}\n{result}", text_of(prev.get("content")));
                        prev["content"] = Value::String(joined);
                    }
                    _ => out.push(json!({"role": "user", "content": result, "tool_result": true})),
                }
            }
            _ => out.push(m.clone()),
        }
    }
    for m in &mut out {
        if let Some(o) = m.as_object_mut() {
            o.remove("tool_result");
        }
    }
    if let Some(spec) = spec {
        let instructions = instructions(spec);
        match out.first_mut() {
            Some(first) if first.get("role").and_then(Value::as_str) == Some("system") => {
                let joined = format!("{}\n\n{instructions}", text_of(first.get("content")));
                first["content"] = Value::String(joined);
            }
            _ => out.insert(0, json!({"role": "system", "content": instructions})),
        }
    }
    out
}

fn instructions(spec: &ToolSpec) -> String {
    let mut s = String::from("You can call these functions (arguments as JSON Schema):\n");
    for f in &spec.functions {
        let params = f.parameters.as_ref().map_or_else(|| "{}".to_owned(), Value::to_string);
        let _ = writeln!(s, "- {}: {} Arguments: {params}", f.name, f.description.as_deref().unwrap_or(""));
    }
    s.push_str(&format!(
        "To call a function, answer only with JSON in this form: {PREFIX}{CALL_OPEN}<function name>{ARGS_KEY}{{<arguments>}}}}{SUFFIX}"
    ));
    match &spec.choice {
        ToolChoice::Auto => s.push_str("\nIf no function is needed, answer in plain text."),
        ToolChoice::Required => s.push_str("\nAnswer with a function call."),
        ToolChoice::Named(n) => {
            let _ = write!(s, "\nAnswer with a call of {n}.");
        }
    }
    s
}

/// OpenAI `tool_calls` (arguments as JSON text) → the envelope the model writes, members in
/// the grammar's order.
fn envelope_of(calls: &Value) -> String {
    let calls: Vec<String> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let f = &c["function"];
            let args = match &f["arguments"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
                other => other.clone(),
            };
            format!("{CALL_OPEN}{}{ARGS_KEY}{args}}}", f["name"].as_str().unwrap_or(""))
        })
        .collect();
    format!("{PREFIX}{}{SUFFIX}", calls.join(","))
}

fn call_name<'a>(messages: &'a [Value], id: Option<&Value>) -> Option<&'a str> {
    let id = id?.as_str()?;
    messages
        .iter()
        .filter_map(|m| m.get("tool_calls")?.as_array())
        .flatten()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|c| c["function"]["name"].as_str())
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| p.get("text")?.as_str()).collect::<Vec<_>>().join(""),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

// === impl ToolParser ===

/// Reads generated text as either plain text or the envelope, incrementally.
#[derive(Debug)]
pub struct ToolParser {
    /// Envelope text received and not yet consumed.
    buf: String,
    state: State,
    /// Calls started so far.
    calls: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Undecided,
    Text,
    Expect(Lit),
    Name,
    Args {
        depth: u32,
        in_str: bool,
        esc: bool,
    },
    /// After the arguments: the call's closing `}`.
    CallClose,
    /// After a call: `,` and another, or `]}`.
    Between,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lit {
    Prefix,
    CallOpen,
    ArgsKey,
    Suffix,
}

impl Lit {
    fn text(self) -> &'static str {
        match self {
            Lit::Prefix => PREFIX,
            Lit::CallOpen => CALL_OPEN,
            Lit::ArgsKey => ARGS_KEY,
            Lit::Suffix => SUFFIX,
        }
    }
}

impl ToolParser {
    /// `calls_only`: the answer is an envelope (tool_choice required/named); else the first
    /// character decides (`{` → envelope).
    pub fn new(calls_only: bool) -> Self {
        let state = if calls_only { State::Expect(Lit::Prefix) } else { State::Undecided };
        Self { buf: String::new(), state, calls: 0 }
    }

    /// Calls started so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    pub fn feed(&mut self, text: &str) -> Vec<ToolEvent> {
        let mut out = Vec::new();
        if self.state == State::Text {
            if !text.is_empty() {
                out.push(ToolEvent::Text(text.to_owned()));
            }
            return out;
        }
        self.buf.push_str(text);
        while self.step(&mut out) {}
        out
    }

    /// The end of the text: an envelope must be complete.
    pub fn finish(&mut self) -> Result<Vec<ToolEvent>, String> {
        let mut out = Vec::new();
        match self.state {
            State::Undecided => {
                if !self.buf.is_empty() {
                    out.push(ToolEvent::Text(std::mem::take(&mut self.buf)));
                }
                self.state = State::Text;
                Ok(out)
            }
            State::Text | State::Done => Ok(out),
            _ => Err(format!("the model's tool call is incomplete: {}", self.buf.chars().take(80).collect::<String>())),
        }
    }

    /// One transition; false when more text is needed (or nothing more can be read).
    fn step(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        match self.state {
            State::Undecided => {
                let Some(c) = self.buf.chars().next() else { return false };
                self.state = if c == '{' { State::Expect(Lit::Prefix) } else { State::Text };
                if self.state == State::Text {
                    out.push(ToolEvent::Text(std::mem::take(&mut self.buf)));
                    return false;
                }
                true
            }
            State::Text | State::Done | State::Failed => false,
            State::Expect(lit) => self.expect(lit),
            State::Name => {
                let Some(end) = self.buf.find('"') else { return false };
                let name: String = self.buf.drain(..end).collect();
                out.push(ToolEvent::Start { index: self.calls, name });
                self.calls += 1;
                self.state = State::Expect(Lit::ArgsKey);
                true
            }
            State::Args { .. } => self.args(out),
            State::CallClose | State::Between => {
                let Some(c) = self.buf.chars().next() else { return false };
                self.state = match (self.state, c) {
                    (State::CallClose, '}') => State::Between,
                    (State::Between, ',') => State::Expect(Lit::CallOpen),
                    (State::Between, ']') => {
                        self.state = State::Expect(Lit::Suffix);
                        return true;
                    }
                    _ => State::Failed,
                };
                if self.state != State::Failed {
                    self.buf.drain(..1);
                }
                true
            }
        }
    }

    fn expect(&mut self, lit: Lit) -> bool {
        let want = lit.text();
        let n = self.buf.len().min(want.len());
        if self.buf.as_bytes()[..n] != want.as_bytes()[..n] {
            self.state = State::Failed;
            return false;
        }
        if n < want.len() {
            return false;
        }
        self.buf.drain(..want.len());
        self.state = match lit {
            Lit::Prefix => State::Expect(Lit::CallOpen),
            Lit::CallOpen => State::Name,
            Lit::ArgsKey => State::Args { depth: 0, in_str: false, esc: false },
            Lit::Suffix => State::Done,
        };
        true
    }

    /// Scans the arguments object; emits what was scanned; ends after its closing brace.
    fn args(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        let State::Args { mut depth, mut in_str, mut esc } = self.state else { return false };
        let mut end = None;
        for (i, c) in self.buf.char_indices() {
            if in_str {
                match (esc, c) {
                    (true, _) => esc = false,
                    (false, '\\') => esc = true,
                    (false, '"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '{' | '[' => depth += 1,
                '}' | ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let take = end.unwrap_or(self.buf.len());
        let fragment: String = self.buf.drain(..take).collect();
        if !fragment.is_empty() {
            out.push(ToolEvent::Args { index: self.calls - 1, fragment });
        }
        self.state = if end.is_some() { State::CallClose } else { State::Args { depth, in_str, esc } };
        end.is_some()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(choice: ToolChoice) -> ToolSpec {
        ToolSpec {
            functions: vec![
                Function {
                    name: "get_weather".into(),
                    description: Some("Weather in a city.".into()),
                    parameters: Some(
                        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
                    ),
                },
                Function { name: "now".into(), description: None, parameters: None },
            ],
            choice,
            parallel: true,
        }
    }

    fn feed_all(p: &mut ToolParser, pieces: &[&str]) -> Vec<ToolEvent> {
        let mut out: Vec<ToolEvent> = pieces.iter().flat_map(|t| p.feed(t)).collect();
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn grammar_lists_the_functions_and_auto_allows_text() {
        let g = grammar(&spec(ToolChoice::Auto)).unwrap().unwrap();
        assert!(g.starts_with("root ::= envelope | text\n"), "{g}");
        assert!(g.contains("get_weather"), "{g}");
        assert!(g.contains("{0,7}"), "{g}");
        let g = grammar(&spec(ToolChoice::Named("now".into()))).unwrap().unwrap();
        assert!(g.starts_with("root ::= envelope\n") && !g.contains("get_weather") && !g.contains("{0,7}"), "{g}");
        assert!(grammar(&spec(ToolChoice::Named("nope".into()))).is_err());
    }

    #[test]
    fn a_bad_parameters_schema_names_its_tool() {
        let mut s = spec(ToolChoice::Required);
        s.functions[1].parameters =
            Some(json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}));
        let e = grammar(&s).unwrap_err();
        assert_eq!(e.path, "#/tools/1/function/parameters/properties/n");
    }

    #[test]
    fn parses_calls_split_anywhere() {
        let text = r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris \"}{"}},{"name":"now","arguments":{}}]}"#;
        for cut in 1..text.len() {
            let mut p = ToolParser::new(false);
            let events = feed_all(&mut p, &[&text[..cut], &text[cut..]]);
            let mut names = Vec::new();
            let mut args = vec![String::new(), String::new()];
            for e in events {
                match e {
                    ToolEvent::Start { index, name } => names.push((index, name)),
                    ToolEvent::Args { index, fragment } => args[index].push_str(&fragment),
                    ToolEvent::Text(t) => unreachable!("no text expected: {t}"),
                }
            }
            assert_eq!(names, vec![(0, "get_weather".to_owned()), (1, "now".to_owned())], "cut {cut}");
            assert_eq!(args, vec![r#"{"city":"Paris \"}{"}"#.to_owned(), "{}".to_owned()], "cut {cut}");
        }
    }

    #[test]
    fn auto_text_passes_through_and_incomplete_envelopes_fail() {
        let mut p = ToolParser::new(false);
        assert_eq!(
            feed_all(&mut p, &["Hel", "lo {x}"]),
            vec![ToolEvent::Text("Hel".into()), ToolEvent::Text("lo {x}".into())]
        );
        let mut p = ToolParser::new(false);
        p.feed(r#"{"tool_calls":[{"name":"now","argu"#);
        assert!(p.finish().is_err());
        let mut p = ToolParser::new(true);
        p.feed("Hello");
        assert!(p.finish().is_err());
    }

    #[test]
    fn history_is_rewritten_into_the_engine_protocol() {
        let messages = vec![
            json!({"role": "system", "content": "Be brief."}),
            json!({"role": "user", "content": "Weather in Paris?"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "18 C"}),
            json!({"role": "tool", "tool_call_id": "c2", "content": "x"}),
        ];
        let out = prepare(&messages, Some(&spec(ToolChoice::Auto)));
        assert_eq!(out.len(), 4);
        assert!(out[0]["content"].as_str().unwrap().starts_with("Be brief.\n\nYou can call"));
        assert_eq!(out[2]["content"], r#"{"tool_calls":[{"name":"get_weather","arguments":{"city":"Paris"}}]}"#);
        assert_eq!(
            out[3],
            json!({"role": "user", "content": "Result of get_weather: 18 C\nResult of the function: x"})
        );
    }
}
