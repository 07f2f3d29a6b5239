//! The embedding thread: loads the model, then per wake-up drains the waiting jobs, tokenizes
//! their inputs, packs them into decodes (one sequence per input, bounded by the token budget
//! and the sequence count) and answers each job with its normalized vectors.

use std::num::NonZeroU32;
use std::sync::mpsc::Receiver;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::watch;

use super::{EmbedConfig, EmbedError, EmbedInput, EmbedModelInfo, Embeddings, Job, State, normalize};
use crate::error::EngineError;
use crate::ffi::{backend, guarded};

/// One tokenized input, and where its vector goes.
struct Seq {
    job: usize,
    tokens: Vec<LlamaToken>,
}

pub(super) fn run(cfg: EmbedConfig, rx: Receiver<Job>, state: watch::Sender<State>) {
    let model = match load(&cfg) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "embedding model failed to load");
            state.send_replace(State::Failed(e));
            return;
        }
    };
    let Ok(backend) = backend() else { return };
    let threads = cfg.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = i32::try_from(threads).unwrap_or(1);
    let seqs = cfg.max_batch_inputs.min(64);
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_n_ctx(NonZeroU32::new(cfg.batch_tokens))
        .with_n_batch(cfg.batch_tokens)
        .with_n_ubatch(cfg.batch_tokens)
        .with_n_seq_max(u32::try_from(seqs).unwrap_or(1))
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let ctx = match guarded("embedding context", || model.new_context(backend, params)) {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(e)) => return fail(&state, format!("embedding context: {e}")),
        Err(e) => return fail(&state, e.to_string()),
    };
    let info = info(&cfg, &model);
    tracing::info!(model = %info.name, dimensions = info.dimensions, threads, "embedding model ready");
    let mut worker = Worker { model: &model, ctx, batch: LlamaBatch::new(cfg.batch_tokens as usize, 1), info, seqs };
    state.send_replace(State::Ready(worker.info.clone()));
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut inputs = jobs[0].inputs.len();
        while inputs < cfg.max_batch_inputs {
            let Ok(job) = rx.try_recv() else { break };
            inputs += job.inputs.len();
            jobs.push(job);
        }
        worker.serve(jobs);
    }
}

fn fail(state: &watch::Sender<State>, why: String) {
    tracing::error!(error = %why, "embedding model failed to start");
    state.send_replace(State::Failed(EngineError::LoadFailed(why)));
}

fn load(cfg: &EmbedConfig) -> Result<LlamaModel, EngineError> {
    let path = crate::config::find_model(&cfg.model_path);
    if !path.is_file() {
        return Err(EngineError::LoadFailed(format!(
            "embedding model {} not found (`make fetch-models` downloads it)",
            path.display()
        )));
    }
    let backend = backend()?;
    let model = guarded("model load", || LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()))?
        .map_err(|e| EngineError::LoadFailed(format!("{}: {e}", path.display())))?;
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    if model.meta_val_str(&format!("{arch}.pooling_type")).is_err() {
        return Err(EngineError::LoadFailed(format!(
            "{} has no pooling type: not a sentence-embedding model",
            path.display()
        )));
    }
    Ok(model)
}

fn info(cfg: &EmbedConfig, model: &LlamaModel) -> EmbedModelInfo {
    EmbedModelInfo {
        name: cfg.model_path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
        dimensions: usize::try_from(model.n_embd_out()).unwrap_or(0),
        max_input_tokens: model.n_ctx_train().min(cfg.batch_tokens),
    }
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    info: EmbedModelInfo,
    /// Sequences one decode carries at most (the context's `n_seq_max`).
    seqs: usize,
}

