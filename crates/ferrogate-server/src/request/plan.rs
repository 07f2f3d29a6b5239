//! [`Plan`]: everything decided about a request before any effect — its endpoint, the names of
//! its model, the deployment that will serve it, the normalized request, who is calling and the
//! client's routing hints. Built by `pipeline::plan` (pure), read by admission and dispatch.

use std::net::IpAddr;
use std::sync::Arc;

use ferrogate_core::queue::Priority;
use ferrogate_core::{Deployment, InferenceRequest};

use super::caller::Caller;
use super::names::{DeploymentName, RequestedModel};
use super::{Endpoint, RequestLimits};
use crate::observability::cx::ObsCx;

pub struct Plan {
    pub endpoint: Endpoint,
    /// The name the client asked for (an alias, `auto`, a deployment).
    pub requested: RequestedModel,
    /// The name responses carry: the requested one, or the tier's choice for the virtual model.
    pub shown: RequestedModel,
    /// The deployment planned (a fallback may serve instead: `Settle` knows which did).
    pub deployment: Arc<Deployment>,
    /// The normalized request; its `model` is set per attempt to the target's upstream model.
    pub req: InferenceRequest,
    pub stream: bool,
    pub include_usage: bool,
    /// Local estimate, used only if the backend reports no usage.
    pub prompt_estimate: u32,
    /// The authenticated caller, if auth is on.
    pub caller: Option<Arc<Caller>>,
    /// Client IP and rate-limit headers (set when rate limits may apply).
    pub limits: Option<Arc<RequestLimits>>,
    /// Queue class (`x-ferrogate-priority`).
    pub priority: Priority,
    /// The tier decision when the virtual model was asked for (`x-ferrogate-route`).
    pub route_note: Option<String>,
    /// Stage marks and trace of the request (observability).
    pub obs: Arc<ObsCx>,
    /// The client's address, for the access log line.
    pub client_ip: IpAddr,
    /// Flagged guardrail findings (`x-ferrogate-guardrails`), set by the admit stage.
    pub guardrails: Option<String>,
}

impl Plan {
    /// The planned deployment's name.
    pub fn deployment_name(&self) -> DeploymentName {
        DeploymentName::new(self.deployment.name.as_str())
    }
}
