//! `[conversations]`: where the Responses and Conversations APIs keep their state, how long it
//! lives, how many conversations a tenant may hold, and the context budget of a turn
//! (docs/STATE.md).
//!
//! Where the state lives: the tenancy database when tenancy is on (the same SQLite file or
//! PostgreSQL database as keys and usage); with tenancy off, `database_url` when set; else the
//! endpoints are off and answer 404 naming this section — a gateway without any database keeps no
//! state, rather than a file nobody asked for.

use std::time::Duration;

use ferrogate_core::conversations::Retention;
use serde::{Deserialize, Serialize};

use crate::tenancy::config::Secret;

const DAY: u64 = 86_400;

/// `[conversations]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversationsSection {
    /// `false` turns the endpoints off even when a database exists.
    pub enabled: bool,
    /// `sqlite://PATH` or `postgres://…`, used when tenancy is off (tenancy on: its database).
    pub database_url: Option<Secret>,
    /// A conversation unused this long expires (every turn slides it); 0: kept until deleted.
    pub conversation_ttl_secs: u64,
    /// A stored response expires this long after it was made; 0: kept until deleted.
    pub response_ttl_secs: u64,
    /// Most conversations one tenant may hold; 0: no cap.
    pub max_per_tenant: u64,
    /// How often expired conversations and responses are purged.
    pub purge_interval_secs: u64,
    /// The context, in tokens, a turn's prompt plus `max_output_tokens` must fit in (the
    /// models' context length; the truncation policy drops old turns to fit).
    pub context_tokens: u32,
    /// Output tokens reserved for the answer when the request sets no `max_output_tokens`.
    pub default_output_tokens: u32,
    /// Most history items a turn reads (older ones would be truncated anyway).
    pub max_history_items: u32,
}

impl Default for ConversationsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            database_url: None,
            conversation_ttl_secs: 30 * DAY,
            response_ttl_secs: 30 * DAY,
            max_per_tenant: 10_000,
            purge_interval_secs: 600,
            context_tokens: 8192,
            default_output_tokens: 512,
            max_history_items: 1000,
        }
    }
}

impl ConversationsSection {
    /// The retention and cap settings the store calls take.
    pub fn retention(&self) -> Retention {
        let ttl = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Retention {
            conversation_ttl: ttl(self.conversation_ttl_secs),
            response_ttl: ttl(self.response_ttl_secs),
            max_conversations_per_tenant: (self.max_per_tenant > 0).then_some(self.max_per_tenant),
        }
    }

    /// Problems, each naming its field.
    pub fn check(&self, errs: &mut Vec<String>) {
        if self.purge_interval_secs == 0 {
            errs.push("conversations.purge_interval_secs must be greater than 0".into());
        }
        if self.context_tokens < 16 {
            errs.push("conversations.context_tokens must be at least 16".into());
        }
        if self.default_output_tokens == 0 || self.default_output_tokens >= self.context_tokens {
            errs.push("conversations.default_output_tokens must be between 1 and context_tokens".into());
        }
        if self.max_history_items == 0 {
            errs.push("conversations.max_history_items must be greater than 0".into());
        }
        if let Some(url) = &self.database_url
            && !(url.expose().starts_with("sqlite:") || url.expose().starts_with("postgres"))
        {
            errs.push("conversations.database_url must be sqlite://PATH or postgres://…".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_forever_and_uncapped() {
        let s = ConversationsSection { conversation_ttl_secs: 0, max_per_tenant: 0, ..Default::default() };
        let r = s.retention();
        assert_eq!((r.conversation_ttl, r.max_conversations_per_tenant), (None, None));
        assert_eq!(r.response_ttl, Some(Duration::from_secs(30 * DAY)));
        let mut errs = Vec::new();
        ConversationsSection { purge_interval_secs: 0, ..Default::default() }.check(&mut errs);
        assert_eq!(errs.len(), 1);
    }
}
