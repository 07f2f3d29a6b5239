//! A loaded GGUF model: weights, vocabulary helpers (tokenize, token → bytes, end-of-generation)
//! and the chat template, shared read-only between callers (tokenizing on submit) and the
//! scheduler thread (which alone owns the llama context).

use std::num::NonZeroU32;
use std::path::Path;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::config::Resolved;
use crate::error::EngineError;
use crate::ffi::guarded;
use crate::request::Prompt;
use crate::stats::ModelInfo;
use crate::template::ChatTemplate;

pub(crate) struct LoadedModel {
    pub llama: LlamaModel,
    pub template: ChatTemplate,
    pub architecture: String,
    pub name: String,
    /// The tokenizer adds BOS itself: a template's leading BOS text is stripped.
    add_bos: bool,
    bos_text: String,
    n_vocab: i32,
    /// Sliding-window size (Gemma 3), 0 without SWA: limits KV prefix reuse.
    pub n_swa: u32,
    /// f16 K+V bytes one token takes in the cache, all layers.
    pub kv_bytes_per_token: u64,
    /// The most bytes of prompt text, ASCII whitespace aside, one token can stand for; `None`
    /// when the tokenizer may normalize text away (only BPE and SentencePiece are bounded).
    max_token_bytes: Option<u64>,
}

/// Tokenizers (`tokenizer.ggml.model`) whose tokens each stand for their own piece's bytes of the
/// text: GPT-2 byte-level BPE and llama.cpp's SentencePiece, which apply no normalization that
/// drops characters (`▁` is one space, byte fallback one byte, `<unk>` one character).
const BOUNDED_TOKENIZERS: [&str; 2] = ["gpt2", "llama"];
/// `<unk>` can stand for one character, four bytes at most, whatever the vocabulary's pieces.
const MIN_TOKEN_BYTES_BOUND: u64 = 4;

/// The longest piece (special tokens as their text) in bytes, at least
/// [`MIN_TOKEN_BYTES_BOUND`]; `None` for tokenizers outside [`BOUNDED_TOKENIZERS`].
fn max_token_bytes(llama: &LlamaModel) -> Option<u64> {
    let kind = llama.meta_val_str("tokenizer.ggml.model").ok()?;
    if !BOUNDED_TOKENIZERS.contains(&kind.as_str()) {
        return None;
    }
    let vocab = llama.vocab();
    let mut buf = Vec::new();
    let longest = (0..vocab.n_tokens())
        .map(|t| {
            buf.clear();
            vocab.token_to_piece_into(LlamaToken::new(t), &mut buf, true, None);
            buf.len() as u64
        })
        .max()
        .unwrap_or(0);
    Some(longest.max(MIN_TOKEN_BYTES_BOUND))
}

/// The bytes that count toward the bound: a special token with llama.cpp's `lstrip`/`rstrip`
/// attribute swallows the ASCII whitespace (C `isspace`) next to it without a token of its own.
fn counted_bytes(text: &str) -> u64 {
    text.bytes().filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')).count() as u64
}

impl LoadedModel {
    pub(crate) fn load(backend: &LlamaBackend, cfg: &Resolved) -> Result<Self, EngineError> {
        let path = &cfg.model_path;
        if !path.is_file() {
            return Err(EngineError::LoadFailed(format!(
                "model file {} not found (set FERROGATE_MODEL_DIR or an absolute model_path; \
                 `make fetch-models` downloads the defaults)",
                path.display()
            )));
        }
        let params = LlamaModelParams::default();
        let llama = guarded("model load", || LlamaModel::load_from_file(backend, path, &params))?
            .map_err(|e| EngineError::LoadFailed(format!("{}: {e}", path.display())))?;
        Self::from_llama(llama, path, cfg.chat_template.as_deref())
    }

    fn from_llama(llama: LlamaModel, path: &Path, template: Option<&str>) -> Result<Self, EngineError> {
        let architecture = llama.meta_val_str("general.architecture").unwrap_or_default();
        let meta_u64 =
            |key: &str| llama.meta_val_str(&format!("{architecture}.{key}")).ok().and_then(|v| v.parse::<u64>().ok());
        let n_head = u64::from(llama.n_head().max(1));
        let n_embd = u64::try_from(llama.n_embd()).unwrap_or(0);
        let k_len = meta_u64("attention.key_length").unwrap_or(n_embd / n_head);
        let v_len = meta_u64("attention.value_length").unwrap_or(n_embd / n_head);
        let kv_bytes_per_token = u64::from(llama.n_layer()) * u64::from(llama.n_head_kv()) * (k_len + v_len) * 2;
        let n_swa = meta_u64("attention.sliding_window").and_then(|v| u32::try_from(v).ok()).unwrap_or(0);

        let vocab = llama.vocab();
        let n_vocab = vocab.n_tokens();
        let special_text = |t: LlamaToken| {
            if (0..n_vocab).contains(&t.0) {
                String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
            } else {
                String::new()
            }
        };
        let bos_text = special_text(vocab.bos());
        let eos_text = special_text(vocab.eos());
        let add_bos = vocab.should_add_bos();
        let gguf_template = llama.meta_val_str("tokenizer.chat_template").ok();
        let template =
            ChatTemplate::select(template, gguf_template.as_deref(), &architecture, bos_text.clone(), eos_text)
                .map_err(EngineError::LoadFailed)?;
        let name = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let max_token_bytes = max_token_bytes(&llama);
        tracing::debug!(?max_token_bytes, "longest token piece");
        Ok(Self {
            llama,
            template,
            architecture,
            name,
            add_bos,
            bos_text,
            n_vocab,
            n_swa,
            kv_bytes_per_token,
            max_token_bytes,
        })
    }

