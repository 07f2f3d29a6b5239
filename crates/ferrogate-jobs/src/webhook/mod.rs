//! Webhooks: events published as `webhook` jobs on the durable queue, delivered signed per the
//! Standard Webhooks spec, retried on its schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h),
//! with the SSRF guard on every connection.
//!
//! Floors, bottom up: [`mod@sign`], [`guard`], [`payload`] → [`deliver`], [`publish`].

pub mod deliver;
pub mod guard;
pub mod payload;
pub mod publish;
pub mod sign;

pub use deliver::{Deliverer, DeliveryConfig};
pub use guard::{GuardedResolver, RefusedDestination, check_url, is_forbidden};
pub use payload::{WebhookEvent, WebhookJob};
pub use publish::{Publisher, WEBHOOK_MAX_ATTEMPTS};
pub use sign::sign;
