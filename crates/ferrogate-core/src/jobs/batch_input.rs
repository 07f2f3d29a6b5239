//! Validating a batch's input file before any line runs (OpenAI's rules): every line a JSON object
//! `{"custom_id", "method": "POST", "url", "body"}`, `custom_id`s unique, `url` the batch's
//! endpoint, one model for the whole file, and at most so many lines and bytes. A file that breaks
//! any rule fails the whole batch with an `errors` list naming the lines.
//!
//! Pure: no I/O, so it is tested (and fuzzable) on strings alone.

use std::collections::HashSet;

use serde_json::Value;

use super::batch::{BatchEndpoint, BatchError};

/// Size limits of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Most lines (requests); OpenAI's is 50,000.
    pub max_lines: usize,
    /// Most bytes; OpenAI's is 200 MB.
    pub max_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self { max_lines: 50_000, max_bytes: 200 * 1024 * 1024 }
    }
}

/// Errors reported at most (a broken file would otherwise produce one per line).
pub const MAX_REPORTED_ERRORS: usize = 100;

/// One valid input line.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// The caller's id, unique in the file; echoed in the output line.
    pub custom_id: String,
    /// The request body sent to the endpoint.
    pub body: Value,
}

/// The lines of a valid file, or every problem found (up to [`MAX_REPORTED_ERRORS`]).
pub fn validate_input(
    content: &str,
    endpoint: BatchEndpoint,
    limits: &InputLimits,
) -> Result<Vec<BatchLine>, Vec<BatchError>> {
    if content.len() > limits.max_bytes {
        let msg = format!("the input file is {} bytes; at most {} are allowed", content.len(), limits.max_bytes);
        return Err(vec![BatchError::file("file_too_large", msg)]);
    }
    let mut check = Checker { endpoint, seen: HashSet::new(), model: None, errors: Vec::new() };
    let mut lines = Vec::new();
    for (i, text) in content.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = u64::try_from(i + 1).unwrap_or(u64::MAX);
        if let Some(ok) = check.line(line, text) {
            lines.push(ok);
        }
        if check.errors.len() >= MAX_REPORTED_ERRORS {
            break;
        }
    }
    if lines.len() + check.errors.len() == 0 {
        check.errors.push(BatchError::file("empty_file", "the input file has no requests".into()));
    }
    if lines.len() > limits.max_lines {
        let msg = format!("the input file has {} requests; at most {} are allowed", lines.len(), limits.max_lines);
        check.errors.push(BatchError::file("too_many_tasks", msg));
    }
    if check.errors.is_empty() { Ok(lines) } else { Err(check.errors) }
}

/// State carried across lines.
struct Checker {
    endpoint: BatchEndpoint,
    seen: HashSet<String>,
    /// The first line's model: every line must use it.
    model: Option<String>,
    errors: Vec<BatchError>,
}

