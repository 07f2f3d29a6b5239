//! One scheduler step: start admitted requests, build the batch (one token per generating
//! sequence first, then prompt chunks up to `batch_size`), decode, sample and stream.
//!
//! The logits of a sequence are read at its token's index in this batch (`logits_at`), never at
//! its sequence id. `Slot::cached` is extended only after a successful decode.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use llama_cpp_2::DecodeError;
use llama_cpp_2::token::LlamaToken;

use super::Scheduler;
use crate::error::EngineError;
use crate::job::Job;
use crate::logprobs::logprobs;
use crate::request::{Finish, FinishReason, GenEvent, TokenLogprob};
use crate::sampling::{argmax, is_plain_greedy, sampler_for};
use crate::slots::{Sequence, Slot};
use crate::stop::{StopMatcher, StopOutcome};
use crate::utf8::Utf8Decoder;

/// Tokens one slot contributes to the batch being decoded.
struct Planned {
    slot: usize,
    tokens: Vec<LlamaToken>,
    /// Prompt tokens (prefill) rather than the slot's pending generated token.
    prompt: bool,
}

impl Scheduler<'_> {
    pub(super) fn step(&mut self) {
        self.reap_cancelled();
        self.admit();
        self.publish();
        if self.slots.iter().all(Slot::is_free) {
            return;
        }
        let plan = self.build_batch();
        if plan.is_empty() {
            return;
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => self.commit(plan),
            Err(e) => self.fail_batch(&plan, &e),
        }
        self.publish();
    }

    /// Puts `job` into free slot `i`, keeping up to `lcp` cached prompt tokens.
    pub(super) fn start(&mut self, i: usize, job: Job, lcp: usize) {
        let n = job.tokens.len();
        // At least one prompt token must be decoded to get logits for the first sample.
        let mut reuse = if self.shared.cfg.prompt_cache { lcp.min(n - 1) } else { 0 };
        if reuse > 0 && !self.window_intact(i, reuse) {
            reuse = 0;
        }
        let id = u32::try_from(self.slots[i].id).ok();
        let trimmed = self.ctx.clear_kv_cache_seq(id, u32::try_from(reuse).ok(), None).unwrap_or(false);
        if !trimmed {
            self.forget(i);
            reuse = 0;
        }
        self.slots[i].cached.truncate(reuse);

        let stats = &self.shared.stats;
        stats.requests.fetch_add(1, Relaxed);
        stats.prompt_tokens.fetch_add(n as u64, Relaxed);
        stats.cached_tokens.fetch_add(reuse as u64, Relaxed);
        self.tick += 1;
        let seq = Sequence {
            greedy: is_plain_greedy(&job.sampling) && job.grammar.is_none(),
            sampler: sampler_for(&job.sampling, self.model.n_vocab(), job.grammar),
            stop: StopMatcher::new(&job.stop),
            logprobs: job.logprobs,
            prompt: job.tokens,
            prompt_done: reuse,
            cached_tokens: u32::try_from(reuse).unwrap_or(u32::MAX),
            pending: None,
            generated: 0,
            max_tokens: job.max_tokens,
            utf8: Utf8Decoder::default(),
            logits_at: None,
            admitted: self.tick,
            started: Instant::now(),
            tx: job.tx,
        };
        let started = GenEvent::Started { prompt_tokens: seq.prompt_tokens(), cached_tokens: seq.cached_tokens };
        tracing::debug!(
            slot = i,
            prompt = n,
            cached = reuse,
            queued_ms = u64::try_from(job.submitted.elapsed().as_millis()).unwrap_or(u64::MAX),
            "sequence started"
        );
        let gone = seq.tx.send(started).is_err();
        self.slots[i].seq = Some(seq);
        if gone {
            self.release(i, false, false);
        }
    }

    /// With a sliding-window model, reusing `reuse` cached tokens needs the window before it
    /// to still be in the cache (SWA layers drop older cells).
    fn window_intact(&self, i: usize, reuse: usize) -> bool {
        let n_swa = self.model.n_swa as usize;
        if n_swa == 0 {
            return true;
        }
        let pos_min = self.ctx.kv_cache_seq_pos_min(self.slots[i].id);
        usize::try_from(pos_min).is_ok_and(|p| p <= reuse.saturating_sub(n_swa))
    }

    fn build_batch(&mut self) -> Vec<Planned> {
        self.batch.clear();
        let mut plan = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(seq) = slot.seq.as_mut() else { continue };
            let Some(token) = seq.pending else { continue };
            seq.logits_at = Some(self.batch.n_tokens());
            let pos = pos_of(slot.cached.len());
            if self.batch.add(token, pos, &[slot.id], true).is_err() {
                seq.logits_at = None;
                break;
            }
            plan.push(Planned { slot: i, tokens: vec![token], prompt: false });
        }
        let mut prefill: Vec<usize> =
            (0..self.slots.len()).filter(|&i| self.slots[i].seq.as_ref().is_some_and(Sequence::in_prefill)).collect();
        prefill.sort_by_key(|&i| self.slots[i].seq.as_ref().map_or(0, |s| s.admitted));
        let mut room =
            (self.shared.cfg.batch_size as usize).saturating_sub(usize::try_from(self.batch.n_tokens()).unwrap_or(0));
        for i in prefill {
            if room == 0 {
                break;
            }
            let tokens = self.add_prompt_chunk(i, room);
            room -= tokens.len();
            if !tokens.is_empty() {
                plan.push(Planned { slot: i, tokens, prompt: true });
            }
        }
        plan
    }

    /// Adds up to `room` of slot `i`'s remaining prompt tokens; logits only for the last one.
    fn add_prompt_chunk(&mut self, i: usize, room: usize) -> Vec<LlamaToken> {
        let slot = &mut self.slots[i];
        let Some(seq) = slot.seq.as_mut() else { return Vec::new() };
        let start = seq.prompt_done;
        let end = (start + room).min(seq.prompt.len());
        let mut added = Vec::with_capacity(end - start);
        for (k, &token) in seq.prompt[start..end].iter().enumerate() {
            let at = start + k;
            let last = at + 1 == seq.prompt.len();
            let index = self.batch.n_tokens();
            if self.batch.add(token, pos_of(at), &[slot.id], last).is_err() {
                break;
            }
            if last {
                seq.logits_at = Some(index);
            }
            added.push(token);
        }
        added
    }

    /// The decode succeeded: record the new KV, then sample every sequence that has logits.
    fn commit(&mut self, plan: Vec<Planned>) {
        for p in plan {
            let slot = &mut self.slots[p.slot];
            let Some(seq) = slot.seq.as_mut() else { continue };
            if p.prompt {
                seq.prompt_done += p.tokens.len();
            } else {
                seq.pending = None;
            }
            slot.cached.extend(p.tokens);
        }
        for i in 0..self.slots.len() {
            let Some(seq) = self.slots[i].seq.as_mut() else { continue };
            let Some(at) = seq.logits_at.take() else { continue };
            let token = if seq.greedy {
                LlamaToken(argmax(self.ctx.get_logits_ith(at)))
            } else {
                seq.sampler.sample(&self.ctx, at)
            };
            let wants_logprobs = seq.logprobs;
            self.shared.stats.completion_tokens.fetch_add(1, Relaxed);
            if let Some(k) = wants_logprobs
                && !self.model.is_eog(token)
            {
                let lp = self.token_logprob(at, token, k);
                if let Some(seq) = &self.slots[i].seq {
                    let _ = seq.tx.send(GenEvent::Logprob(lp));
                }
            }
            self.on_token(i, token);
        }
    }

    /// Log-softmax of the logits at batch index `at` for `token`, with `k` alternatives.
    fn token_logprob(&self, at: i32, token: LlamaToken, k: u8) -> TokenLogprob {
        let logits = self.ctx.get_logits_ith(at);
        let index = usize::try_from(token.0).unwrap_or(usize::MAX);
        let (logprob, top) = logprobs(logits, index, usize::from(k));
        let bytes_of = |t: usize| {
            let mut buf = Vec::new();
            self.model.piece(LlamaToken(i32::try_from(t).unwrap_or(-1)), &mut buf);
            buf
        };
        TokenLogprob {
            bytes: bytes_of(index),
            logprob,
            top: top.into_iter().map(|(t, lp)| (bytes_of(t), lp)).collect(),
        }
    }

    fn on_token(&mut self, i: usize, token: LlamaToken) {
        let model = self.model;
        let mut piece = std::mem::take(&mut self.piece);
        let Some(seq) = self.slots[i].seq.as_mut() else { return };
        seq.generated += 1;
        let finish = if model.is_eog(token) {
            Some(FinishReason::Stop)
        } else {
            model.piece(token, &mut piece);
            let text = seq.utf8.push(&piece);
            match seq.stop.push(&text) {
                StopOutcome::Continue(out) => {
                    send_text(seq, out);
                    (seq.generated >= seq.max_tokens).then_some(FinishReason::Length)
                }
                StopOutcome::Stopped(out) => {
                    send_text(seq, out);
                    self.piece = piece;
                    return self.finish(i, FinishReason::Stop, false);
                }
            }
        };
        self.piece = piece;
        match finish {
            Some(reason) => self.finish(i, reason, true),
            None => seq_set_pending(&mut self.slots[i], token),
        }
    }

    /// Ends slot `i`'s request; `flush` releases held text (not after a stop string).
    fn finish(&mut self, i: usize, reason: FinishReason, flush: bool) {
        let Some(seq) = self.slots[i].seq.as_mut() else { return };
        if flush {
            let tail = seq.utf8.finish();
            let out = match seq.stop.push(&tail) {
                StopOutcome::Continue(out) => out + &seq.stop.finish(),
                StopOutcome::Stopped(out) => out,
            };
            send_text(seq, out);
        }
        let done = Finish {
            reason,
            prompt_tokens: seq.prompt_tokens(),
            cached_tokens: seq.cached_tokens,
            completion_tokens: seq.generated,
        };
        // Release (and publish the freed slot) before the caller can observe the end.
        let tx = seq.tx.clone();
        self.release(i, true, true);
        let _ = tx.send(GenEvent::Done(done));
    }

    /// llama_decode failed: the sequences in this batch get an error and lose their KV.
    fn fail_batch(&mut self, plan: &[Planned], err: &DecodeError) {
        tracing::error!(error = %err, sequences = plan.len(), "llama_decode failed");
        for p in plan {
            if let Some(seq) = &self.slots[p.slot].seq {
                let msg = format!("llama_decode failed: {err}");
                let _ = seq.tx.send(GenEvent::Error(EngineError::Inference(msg)));
                self.release(p.slot, false, false);
            }
        }
    }
}

fn send_text(seq: &Sequence, text: String) {
    if !text.is_empty() {
        // A closed receiver is noticed (and the slot freed) at the next step.
        let _ = seq.tx.send(GenEvent::Text(text));
    }
}

fn seq_set_pending(slot: &mut Slot, token: LlamaToken) {
    if let Some(seq) = slot.seq.as_mut() {
        seq.pending = Some(token);
    }
}

fn pos_of(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}
