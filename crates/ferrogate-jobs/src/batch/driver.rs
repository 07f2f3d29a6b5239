//! Driving batches through their statuses on top of the queue and the file and batch stores:
//! validate the input and enqueue one `batch_item` job per line, keep `request_counts` live,
//! write the output and error files, finish (completed, expired, cancelled).
//!
//! Every step is idempotent and conditional, so [`BatchDriver::tick`] can run on every instance
//! and again after a crash: lines are enqueued with the dedupe key `{batch_id}:{line}` (a
//! restarted validation adds nothing), and status changes apply only from the expected status.
//! Each line is one job with one result, so the output never holds a `custom_id` twice.

use std::sync::Arc;

use ferrogate_core::jobs::{
    Batch, BatchChanges, BatchError, BatchId, BatchStatus, BatchStore, EventType, FileId, FileLimits, FilePurpose,
    FileStore, InputLimits, JobKind, JobQueue, JobState, NewFile, NewJob, Page, RequestCounts, validate_input,
};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_core::tenancy::{StoreError, TenantId};

use super::item::{BatchItemJob, FileLine, file_line};
use crate::tenancy_error;
use crate::webhook::{Publisher, WebhookEvent};

/// Batch settings (`[batches]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Input file limits.
    pub input_limits: InputLimits,
    /// The items' priority: after background responses (lower runs first).
    pub item_priority: i32,
    /// Attempts per line before it is dead (an error line with `server_error`).
    pub item_max_attempts: u32,
    /// Batches advanced per status per tick.
    pub per_tick: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { input_limits: InputLimits::default(), item_priority: 100, item_max_attempts: 5, per_tick: 50 }
    }
}

/// Lines enqueued per transaction.
const ENQUEUE_CHUNK: usize = 500;

/// Output and error files are the gateway's: not held to upload caps or quotas.
const OUTPUT_LIMITS: FileLimits = FileLimits { max_file_bytes: i64::MAX as u64, tenant_quota_bytes: i64::MAX as u64 };

/// Moves batches along. Cheap to share.
pub struct BatchDriver {
    queue: Arc<dyn JobQueue>,
    files: Arc<dyn FileStore>,
    batches: Arc<dyn BatchStore>,
    config: BatchConfig,
    /// Publishes `batch.completed|failed|cancelled|expired` when set.
    events: Option<Arc<Publisher>>,
}

impl std::fmt::Debug for BatchDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDriver").field("config", &self.config).finish_non_exhaustive()
    }
}

