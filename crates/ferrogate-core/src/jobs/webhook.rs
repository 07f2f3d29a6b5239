//! Webhook endpoints and deliveries: the event types, the signing secret (`whsec_…`, shown once),
//! and the [`WebhookStore`] trait that `ferrogate-store` implements. Delivery itself (signing,
//! the SSRF guard, the HTTP call) lives in `ferrogate-jobs`, as `webhook` jobs on the queue.
//!
//! Invariants: a [`WebhookSecret`] never prints (`Debug` shows `whsec_…`); job payloads name the
//! endpoint, never hold its secret (they are visible in the DLQ API).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::ids::{EndpointId, JobId, MessageId};
use super::records::Page;
use crate::tenancy::{InvalidInput, StoreError, TenantId};

/// The events an endpoint can subscribe to (OpenAI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `response.completed`
    ResponseCompleted,
    /// `response.failed`
    ResponseFailed,
    /// `response.cancelled`
    ResponseCancelled,
    /// `batch.completed`
    BatchCompleted,
    /// `batch.failed`
    BatchFailed,
    /// `batch.cancelled`
    BatchCancelled,
    /// `batch.expired`
    BatchExpired,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 7] = [
        EventType::ResponseCompleted,
        EventType::ResponseFailed,
        EventType::ResponseCancelled,
        EventType::BatchCompleted,
        EventType::BatchFailed,
        EventType::BatchCancelled,
        EventType::BatchExpired,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ResponseCompleted => "response.completed",
            EventType::ResponseFailed => "response.failed",
            EventType::ResponseCancelled => "response.cancelled",
            EventType::BatchCompleted => "batch.completed",
            EventType::BatchFailed => "batch.failed",
            EventType::BatchCancelled => "batch.cancelled",
            EventType::BatchExpired => "batch.expired",
        }
    }
}

impl FromStr for EventType {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
            InvalidInput(format!("unknown webhook event '{s}' (known: {})", known.join(", ")))
        })
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An endpoint's signing secret: `whsec_` + base64 of 24 random bytes. Returned once at creation;
/// the store keeps it to sign with (HMAC needs the key itself, unlike API keys' digests).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

/// Random bytes in a new secret (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 24;

impl WebhookSecret {
    /// A fresh secret from the OS's randomness.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0_u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(format!("whsec_{}", STANDARD.encode(bytes))))
    }

    /// A stored or given secret; must be `whsec_` + base64 of 24 to 64 bytes.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let secret = Self(s.to_owned());
        match secret.key() {
            Some(k) if (SECRET_BYTES..=64).contains(&k.len()) => Ok(secret),
            _ => Err(InvalidInput("a webhook secret is whsec_ + base64 of 24 to 64 bytes".into())),
        }
    }

    /// The HMAC key: the base64-decoded part after `whsec_`.
    pub fn key(&self) -> Option<Vec<u8>> {
        STANDARD.decode(self.0.strip_prefix("whsec_")?).ok()
    }

    /// The secret as shown once to the operator and stored.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    /// Identity.
    pub id: EndpointId,
    /// Where messages are POSTed (`http://` or `https://`).
    pub url: String,
    /// What it receives.
    pub events: Vec<EventType>,
    /// Only this tenant's events; `None` = every tenant's.
    pub tenant_id: Option<TenantId>,
    /// Unix ms.
    pub created_at_ms: i64,
}

/// What `POST /admin/v1/webhooks` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// `http://` or `https://` URL, at most 2048 bytes.
    pub url: String,
    /// At least one event.
    pub events: Vec<EventType>,
    /// Only this tenant's events.
    pub tenant_id: Option<TenantId>,
}

impl NewEndpoint {
    /// Refuses an empty event list or a URL that is not plain http(s). The SSRF guard runs
    /// again at every delivery (DNS answers change).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let u = &self.url;
        let scheme_ok = u.starts_with("https://") || u.starts_with("http://");
        if !scheme_ok || u.len() > 2048 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidInput("url must be an http:// or https:// URL of at most 2048 bytes".into()));
        }
        if self.events.is_empty() {
            return Err(InvalidInput("events must name at least one event".into()));
        }
        Ok(())
    }
}

