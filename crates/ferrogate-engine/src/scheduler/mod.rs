//! The scheduler thread: loads the model, owns the one llama context, and runs continuous
//! batching — every step admits waiting requests into free slots, decodes one token for each
//! generating sequence plus a prefill chunk of new prompts in a single `llama_decode`, samples,
//! and streams text out. Sequences join and leave at token granularity.
//!
//! Invariants: nothing here blocks on a caller; a request is answered with exactly one `Done`
//! or `Error` (unless its receiver is gone); a panic in a step fails the running sequences and
//! the thread goes on serving.

mod step;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;

use crate::config::default_parallel;
use crate::error::EngineError;
use crate::ffi;
use crate::job::{Job, Shared};
use crate::model::LoadedModel;
use crate::request::GenEvent;
use crate::slots::{Slot, pick_slot};
use crate::stats::EngineStatus;

/// Thread entry point: load, serve until every handle is dropped and the work is done.
pub(crate) fn run(shared: Arc<Shared>, jobs: Receiver<Job>) {
    let outcome = ffi::guarded("scheduler", || serve(&shared, &jobs)).and_then(|r| r);
    if let Err(e) = outcome {
        tracing::error!(error = %e, model = %shared.cfg.model_path.display(), "embedded engine stopped");
        shared.status.send_replace(EngineStatus::Failed(e.to_string()));
    }
    while let Ok(job) = jobs.try_recv() {
        let _ = job.tx.send(GenEvent::Error(EngineError::Stopped));
        shared.stats.release(None);
    }
}

fn serve(shared: &Shared, jobs: &Receiver<Job>) -> Result<(), EngineError> {
    let cfg = &shared.cfg;
    let t0 = Instant::now();
    let backend = ffi::backend()?;
    let model = Arc::new(LoadedModel::load(backend, cfg)?);
    let n_ctx_train = model.llama.n_ctx_train();
    if cfg.ctx_per_seq > n_ctx_train {
        return Err(EngineError::LoadFailed(format!(
            "ctx_per_seq {} exceeds the model's training context {n_ctx_train}",
            cfg.ctx_per_seq
        )));
    }
    let parallel =
        cfg.parallel.unwrap_or_else(|| default_parallel(cfg.threads, cfg.ctx_per_seq, model.kv_bytes_per_token));
    let ctx = model.new_context(backend, cfg, parallel)?;
    let info = model.info(parallel, cfg.ctx_per_seq, cfg.threads);
    let stats = &shared.stats;
    let n_ctx = u64::from(ctx.n_ctx());
    stats.slots_total.store(parallel, std::sync::atomic::Ordering::Relaxed);
    stats.kv_cells_total.store(n_ctx, std::sync::atomic::Ordering::Relaxed);
    stats
        .memory_bytes
        .store(model.llama.size() + n_ctx * model.kv_bytes_per_token, std::sync::atomic::Ordering::Relaxed);
    let _ = shared.model.set(Arc::clone(&model));
    let _ = shared.info.set(info);

    let mut scheduler = Scheduler::new(&model, ctx, shared, jobs, parallel);
    if cfg.warmup {
        scheduler.warmup()?;
    }
    tracing::info!(
        model = %model.name,
        parallel,
        threads = cfg.threads,
        ctx_per_seq = cfg.ctx_per_seq,
        template = %model.template.source(),
        load_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        "embedded engine ready"
    );
    shared.status.send_replace(EngineStatus::Ready);
    scheduler.run();
    Ok(())
}

pub(crate) struct Scheduler<'a> {
    model: &'a LoadedModel,
    ctx: LlamaContext<'a>,
    batch: LlamaBatch<'static>,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    jobs: &'a Receiver<Job>,
    shared: &'a Shared,
    /// Monotonic counter: slot LRU and admission order.
    tick: u64,
    /// Every `Engine` handle is gone: finish the work, then exit.
    closed: bool,
    /// Reused buffer for token bytes.
    piece: Vec<u8>,
}