    pub(crate) fn info(&self, parallel: usize, ctx_per_seq: u32, threads: usize) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            architecture: self.architecture.clone(),
            n_ctx_train: self.llama.n_ctx_train(),
            n_params: self.llama.n_params(),
            size_bytes: self.llama.size(),
            chat_template: self.template.source(),
            parallel,
            ctx_per_seq,
            threads,
        }
    }

    /// The prompt as text: raw, or messages through the chat template.
    pub(crate) fn render(&self, prompt: &Prompt) -> Result<String, EngineError> {
        match prompt {
            Prompt::Text(text) => Ok(text.clone()),
            Prompt::Chat { messages, tools } => {
                let text = self.template.render(messages, tools.as_ref()).map_err(EngineError::InvalidRequest)?;
                // The tokenizer adds BOS; a template that also writes it would double it.
                match text.strip_prefix(self.bos_text.as_str()) {
                    Some(rest) if self.add_bos && !self.bos_text.is_empty() => Ok(rest.to_owned()),
                    _ => Ok(text),
                }
            }
        }
    }

    /// Prompt tokens: BOS when the model wants it, special tokens in the text parsed.
    pub(crate) fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<LlamaToken>, EngineError> {
        let text = self.render(prompt)?;
        self.tokenize(&text, true)
    }

    /// Whether `text` certainly has more than `tokens` tokens, judged from its length alone:
    /// every token stands for at most `max_token_bytes` of the counted bytes, so more than
    /// `tokens × max_token_bytes` of them need more than `tokens` tokens. Linear and cheap, so a
    /// prompt of megabytes is refused without tokenizing it. Never true for a prompt that fits.
    pub(crate) fn provably_over(&self, text: &str, tokens: u32) -> bool {
        let Some(per_token) = self.max_token_bytes else { return false };
        (text.len() as u64) > u64::from(tokens).saturating_mul(per_token)
            && counted_bytes(text) > u64::from(tokens).saturating_mul(per_token)
    }

    pub(crate) fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<LlamaToken>, EngineError> {
        guarded("tokenize", || self.llama.vocab().tokenize(text.as_bytes(), add_special, true))
            .map_err(|_| EngineError::InvalidRequest("the prompt cannot be tokenized".into()))
    }

    /// The bytes a generated token stands for (special tokens render as nothing).
    pub(crate) fn piece(&self, token: LlamaToken, buf: &mut Vec<u8>) {
        buf.clear();
        if (0..self.n_vocab).contains(&token.0) {
            self.llama.vocab().token_to_piece_into(token, buf, false, None);
        }
    }

    /// End of generation: EOS, EOT, `<end_of_turn>`, `<|im_end|>` …
    pub(crate) fn is_eog(&self, token: LlamaToken) -> bool {
        self.llama.vocab().is_eog(token)
    }

    pub(crate) fn n_vocab(&self) -> i32 {
        self.n_vocab
    }

    /// A token to warm up with.
    pub(crate) fn warmup_token(&self) -> LlamaToken {
        let bos = self.llama.vocab().bos();
        if (0..self.n_vocab).contains(&bos.0) { bos } else { LlamaToken::new(0) }
    }

    /// The one context: `parallel` sequences of `ctx_per_seq` each, over a unified KV cache
    /// (as llama-server's `--kv-unified`) or one stream per sequence (n_ctx / n_seq_max each).
    pub(crate) fn new_context<'m>(
        &'m self,
        backend: &LlamaBackend,
        cfg: &Resolved,
        parallel: usize,
    ) -> Result<LlamaContext<'m>, EngineError> {
        let parallel_u32 = u32::try_from(parallel).unwrap_or(u32::MAX);
        let n_ctx = cfg
            .ctx_per_seq
            .checked_mul(parallel_u32)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| EngineError::Config("ctx_per_seq × parallel overflows".into()))?;
        let threads = i32::try_from(cfg.threads).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(Some(n_ctx))
            .with_n_batch(cfg.batch_size.max(parallel_u32))
            .with_n_ubatch(cfg.batch_size.min(512))
            .with_n_seq_max(parallel_u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(cfg.kv_unified);
        guarded("context creation", || self.llama.new_context(backend, params))?
            .map_err(|e| EngineError::LoadFailed(format!("llama context: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::counted_bytes;

    #[test]
    fn whitespace_a_special_token_may_swallow_is_not_counted() {
        assert_eq!(counted_bytes(" \t\n\x0b\x0c\r"), 0);
        assert_eq!(counted_bytes("a b\u{3000}"), 2 + 3, "only ASCII whitespace (C isspace) is left out");
    }
}
