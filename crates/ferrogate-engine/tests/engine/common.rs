//! Helpers for the engine tests: the real models from FERROGATE_MODEL_DIR (a missing model is a
//! failure with instructions, never a skip), small configs, and collecting a whole generation.

use std::path::PathBuf;
use std::time::Duration;

use ferrogate_engine::{Engine, EngineConfig, Finish, GenEvent, GenerateRequest, Generation, SamplingParams};
use serde_json::{Value, json};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

/// A guard against hangs, not a synchronisation sleep.
pub const GUARD: Duration = Duration::from_secs(120);

pub fn model_path(file: &str) -> PathBuf {
    let path = ferrogate_engine::model_dir().join(file);
    assert!(
        path.is_file(),
        "model file {} is missing: run `make fetch-models` (scripts/fetch-models.sh) or point \
         FERROGATE_MODEL_DIR at a directory holding {file}",
        path.display()
    );
    path
}

/// A small SmolLM2 config: 512 tokens per sequence, 4 sequences, one compute thread. One
/// thread because test runners start several test processes at once: two engines with two
/// OpenMP threads each on 2 cores spin at every barrier and run many times slower.
pub fn smollm2() -> EngineConfig {
    EngineConfig { threads: Some(1), ctx_per_seq: 512, parallel: Some(4), ..EngineConfig::new(model_path(SMOLLM2)) }
}

pub async fn start(cfg: EngineConfig) -> Engine {
    let engine = Engine::start(cfg).expect("valid config");
    tokio::time::timeout(GUARD, engine.wait_ready()).await.expect("model loads in time").expect("model loads");
    engine
}

pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

pub fn greedy(messages: Vec<Value>, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(max_tokens),
        ..GenerateRequest::chat(messages)
    }
}

#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub chunks: Vec<String>,
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub finish: Finish,
}

/// Reads a generation to its end; panics on an engine error or an out-of-order event.
pub async fn collect(mut generation: Generation) -> Output {
    let read = async {
        let mut chunks = Vec::new();
        let mut started = None;
        while let Some(event) = generation.next().await {
            match event {
                GenEvent::Started { prompt_tokens, cached_tokens } => started = Some((prompt_tokens, cached_tokens)),
                GenEvent::Logprob(_) => assert!(started.is_some(), "logprob before Started"),
                GenEvent::Text(t) => {
                    assert!(started.is_some(), "text before Started");
                    chunks.push(t);
                }
                GenEvent::Done(finish) => {
                    let (prompt_tokens, cached_tokens) = started.expect("Started before Done");
                    return Output { text: chunks.concat(), chunks, prompt_tokens, cached_tokens, finish };
                }
                GenEvent::Error(e) => panic!("generation failed: {e}"),
            }
        }
        panic!("stream ended without Done")
    };
    tokio::time::timeout(GUARD, read).await.expect("generation finishes in time")
}

pub async fn run(engine: &Engine, req: GenerateRequest) -> Output {
    collect(engine.submit(req).expect("submit accepted")).await
}
