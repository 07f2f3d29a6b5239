//! Chat templates: the GGUF's Jinja `tokenizer.chat_template` rendered with minijinja (as
//! llama-server's `--jinja` does, keeping e.g. SmolLM2's default system prompt), a config
//! override, or a per-architecture fallback when the GGUF has none.
//!
//! Fallbacks: `gemma*` architectures get Gemma's turn format (system folded into the first user
//! turn); everything else gets ChatML. The environment mirrors Hugging Face's (`trim_blocks`,
//! `lstrip_blocks`, Python string methods, `raise_exception`).

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde_json::Value as Json;

/// Where the template in use came from (reported in `ModelInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// `chat_template` in the engine config.
    Config,
    /// The GGUF's `tokenizer.chat_template`.
    Gguf,
    /// The GGUF has none: a built-in format chosen by architecture.
    Fallback(FallbackTemplate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackTemplate {
    /// `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`
    Gemma,
    /// `<|im_start|>role\n…<|im_end|>\n`
    ChatMl,
}

impl FallbackTemplate {
    /// The fallback for a model architecture (`general.architecture`).
    pub fn for_architecture(arch: &str) -> Self {
        if arch.starts_with("gemma") { Self::Gemma } else { Self::ChatMl }
    }

    fn source(self) -> &'static str {
        match self {
            Self::Gemma => GEMMA,
            Self::ChatMl => CHATML,
        }
    }
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config => f.write_str("config"),
            Self::Gguf => f.write_str("gguf"),
            Self::Fallback(FallbackTemplate::Gemma) => f.write_str("fallback:gemma"),
            Self::Fallback(FallbackTemplate::ChatMl) => f.write_str("fallback:chatml"),
        }
    }
}

const GEMMA: &str = r#"
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- set system = messages[0].content if has_system else none -%}
{%- set turns = messages[1:] if has_system else messages -%}
{%- if system is not none and not turns -%}
{{- '<start_of_turn>user\n' + system + '<end_of_turn>\n' -}}
{%- endif -%}
{%- for m in turns -%}
{%- set role = 'model' if m.role == 'assistant' else 'user' -%}
{%- set text = system + '\n\n' + m.content if loop.first and system is not none else m.content -%}
{{- '<start_of_turn>' + role + '\n' + text + '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\n' -}}
{%- endif -%}
"#;