impl Checker {
    fn line(&mut self, line: u64, text: &str) -> Option<BatchLine> {
        match self.parse(line, text) {
            Ok(ok) => Some(ok),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn parse(&mut self, line: u64, text: &str) -> Result<BatchLine, BatchError> {
        let err = |code: &str, param: Option<&str>, msg: String| BatchError::at(line, code, param, msg);
        let value: Value = serde_json::from_str(text)
            .map_err(|e| err("invalid_json_line", None, format!("line {line} is not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("invalid_json_line", None, format!("line {line} is not a JSON object")))?;
        let custom_id = match obj.get("custom_id") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 512 => s.clone(),
            _ => {
                return Err(err(
                    "missing_custom_id",
                    Some("custom_id"),
                    format!("line {line} needs a custom_id string (1 to 512 characters)"),
                ));
            }
        };
        if obj.get("method").and_then(Value::as_str) != Some("POST") {
            return Err(err("invalid_method", Some("method"), format!("line {line}: method must be \"POST\"")));
        }
        let url = obj.get("url").and_then(Value::as_str).unwrap_or("");
        if url != self.endpoint.as_str() {
            let msg =
                format!("line {line}: url '{url}' does not match the batch's endpoint '{}'", self.endpoint.as_str());
            return Err(err("mismatched_endpoint", Some("url"), msg));
        }
        let body = match obj.get("body") {
            Some(b @ Value::Object(_)) => b.clone(),
            _ => return Err(err("missing_body", Some("body"), format!("line {line} needs a body object"))),
        };
        self.same_model(line, &body)?;
        if !self.seen.insert(custom_id.clone()) {
            return Err(err(
                "duplicate_custom_id",
                Some("custom_id"),
                format!("line {line}: custom_id '{custom_id}' is used more than once"),
            ));
        }
        Ok(BatchLine { line, custom_id, body })
    }

    fn same_model(&mut self, line: u64, body: &Value) -> Result<(), BatchError> {
        let model = body.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
        match &self.model {
            None => {
                self.model = Some(model);
                Ok(())
            }
            Some(first) if *first == model => Ok(()),
            Some(first) => Err(BatchError::at(
                line,
                "mismatched_model",
                Some("body.model"),
                format!("line {line}: model '{model}' differs from the file's '{first}'; a batch uses one model"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHAT: BatchEndpoint = BatchEndpoint::ChatCompletions;

    fn line(id: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"{model}","messages":[]}}}}"#
        )
    }

    fn codes(errors: &[BatchError]) -> Vec<(Option<u64>, &str)> {
        errors.iter().map(|e| (e.line, e.code.as_str())).collect()
    }

    #[test]
    fn a_good_file_yields_its_lines_in_order() {
        let file = format!("{}\n\n{}\n", line("a", "m"), line("b", "m"));
        let lines = validate_input(&file, CHAT, &InputLimits::default()).unwrap();
        assert_eq!(lines.iter().map(|l| (l.line, l.custom_id.as_str())).collect::<Vec<_>>(), [(1, "a"), (3, "b")]);
        assert_eq!(lines[0].body["model"], "m");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let file = [
            line("a", "m"),
            "{not json".into(),
            r#"{"method":"POST","url":"/v1/chat/completions","body":{}}"#.into(),
            line("a", "m"),
            line("c", "m").replace("/v1/chat/completions", "/v1/embeddings"),
            line("d", "m").replace("POST", "GET"),
            r#"{"custom_id":"e","method":"POST","url":"/v1/chat/completions"}"#.into(),
            line("f", "other"),
            "[1, 2]".into(),
        ]
        .join("\n");
        let errors = validate_input(&file, CHAT, &InputLimits::default()).unwrap_err();
        assert_eq!(
            codes(&errors),
            [
                (Some(2), "invalid_json_line"),
                (Some(3), "missing_custom_id"),
                (Some(4), "duplicate_custom_id"),
                (Some(5), "mismatched_endpoint"),
                (Some(6), "invalid_method"),
                (Some(7), "missing_body"),
                (Some(8), "mismatched_model"),
                (Some(9), "invalid_json_line"),
            ]
        );
        assert!(errors[2].message.contains("'a'") && errors[2].param.as_deref() == Some("custom_id"));
    }

    #[test]
    fn size_limits_and_empty_files() {
        let limits = InputLimits { max_lines: 2, max_bytes: 1000 };
        let three = [line("a", "m"), line("b", "m"), line("c", "m")].join("\n");
        assert_eq!(codes(&validate_input(&three, CHAT, &limits).unwrap_err()), [(None, "too_many_tasks")]);
        let big = "x".repeat(1001);
        assert_eq!(codes(&validate_input(&big, CHAT, &limits).unwrap_err()), [(None, "file_too_large")]);
        assert_eq!(codes(&validate_input("\n \n", CHAT, &limits).unwrap_err()), [(None, "empty_file")]);
    }

    #[test]
    fn error_lists_are_bounded() {
        let file = "nope\n".repeat(500);
        assert_eq!(validate_input(&file, CHAT, &InputLimits::default()).unwrap_err().len(), MAX_REPORTED_ERRORS);
    }
}