/// A new endpoint and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedEndpoint {
    /// The record.
    pub endpoint: WebhookEndpoint,
    /// The signing secret.
    pub secret: WebhookSecret,
}

/// Where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet (first try or retries pending).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed (or the endpoint was deleted): the job is in the DLQ.
    Failed,
}

impl DeliveryStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = InvalidInput;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| InvalidInput(format!("unknown delivery status '{s}'")))
    }
}

/// One message to one endpoint, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The `webhook-id`, the same on every retry.
    pub id: MessageId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event.
    pub event_type: EventType,
    /// The `webhook` job carrying it.
    pub job_id: JobId,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's HTTP status.
    pub last_status_code: Option<u16>,
    /// The last failure (HTTP status text, timeout, refused destination).
    pub last_error: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last attempt or of delivery.
    pub updated_at_ms: i64,
}

/// The result of one delivery attempt, recorded by the deliverer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// Where the delivery is now.
    pub status: DeliveryStatus,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Webhook endpoints and their deliveries.
#[async_trait::async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers an endpoint with a fresh secret, returned this once.
    async fn create_endpoint(&self, new: NewEndpoint) -> Result<CreatedEndpoint, StoreError>;
    /// The endpoint, if registered.
    async fn get_endpoint(&self, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Every endpoint, oldest first.
    async fn list_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Deletes an endpoint (pending deliveries to it then fail); `false` if unknown.
    async fn delete_endpoint(&self, id: &EndpointId) -> Result<bool, StoreError>;
    /// The endpoint with its signing secret, for the deliverer only.
    async fn endpoint_secret(&self, id: &EndpointId) -> Result<Option<(WebhookEndpoint, WebhookSecret)>, StoreError>;
    /// Endpoints subscribed to `event` for `tenant` (tenant-less endpoints included).
    async fn subscribers(
        &self,
        event: EventType,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookEndpoint>, StoreError>;
    /// Records new pending deliveries (one per subscribed endpoint of an event).
    async fn insert_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StoreError>;
    /// Records one attempt's result (attempts + 1).
    async fn record_attempt(&self, id: &MessageId, report: &AttemptReport) -> Result<(), StoreError>;
    /// A delivery.
    async fn get_delivery(&self, id: &MessageId) -> Result<Option<Delivery>, StoreError>;
    /// An endpoint's deliveries (optionally of one status), oldest first.
    async fn list_deliveries(
        &self,
        endpoint: &EndpointId,
        status: Option<DeliveryStatus>,
        page: &Page,
    ) -> Result<Vec<Delivery>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_of_24_random_bytes_and_never_print() {
        let a = WebhookSecret::generate().unwrap_or_else(|_| WebhookSecret(String::new()));
        let b = WebhookSecret::generate().unwrap_or_else(|_| WebhookSecret(String::new()));
        assert_ne!(a, b);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(a.key().map(|k| k.len()), Some(SECRET_BYTES));
        assert_eq!(WebhookSecret::parse(a.expose()).ok(), Some(a.clone()));
        assert!(!format!("{a:?}").contains(&a.expose()[6..]));
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(WebhookSecret::parse("nope").is_err());
    }

    #[test]
    fn events_and_endpoints_are_validated() {
        assert_eq!("batch.expired".parse::<EventType>().ok(), Some(EventType::BatchExpired));
        assert!("batch.exploded".parse::<EventType>().is_err());
        let json = serde_json::to_string(&EventType::ResponseCompleted).unwrap_or_default();
        assert_eq!(json, "\"response.completed\"");
        let ok =
            NewEndpoint { url: "https://h.example/x".into(), events: vec![EventType::BatchFailed], tenant_id: None };
        assert!(ok.validate().is_ok());
        let no_events = NewEndpoint { events: vec![], ..ok.clone() };
        assert!(no_events.validate().is_err());
        for url in ["ftp://h/x", "https://h/ x", "javascript:alert(1)"] {
            assert!(NewEndpoint { url: url.into(), ..ok.clone() }.validate().is_err(), "{url}");
        }
    }
}
