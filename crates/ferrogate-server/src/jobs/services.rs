//! What background work is made of: the stores the composition root hands in
//! ([`JobServices`]) and the batch driver and webhook publisher over them ([`Jobs`]), as the
//! handlers and the workers share them.

use std::sync::Arc;
use std::time::Duration;

use ferrogate_core::jobs::{BatchStore, FileLimits, FileStore, JobQueue, WebhookStore};
use ferrogate_jobs::batch::{BatchConfig, BatchDriver};
use ferrogate_jobs::webhook::{DeliveryConfig, Publisher};

/// What the composition root builds for background work (all on the tenancy database).
#[derive(Clone)]
pub struct JobServices {
    /// The durable queue.
    pub queue: Arc<dyn JobQueue>,
    /// Uploaded and written files.
    pub files: Arc<dyn FileStore>,
    /// Batch records.
    pub batches: Arc<dyn BatchStore>,
    /// Webhook endpoints and deliveries (secrets sealed).
    pub webhooks: Arc<dyn WebhookStore>,
    /// Upload caps.
    pub file_limits: FileLimits,
    /// Batch input limits and item priority.
    pub batch: BatchConfig,
    /// Webhook delivery (SSRF guard).
    pub delivery: DeliveryConfig,
    /// This instance's name in attempt records.
    pub instance: String,
    /// Batch lines run at once on this instance.
    pub batch_concurrency: usize,
    /// How often the batch driver ticks.
    pub tick_every: Duration,
    /// A lease's length (heartbeats renew it every third).
    pub lease: Duration,
}

/// Background work as the handlers see it.
pub struct Jobs {
    pub services: JobServices,
    pub driver: Arc<BatchDriver>,
    pub publisher: Arc<Publisher>,
}

impl Jobs {
    pub fn new(services: JobServices) -> Jobs {
        let publisher = Arc::new(Publisher::new(
            Arc::clone(&services.webhooks),
            Arc::clone(&services.queue),
            services.batch.item_priority - 10,
        ));
        let driver = BatchDriver::new(
            Arc::clone(&services.queue),
            Arc::clone(&services.files),
            Arc::clone(&services.batches),
            services.batch.clone(),
        )
        .with_events(Arc::clone(&publisher));
        Jobs { services, driver: Arc::new(driver), publisher }
    }
}