impl Worker<'_> {
    /// Answers every job: tokenize (a bad input fails its own job only), decode in packs,
    /// reply in input order.
    fn serve(&mut self, jobs: Vec<Job>) {
        let mut live: Vec<(Job, u32)> = Vec::with_capacity(jobs.len());
        let mut seqs: Vec<Seq> = Vec::new();
        for job in jobs {
            if job.reply.is_closed() {
                continue; // the caller went away: nothing to compute
            }
            match self.tokenize(&job.inputs) {
                Ok(tokenized) => {
                    let n: usize = tokenized.iter().map(Vec::len).sum();
                    let idx = live.len();
                    seqs.extend(tokenized.into_iter().map(|tokens| Seq { job: idx, tokens }));
                    live.push((job, u32::try_from(n).unwrap_or(u32::MAX)));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        match self.compute(&seqs) {
            Ok(vectors) => {
                let mut per_job: Vec<Vec<Vec<f32>>> = live.iter().map(|_| Vec::new()).collect();
                for (seq, v) in seqs.iter().zip(vectors) {
                    per_job[seq.job].push(v);
                }
                for ((job, tokens), vectors) in live.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(Embeddings { vectors, prompt_tokens: tokens }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedding decode failed");
                for (job, _) in live {
                    let _ = job.reply.send(Err(EmbedError::Engine(e.clone())));
                }
            }
        }
    }

    fn tokenize(&self, inputs: &[EmbedInput]) -> Result<Vec<Vec<LlamaToken>>, EmbedError> {
        let n_vocab = i64::from(self.model.n_vocab());
        let max = self.info.max_input_tokens;
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| {
                let tokens = match input {
                    EmbedInput::Text(text) => {
                        guarded("tokenize", || self.model.vocab().tokenize(text.as_bytes(), true, false))?
                    }
                    EmbedInput::Tokens(ids) => ids
                        .iter()
                        .map(|&id| match i32::try_from(id) {
                            Ok(t) if (0..n_vocab).contains(&id) => Ok(LlamaToken::new(t)),
                            _ => Err(EmbedError::Invalid(format!(
                                "input {index}: token id {id} is outside this model's vocabulary (0..{n_vocab})"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                };
                if tokens.is_empty() {
                    return Err(EmbedError::Invalid(format!("input {index} is empty")));
                }
                if tokens.len() > max as usize {
                    return Err(EmbedError::TooLong { index, tokens: tokens.len(), max });
                }
                Ok(tokens)
            })
            .collect()
    }

    /// Vectors for `seqs`, in order: as many sequences per decode as fit the token budget.
    fn compute(&mut self, seqs: &[Seq]) -> Result<Vec<Vec<f32>>, EngineError> {
        let budget = self.ctx.n_batch() as usize;
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        while start < seqs.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < seqs.len() && end - start < self.seqs && tokens + seqs[end].tokens.len() <= budget {
                tokens += seqs[end].tokens.len();
                end += 1;
            }
            // Cannot happen (inputs are at most the budget), but never loop without progress.
            end = end.max(start + 1);
            self.decode(&seqs[start..end], &mut out)?;
            start = end;
        }
        Ok(out)
    }

    fn decode(&mut self, pack: &[Seq], out: &mut Vec<Vec<f32>>) -> Result<(), EngineError> {
        self.batch.clear();
        for (i, seq) in pack.iter().enumerate() {
            let id = i32::try_from(i).unwrap_or(0);
            self.batch.add_sequence(&seq.tokens, id, true).map_err(|e| EngineError::Inference(e.to_string()))?;
        }
        let (ctx, batch) = (&mut self.ctx, &mut self.batch);
        guarded("embedding decode", || ctx.decode(batch))?.map_err(|e| EngineError::Inference(e.to_string()))?;
        for i in 0..pack.len() {
            let id = i32::try_from(i).unwrap_or(0);
            let mut v = self
                .ctx
                .embeddings_seq_ith(id)
                .map_err(|e| EngineError::Inference(format!("sequence {i}: {e}")))?
                .to_vec();
            normalize(&mut v);
            out.push(v);
        }
        Ok(())
    }
}
