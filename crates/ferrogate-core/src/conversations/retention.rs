//! Retention and caps: how long conversations and stored responses live, and how many
//! conversations a tenant may hold. Plain settings the edge reads from config and applies when it
//! calls the store.

use std::time::Duration;

/// Retention and cap settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A conversation unused this long expires (every append slides it); `None`: kept until
    /// deleted.
    pub conversation_ttl: Option<Duration>,
    /// A stored response expires this long after it was made (OpenAI keeps them 30 days).
    pub response_ttl: Option<Duration>,
    /// Most conversations one tenant may hold.
    pub max_conversations_per_tenant: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Self {
            conversation_ttl: Some(Duration::from_secs(30 * DAY)),
            response_ttl: Some(Duration::from_secs(30 * DAY)),
            max_conversations_per_tenant: Some(10_000),
        }
    }
}

impl Retention {
    /// A conversation's expiry when created or appended to at `now_ms`.
    pub fn conversation_expiry(&self, now_ms: i64) -> Option<i64> {
        expiry(now_ms, self.conversation_ttl)
    }

    /// A response's expiry when stored at `now_ms`.
    pub fn response_expiry(&self, now_ms: i64) -> Option<i64> {
        expiry(now_ms, self.response_ttl)
    }
}

fn expiry(now_ms: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|t| now_ms.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_now_plus_ttl_or_never() {
        let r =
            Retention { conversation_ttl: Some(Duration::from_secs(2)), response_ttl: None, ..Retention::default() };
        assert_eq!(r.conversation_expiry(1_000), Some(3_000));
        assert_eq!(r.response_expiry(1_000), None);
        let huge = Retention { conversation_ttl: Some(Duration::MAX), ..r };
        assert_eq!(huge.conversation_expiry(1), Some(i64::MAX), "saturates");
    }
}
