//! What a `webhook` job carries and what an event looks like on the wire.
//!
//! Invariant: the body is fixed when the event is published, so every retry sends the same bytes
//! under the same `webhook-id`; only `webhook-timestamp` and the signature change per attempt.

use ferrogate_core::jobs::{EndpointId, EventType, MessageId};
use ferrogate_core::tenancy::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A `webhook` job's payload: one message to one endpoint. No secret: payloads are visible in
/// the DLQ API, and the deliverer reads the secret from the store at each attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    /// The `webhook-id`.
    pub message_id: MessageId,
    /// Where to.
    pub endpoint_id: EndpointId,
    /// What happened.
    pub event_type: EventType,
    /// The exact body to POST.
    pub body: String,
}

/// Something that happened, to tell subscribed endpoints about.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// Stable for the event (`evt_…`): publishing the same event again (after a crash) makes no
    /// second message.
    pub id: String,
    /// What happened.
    pub event_type: EventType,
    /// Whose it is (endpoints scoped to another tenant do not get it).
    pub tenant_id: Option<TenantId>,
    /// The object it is about (`{"id": "resp_…"}`, a batch).
    pub data: Value,
    /// Unix seconds.
    pub created_at: i64,
}

impl WebhookEvent {
    /// The body OpenAI's webhooks carry: `{"id", "object": "event", "created_at", "type", "data"}`.
    pub fn body(&self) -> String {
        json!({
            "id": self.id,
            "object": "event",
            "created_at": self.created_at,
            "type": self.event_type.as_str(),
            "data": self.data,
        })
        .to_string()
    }

    /// The message id of this event for one endpoint: derived, so it is the same however often
    /// the event is published.
    pub fn message_id(&self, endpoint: &EndpointId) -> MessageId {
        let digest = Sha256::new().chain_update(self.id.as_bytes()).chain_update([0]).chain_update(endpoint.as_str());
        let hex: String = digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
        MessageId::from(format!("msg_{hex}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn message_ids_are_stable_per_event_and_endpoint() {
        let e = WebhookEvent {
            id: "evt_1".into(),
            event_type: EventType::BatchCompleted,
            tenant_id: None,
            data: json!({"id": "batch_1"}),
            created_at: 1,
        };
        let (a, b) = (EndpointId::from("we_a"), EndpointId::from("we_b"));
        assert_eq!(e.message_id(&a), e.message_id(&a));
        assert_ne!(e.message_id(&a), e.message_id(&b));
        assert!(e.message_id(&a).as_str().starts_with("msg_") && e.message_id(&a).as_str().len() == 36);
        let body: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(body["type"], "batch.completed");
        assert_eq!(body["data"]["id"], "batch_1");
    }
}
