//! The embedded embedding backend (`kind = "embedded_embeddings"`): a sentence-embedding GGUF run
//! by the engine's `Embedder` (its own thread and llama context) behind the `Backend` trait. It
//! serves `embed` only; chat and text completions are refused as the caller's error.
//!
//! Invariant: dropping an `embed` future withdraws its job before the thread computes it.

use async_trait::async_trait;
use ferrogate_core::{
    Backend, BackendError, Capabilities, Completion, EmbedItem, EmbedOutput, EmbedRequest, EventStream, Health,
    InferenceRequest,
};
use ferrogate_engine::{EmbedConfig, EmbedError, EmbedInput, Embedder, EngineError};

const CAPABILITIES: Capabilities = Capabilities {
    chat: false,
    text_completion: false,
    tools: false,
    images: false,
    usage: true,
    logprobs: false,
    embeddings: true,
};

pub struct EmbeddingBackend {
    name: String,
    embedder: Embedder,
}

impl EmbeddingBackend {
    /// Starts the embedding thread; the model loads in the background (health: NotReady).
    pub fn start(name: &str, cfg: EmbedConfig) -> Result<Self, String> {
        let embedder = Embedder::start(cfg).map_err(|e| e.to_string())?;
        Ok(Self { name: name.to_owned(), embedder })
    }

    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    fn not_for_chat(&self) -> BackendError {
        BackendError::InvalidRequest {
            param: Some("model".into()),
            message: format!("backend '{}' is an embedding model: use /v1/embeddings", self.name),
        }
    }
}

/// The engine's refusal or failure, with blame and retryability.
pub fn embed_error(e: EmbedError) -> BackendError {
    match e {
        EmbedError::NotReady => BackendError::NotReady("the embedding model is loading".into()),
        EmbedError::QueueFull => BackendError::Overloaded {
            message: "the embedding queue is full".into(),
            retry_after: std::time::Duration::from_secs(1),
        },
        e @ EmbedError::TooLong { .. } => BackendError::ContextLength { message: e.to_string() },
        EmbedError::Invalid(m) => BackendError::InvalidRequest { param: Some("input".into()), message: m },
        EmbedError::Engine(EngineError::InvalidRequest(m)) => {
            BackendError::InvalidRequest { param: Some("input".into()), message: m }
        }
        EmbedError::Engine(EngineError::Loading) => BackendError::NotReady("the embedding model is loading".into()),
        EmbedError::Engine(e) => BackendError::Internal(e.to_string()),
    }
}

#[async_trait]
impl Backend for EmbeddingBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "embedded_embeddings"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn chat(&self, _req: InferenceRequest) -> Result<Completion, BackendError> {
        Err(self.not_for_chat())
    }

    async fn chat_stream(&self, _req: InferenceRequest) -> Result<EventStream, BackendError> {
        Err(self.not_for_chat())
    }

    async fn embed(&self, req: EmbedRequest) -> Result<EmbedOutput, BackendError> {
        if let Some(d) = req.dimensions {
            let native = self.embedder.status().map(|i| i.dimensions).unwrap_or(0);
            if usize::try_from(d).ok() != Some(native) {
                return Err(BackendError::InvalidRequest {
                    param: Some("dimensions".into()),
                    message: format!(
                        "this model does not support 'dimensions' other than its native {native}; omit it"
                    ),
                });
            }
        }
        let inputs = req
            .inputs
            .into_iter()
            .map(|i| match i {
                EmbedItem::Text(t) => EmbedInput::Text(t),
                EmbedItem::Tokens(t) => EmbedInput::Tokens(t),
            })
            .collect();
        let out = self.embedder.embed(inputs).await.map_err(embed_error)?;
        Ok(EmbedOutput { vectors: out.vectors, prompt_tokens: Some(out.prompt_tokens) })
    }

    async fn health(&self) -> Health {
        match self.embedder.status() {
            Ok(_) => Health::Healthy,
            Err(EngineError::Loading) => Health::NotReady("loading".into()),
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }

    async fn models(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.embedder.status().map(|i| vec![i.name]).unwrap_or_default())
    }
}
