//! Constrained output: what a request asks its text to be (`OutputFormat`) → a GBNF grammar the
//! sampler enforces token by token (llama.cpp's grammar sampler), and for tool calls the
//! prompt that tells the model its tools and the parser that reads the calls back.
//!
//! Pure (no llama.cpp, no I/O): the scheduler turns the grammar text into a sampler.
//! JSON Schema → GBNF is our own converter (`schema`): llama-cpp-2 exposes llama.cpp's
//! `json_schema_to_grammar` only with its `common` feature, which compiles llama.cpp's whole
//! `common/` library (chat parsers, argument parsing) into the binary for one function.

mod schema;
pub mod tools;

use serde_json::Value;

pub use schema::SchemaError;
pub use tools::{Function, ToolChoice, ToolEvent, ToolParser, ToolSpec};

/// The shape the generated text must have.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum OutputFormat {
    /// Free text.
    #[default]
    Text,
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON matching this schema (`response_format: {"type": "json_schema"}`).
    JsonSchema(Value),
    /// Tool calls in the engine's envelope (`tools` + `tool_choice`), or text when the choice
    /// is `auto`: see `tools`.
    Tools(ToolSpec),
}

impl OutputFormat {
    /// The GBNF grammar (root rule `root`) enforcing this format; `None` for free text.
    pub fn grammar(&self) -> Result<Option<String>, SchemaError> {
        match self {
            OutputFormat::Text => Ok(None),
            OutputFormat::JsonObject => Ok(Some(format!("root ::= object\n{}", schema::PRIMITIVES))),
            OutputFormat::JsonSchema(s) => {
                let mut c = schema::Converter::new(s);
                let root = c.rule(s, "")?;
                Ok(Some(format!("root ::= {root}\n{}", c.finish())))
            }
            OutputFormat::Tools(spec) => tools::grammar(spec),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn text_has_no_grammar_and_json_object_is_an_object() {
        assert_eq!(OutputFormat::Text.grammar().unwrap(), None);
        assert!(OutputFormat::JsonObject.grammar().unwrap().unwrap().starts_with("root ::= object\n"));
        let g = OutputFormat::JsonSchema(json!({"type": "object", "properties": {"a": {"type": "boolean"}}}));
        assert!(g.grammar().unwrap().unwrap().contains("boolean"));
    }
}