impl BatchDriver {
    /// A driver over the three stores.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        files: Arc<dyn FileStore>,
        batches: Arc<dyn BatchStore>,
        config: BatchConfig,
    ) -> Self {
        Self { queue, files, batches, config, events: None }
    }

    /// Publishes a webhook event when a batch ends (after its status change: a crash between the
    /// two loses that one event).
    pub fn with_events(mut self, publisher: Arc<Publisher>) -> Self {
        self.events = Some(publisher);
        self
    }

    /// The batch, announced to webhook subscribers if it just ended.
    async fn announce(&self, moved: Option<Batch>) -> Result<Option<Batch>, StoreError> {
        let (Some(events), Some(batch)) = (&self.events, &moved) else { return Ok(moved) };
        let event_type = match batch.status {
            BatchStatus::Completed => EventType::BatchCompleted,
            BatchStatus::Failed => EventType::BatchFailed,
            BatchStatus::Cancelled => EventType::BatchCancelled,
            BatchStatus::Expired => EventType::BatchExpired,
            _ => return Ok(moved),
        };
        let event = WebhookEvent {
            id: format!("evt_{}_{}", batch.id, batch.status.as_str()),
            event_type,
            tenant_id: Some(batch.tenant_id.clone()),
            data: serde_json::json!({ "id": batch.id }),
            created_at: now_ms() / 1000,
        };
        if let Err(e) = events.publish(&event).await {
            tracing::error!(batch = %batch.id, error = %e, "could not publish the batch's webhook event");
        }
        Ok(moved)
    }

    /// Validates a `validating` batch's input: `failed` with the errors, or every line enqueued
    /// and `in_progress`. Call right after creating the batch (tick does it too).
    pub async fn start(&self, batch: &Batch) -> Result<Option<Batch>, StoreError> {
        let content = self.files.file_content(&batch.tenant_id, &batch.input_file_id).await?;
        let checked = match content {
            None => {
                Err(vec![BatchError::file("invalid_file", format!("input file {} not found", batch.input_file_id))])
            }
            Some(text) => validate_input(&text, batch.endpoint, &self.config.input_limits),
        };
        let lines = match checked {
            Ok(lines) => lines,
            Err(errors) => {
                let changes = BatchChanges { errors: Some(errors), ..BatchChanges::default() };
                let moved =
                    self.batches.transition(&batch.id, BatchStatus::Validating, BatchStatus::Failed, changes).await?;
                return self.announce(moved).await;
            }
        };
        let total = u64::try_from(lines.len()).unwrap_or(u64::MAX);
        let jobs: Vec<NewJob> = lines.into_iter().map(|l| self.item_job(batch, l)).collect::<Result<_, _>>()?;
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            self.queue.enqueue_many(chunk.to_vec()).await?;
        }
        let counts = RequestCounts { total, completed: 0, failed: 0 };
        let changes = BatchChanges { request_counts: Some(counts), ..BatchChanges::default() };
        self.batches.transition(&batch.id, BatchStatus::Validating, BatchStatus::InProgress, changes).await
    }

    fn item_job(&self, batch: &Batch, line: ferrogate_core::jobs::BatchLine) -> Result<NewJob, StoreError> {
        let dedupe = format!("{}:{}", batch.id, line.line);
        let item = BatchItemJob::new(&batch.id, batch.endpoint.as_str(), line);
        Ok(NewJob {
            tenant_id: Some(batch.tenant_id.clone()),
            key_id: batch.key_id.clone(),
            priority: self.config.item_priority,
            max_attempts: self.config.item_max_attempts,
            batch_id: Some(batch.id.to_string()),
            dedupe_key: Some(dedupe),
            ..NewJob::new(JobKind::BatchItem, serde_json::to_value(item).map_err(tenancy_error)?)
        })
    }

    /// `POST /v1/batches/{id}/cancel`: `cancelling` (queued lines cancelled, running ones told to
    /// stop); the next ticks finish it as `cancelled`. `None` if the tenant has no such batch.
    pub async fn cancel(&self, tenant: &TenantId, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let Some(batch) = self.batches.get_batch(Some(tenant), id).await? else { return Ok(None) };
        if !batch.status.can_move_to(BatchStatus::Cancelling) {
            return Ok(Some(batch)); // already finishing or finished: cancel is a no-op
        }
        let moved = self.batches.transition(id, batch.status, BatchStatus::Cancelling, BatchChanges::default()).await?;
        self.queue.cancel_batch(id.as_str()).await?;
        match moved {
            Some(b) => Ok(Some(b)),
            None => self.batches.get_batch(Some(tenant), id).await, // moved meanwhile
        }
    }

    /// Advances every unfinished batch one step. Run every few seconds on every instance.
    pub async fn tick(&self) -> Result<(), StoreError> {
        for status in
            [BatchStatus::Validating, BatchStatus::InProgress, BatchStatus::Cancelling, BatchStatus::Finalizing]
        {
            for batch in self.batches.batches_in(status, self.config.per_tick).await? {
                if let Err(e) = self.advance(&batch).await {
                    tracing::warn!(batch = %batch.id, error = %e, "batch step failed; retried next tick");
                }
            }
        }
        Ok(())
    }

    async fn advance(&self, batch: &Batch) -> Result<(), StoreError> {
        match batch.status {
            BatchStatus::Validating => self.start(batch).await.map(|_| ()),
            BatchStatus::InProgress => self.progress(batch).await,
            BatchStatus::Cancelling => self.wind_down(batch, BatchStatus::Cancelled).await,
            BatchStatus::Finalizing => self.finish(batch, BatchStatus::Completed).await,
            BatchStatus::Failed | BatchStatus::Completed | BatchStatus::Expired | BatchStatus::Cancelled => Ok(()),
        }
    }

    async fn progress(&self, batch: &Batch) -> Result<(), StoreError> {
        if now_ms() >= batch.expires_at_ms {
            self.queue.cancel_batch(batch.id.as_str()).await?;
            return self.wind_down(batch, BatchStatus::Expired).await;
        }
        let (counts, unfinished) = self.counts(batch).await?;
        if unfinished > 0 {
            return self.batches.set_counts(&batch.id, counts).await;
        }
        let changes = BatchChanges { request_counts: Some(counts), ..BatchChanges::default() };
        let moved =
            self.batches.transition(&batch.id, BatchStatus::InProgress, BatchStatus::Finalizing, changes).await?;
        match moved {
            Some(finalizing) => self.finish(&finalizing, BatchStatus::Completed).await,
            None => Ok(()),
        }
    }

    /// Cancelling or expiring: once no line runs, write the files and end in `end`.
    async fn wind_down(&self, batch: &Batch, end: BatchStatus) -> Result<(), StoreError> {
        self.queue.cancel_batch(batch.id.as_str()).await?;
        let (counts, unfinished) = self.counts(batch).await?;
        if unfinished > 0 {
            return self.batches.set_counts(&batch.id, counts).await;
        }
        self.finish(batch, end).await
    }

    /// Writes the output and error files and moves the batch to `end`.
    async fn finish(&self, batch: &Batch, end: BatchStatus) -> Result<(), StoreError> {
        let (output, errors) = self.file_lines(batch, end).await?;
        let counts = RequestCounts {
            total: batch.request_counts.total,
            completed: u64::try_from(output.len()).unwrap_or(u64::MAX),
            failed: u64::try_from(errors.len()).unwrap_or(u64::MAX),
        };
        let output_file_id = self.write(batch, "output", output).await?;
        let error_file_id = self.write(batch, "error", errors).await?;
        let changes = BatchChanges { request_counts: Some(counts), output_file_id, error_file_id, errors: None };
        let moved = self.batches.transition(&batch.id, batch.status, end, changes).await?;
        self.announce(moved).await.map(|_| ())
    }

    /// Live counts, and how many lines are still queued or running.
    async fn counts(&self, batch: &Batch) -> Result<(RequestCounts, u64), StoreError> {
        let by_state = self.queue.batch_counts(batch.id.as_str()).await?;
        let n = |s| by_state.get(&s).copied().unwrap_or(0);
        let counts = RequestCounts {
            total: batch.request_counts.total,
            completed: n(JobState::Succeeded),
            failed: n(JobState::Failed) + n(JobState::Dead) + n(JobState::Cancelled),
        };
        Ok((counts, n(JobState::Queued) + n(JobState::Running)))
    }

    /// The output and error lines, each in input-line order.
    async fn file_lines(&self, batch: &Batch, end: BatchStatus) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let mut page = Page::first(Page::MAX_LIMIT);
        loop {
            let jobs = self.queue.batch_jobs(batch.id.as_str(), &page).await?;
            let Some(last) = jobs.last() else { break };
            page.after = Some(last.id.to_string());
            for job in &jobs {
                match file_line(job, end) {
                    Some(FileLine::Output(n, l)) => output.push((n, l)),
                    Some(FileLine::Error(n, l)) => errors.push((n, l)),
                    None => {}
                }
            }
        }
        output.sort_by_key(|(n, _)| *n);
        errors.sort_by_key(|(n, _)| *n);
        Ok((output.into_iter().map(|(_, l)| l).collect(), errors.into_iter().map(|(_, l)| l).collect()))
    }

    async fn write(&self, batch: &Batch, which: &str, lines: Vec<String>) -> Result<Option<FileId>, StoreError> {
        if lines.is_empty() {
            return Ok(None);
        }
        let mut content = lines.join("\n");
        content.push('\n');
        let file = NewFile {
            tenant_id: batch.tenant_id.clone(),
            purpose: FilePurpose::BatchOutput,
            filename: format!("{}_{which}.jsonl", batch.id),
            content,
        };
        // One id per batch and file: a finish run twice (crash, two instances) stores one file.
        let id = FileId::from(format!("file-{}-{which}", batch.id.as_str().trim_start_matches("batch_")));
        Ok(Some(self.files.create_file_once(&id, file, &OUTPUT_LIMITS).await?.id))
    }
}
