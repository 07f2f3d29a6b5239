//! [`Settings`]: everything the server reads at run time, checked — `[server]` and the
//! `[deployments.NAME]` tables (`sections`), and the sections of each concern. The whole file
//! (with `[backends]`, model files and logs) is read and checked by the binary's `config`.

pub mod active;
pub mod conversations;
pub mod sections;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;

pub use self::active::ActiveConfig;
pub use self::conversations::ConversationsSection;
pub use self::sections::{CacheSection, DeploymentConfig, ServerConfig};
pub use self::tls::TlsSection;

use crate::guardrails::config::GuardrailSettings;
use crate::limits::config::LimitSettings;
use crate::observability::config::ObservabilityConfig;
use crate::resilience::config::Resilience;
use crate::tenancy::config::TenancySettings;

/// Everything the server reads at run time, checked (the binary's `Config` holds it beside what
/// only start-up needs: backends, model files, logs).
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerConfig,
    pub listen: SocketAddr,
    pub deployments: BTreeMap<String, DeploymentConfig>,
    /// `None`: tenancy off (no master key and no database configured).
    pub tenancy: Option<TenancySettings>,
    pub limits: LimitSettings,
    /// Queue, breaker, retry and tier defaults.
    pub resilience: Resilience,
    /// `[metrics]`, `[tracing]`, `[dashboard]`, `log.prompts`.
    pub obs: ObservabilityConfig,
    /// `[guardrails]` with the deployments' overrides.
    pub guardrails: GuardrailSettings,
    /// `[cache]`: the response cache of the deployments that opt in.
    pub cache: CacheSection,
    /// `[conversations]`: the Responses and Conversations APIs' state (docs/STATE.md).
    pub conversations: ConversationsSection,
    /// Version, source and restart-required changes of this configuration (`/admin/v1/config`).
    pub active: ActiveConfig,
}