impl<'a> Scheduler<'a> {
    fn new(
        model: &'a LoadedModel,
        ctx: LlamaContext<'a>,
        shared: &'a Shared,
        jobs: &'a Receiver<Job>,
        parallel: usize,
    ) -> Self {
        let capacity = (shared.cfg.batch_size as usize).max(parallel);
        Self {
            model,
            ctx,
            batch: LlamaBatch::new(capacity, 1),
            slots: (0..parallel).map(|i| Slot::new(i32::try_from(i).unwrap_or(i32::MAX))).collect(),
            waiting: VecDeque::new(),
            jobs,
            shared,
            tick: 0,
            closed: false,
            piece: Vec::with_capacity(32),
        }
    }

    /// One tiny decode so the first request does not pay for lazy allocations.
    fn warmup(&mut self) -> Result<(), EngineError> {
        self.batch.clear();
        self.batch
            .add(self.model.warmup_token(), 0, &[0], true)
            .map_err(|e| EngineError::LoadFailed(format!("warm-up: {e}")))?;
        self.ctx.decode(&mut self.batch).map_err(|e| EngineError::LoadFailed(format!("warm-up decode: {e}")))?;
        self.ctx.clear_kv_cache();
        Ok(())
    }

    fn run(&mut self) {
        while self.intake() {
            if let Err(e) = ffi::guarded("scheduler step", || self.step()) {
                self.fail_all(e);
            }
        }
    }

    /// Takes new jobs: blocks while there is nothing to do, otherwise only drains. False when
    /// the engine is closed and idle.
    fn intake(&mut self) -> bool {
        if self.is_idle() {
            if self.closed {
                return false;
            }
            match self.jobs.recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(_) => return false,
            }
        }
        loop {
            match self.jobs.try_recv() {
                Ok(job) => self.waiting.push_back(job),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return true;
                }
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.slots.iter().all(Slot::is_free)
    }

    /// Frees the slots (and KV) of requests whose caller went away, and drops such waiters.
    fn reap_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].seq.as_ref().is_some_and(|s| s.tx.is_closed()) {
                self.release(i, false, false);
            }
        }
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.tx.is_closed());
        for _ in self.waiting.len()..before {
            self.shared.stats.release(None);
        }
    }

    /// Moves waiting jobs into free slots, reusing the longest cached prefix.
    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let use_cache = self.shared.cfg.prompt_cache;
            let Some(front) = self.waiting.front() else { return };
            let Some((i, lcp)) = pick_slot(&self.slots, &front.tokens, use_cache) else {
                return;
            };
            if let Some(job) = self.waiting.pop_front() {
                self.start(i, job, lcp);
            }
        }
    }

    /// Slot `i` was freed: by completion (`completed`), cancellation or failure. Its KV stays
    /// for prefix reuse only after a normal completion with the prompt cache on.
    fn release(&mut self, i: usize, completed: bool, keep_cache: bool) {
        self.tick += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.tick;
        if let Some(seq) = slot.seq.take() {
            self.shared.stats.release(completed.then(|| seq.started.elapsed()));
        }
        if !(keep_cache && self.shared.cfg.prompt_cache) {
            self.forget(i);
        }
        self.publish();
    }

    /// Drops every KV cell of slot `i`'s sequence.
    fn forget(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let id = u32::try_from(slot.id).ok();
        let _ = self.ctx.clear_kv_cache_seq(id, None, None);
        slot.cached.clear();
    }

    /// A step panicked: fail the running sequences and start from an empty cache.
    fn fail_all(&mut self, err: EngineError) {
        for i in 0..self.slots.len() {
            if let Some(seq) = &self.slots[i].seq {
                let _ = seq.tx.send(GenEvent::Error(err.clone()));
                self.release(i, false, false);
            }
        }
        self.ctx.clear_kv_cache();
        self.slots.iter_mut().for_each(|s| s.cached.clear());
        self.publish();
    }

    fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.shared.stats;
        let busy = self.slots.iter().filter(|s| !s.is_free()).count();
        let cells: usize = self.slots.iter().map(|s| s.cached.len()).sum();
        stats.slots_busy.store(busy, Relaxed);
        stats.queue_depth.store(self.waiting.len(), Relaxed);
        stats.kv_cells_used.store(cells as u64, Relaxed);
    }
}