const CHATML: &str = r#"
{%- for m in messages -%}
{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"#;

/// A compiled chat template plus the special-token texts it may reference.
#[derive(Debug)]
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    source: TemplateSource,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Picks config override > GGUF template > architecture fallback, and compiles it.
    pub(crate) fn select(
        config: Option<&str>,
        gguf: Option<&str>,
        arch: &str,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, String> {
        let (text, source) = match (config, gguf) {
            (Some(t), _) => (t.to_owned(), TemplateSource::Config),
            (None, Some(t)) if !t.trim().is_empty() => (t.to_owned(), TemplateSource::Gguf),
            _ => {
                let fallback = FallbackTemplate::for_architecture(arch);
                (fallback.source().to_owned(), TemplateSource::Fallback(fallback))
            }
        };
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", text).map_err(|e| format!("chat template ({source}) does not compile: {e}"))?;
        Ok(Self { env, source, bos_token, eos_token })
    }

    pub(crate) fn source(&self) -> TemplateSource {
        self.source
    }

    /// Renders messages (normalized: null content → "", content parts → their text) with
    /// `add_generation_prompt = true`.
    pub(crate) fn render(&self, messages: &[Json], tools: Option<&Json>) -> Result<String, String> {
        let messages: Vec<Json> = messages.iter().map(normalize_message).collect::<Result<_, _>>()?;
        let template = self.env.get_template("chat").map_err(|e| format!("chat template: {e}"))?;
        template
            .render(context! {
                messages => Value::from_serialize(&messages),
                tools => tools.map(Value::from_serialize),
                add_generation_prompt => true,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| format!("chat template ({}) failed: {e}", self.source))
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn normalize_message(message: &Json) -> Result<Json, String> {
    let Json::Object(fields) = message else {
        return Err("each message must be a JSON object".into());
    };
    if !fields.get("role").is_some_and(Json::is_string) {
        return Err("each message needs a string `role`".into());
    }
    let mut fields = fields.clone();
    let content = match fields.get("content") {
        None | Some(Json::Null) => Json::String(String::new()),
        Some(Json::String(s)) => Json::String(s.clone()),
        Some(Json::Array(parts)) => Json::String(text_of_parts(parts)?),
        Some(_) => return Err("message `content` must be a string or an array of parts".into()),
    };
    fields.insert("content".into(), content);
    Ok(Json::Object(fields))
}

fn text_of_parts(parts: &[Json]) -> Result<String, String> {
    parts
        .iter()
        .map(|part| match part.get("type").and_then(Json::as_str) {
            Some("text") => part
                .get("text")
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or_else(|| "a text content part needs `text`".to_owned()),
            _ => Err("only text content parts are supported by this model".to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn template(config: Option<&str>, gguf: Option<&str>, arch: &str) -> ChatTemplate {
        ChatTemplate::select(config, gguf, arch, "<bos>".into(), "<eos>".into())
            .unwrap_or_else(|e| unreachable!("template must compile: {e}"))
    }

    fn user(text: &str) -> Json {
        json!({"role": "user", "content": text})
    }

    #[test]
    fn fallback_is_chosen_by_architecture() {
        assert_eq!(FallbackTemplate::for_architecture("gemma3"), FallbackTemplate::Gemma);
        assert_eq!(FallbackTemplate::for_architecture("llama"), FallbackTemplate::ChatMl);
        let t = template(None, None, "gemma3");
        assert_eq!(t.source(), TemplateSource::Fallback(FallbackTemplate::Gemma));
        let t = template(None, Some("  "), "qwen2");
        assert_eq!(t.source(), TemplateSource::Fallback(FallbackTemplate::ChatMl));
    }

    #[test]
    fn config_beats_gguf_beats_fallback() {
        assert_eq!(template(Some("x"), Some("y"), "llama").source(), TemplateSource::Config);
        assert_eq!(template(None, Some("y"), "llama").source(), TemplateSource::Gguf);
    }

    #[test]
    fn smollm2_template_keeps_its_default_system_prompt() {
        let out = template(None, Some(SMOLLM2), "llama").render(&[user("Hi")], None);
        assert_eq!(
            out.as_deref(),
            Ok(
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            )
        );
    }

    #[test]
    fn gemma_fallback_folds_system_into_first_user_turn() {
        let msgs = [
            json!({"role": "system", "content": "Be brief."}),
            user("Hi"),
            json!({"role": "assistant", "content": "Hello!"}),
            user("Bye"),
        ];
        let out = template(None, None, "gemma3").render(&msgs, None);
        assert_eq!(
            out.as_deref(),
            Ok(
                "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
            )
        );
    }

    #[test]
    fn chatml_fallback_renders_roles() {
        let out = template(None, None, "llama").render(&[user("Hi")], None);
        assert_eq!(out.as_deref(), Ok("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn null_content_and_text_parts_are_normalized() {
        let msgs = [
            json!({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
            json!({"role": "assistant", "content": null}),
        ];
        let out = template(None, None, "llama").render(&msgs, None);
        assert!(out.is_ok_and(|s| s.contains("user\nab<|im_end|>") && s.contains("assistant\n<|im_end|>")));
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let t = template(
            None,
            Some(
                "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}{{ messages[0].content.strip() }}",
            ),
            "llama",
        );
        assert_eq!(t.render(&[user("  x  ")], None).as_deref(), Ok("x"));
        let err = t.render(&[json!({"role": "system", "content": "s"})], None);
        assert!(err.is_err_and(|e| e.contains("user first")));
    }

    #[test]
    fn bad_messages_are_rejected() {
        let t = template(None, None, "llama");
        assert!(t.render(&[json!("hi")], None).is_err());
        assert!(t.render(&[json!({"content": "hi"})], None).is_err());
    }
}
