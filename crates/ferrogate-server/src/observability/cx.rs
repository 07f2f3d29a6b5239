//! [`ObsCx`]: one request's observability context, shared by `Arc` between the request's
//! `RequestCx` and whoever records it: stage boundaries (auth done, routed, admitted), the
//! deployment once routed, the caller once authenticated, whether a `Settle` took over the
//! recording, and the request's trace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::trace::{Clock, RequestTrace};
use crate::request::caller::Caller;

/// The deployment label of a request that was never routed (a closed label value).
pub const UNKNOWN: &str = "unknown";

/// Stage boundaries of one request, in `ObsCx::marks`.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    AuthDone = 0,
    Routed = 1,
    Admitted = 2,
}

/// One request's observability context (in `RequestCx`, shared by `Arc`).
pub struct ObsCx {
    pub clock: Clock,
    /// The deployment, once routing found it (metrics label; `unknown` otherwise).
    pub deployment: OnceLock<String>,
    /// The caller's tenant name (stored keys), set by the auth layer.
    tenant: OnceLock<String>,
    /// Nanoseconds after the start + 1, per [`Mark`]; 0 = not reached.
    marks: [AtomicU64; 3],
    /// The caller, once the auth layer accepted it (the access layer's record of a
    /// request no backend saw needs its ledger slot).
    caller: OnceLock<Arc<Caller>>,
    /// Set when a `Settle` was made: it records the request, the access layer must not.
    pub settling: AtomicBool,
    pub trace: Option<RequestTrace>,
}

impl std::fmt::Debug for ObsCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObsCx")
    }
}

impl ObsCx {
    pub fn new(clock: Clock, trace: Option<RequestTrace>) -> Self {
        Self {
            clock,
            deployment: OnceLock::new(),
            tenant: OnceLock::new(),
            marks: Default::default(),
            caller: OnceLock::new(),
            settling: AtomicBool::new(false),
            trace,
        }
    }

    pub fn mark(&self, m: Mark) {
        let ns = u64::try_from(self.clock.instant.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        self.marks[m as usize].store(ns, Ordering::Relaxed);
    }

    fn at(&self, m: Mark) -> Option<Instant> {
        match self.marks[m as usize].load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.clock.instant + Duration::from_nanos(ns - 1)),
        }
    }

    /// The auth layer accepted the caller: the `auth` span ends, the tenant is known.
    pub fn authenticated(&self, caller: &Arc<Caller>) {
        if let Some(k) = caller.principal.key() {
            let _ = self.tenant.set(k.tenant.name.clone());
        }
        let _ = self.caller.set(Arc::clone(caller));
        self.mark(Mark::AuthDone);
    }

    /// Another path records this request (a `Settle`, or a background job's run): the access
    /// layer must not.
    pub fn recorded_elsewhere(&self) {
        self.settling.store(true, Ordering::Relaxed);
    }

    /// The caller, once authenticated.
    pub fn caller(&self) -> Option<&Arc<Caller>> {
        self.caller.get()
    }

    pub fn tenant(&self) -> Option<&str> {
        self.tenant.get().map(String::as_str)
    }

    /// Routing found `name`.
    pub fn routed(&self, name: &str) {
        let _ = self.deployment.set(name.to_owned());
        self.mark(Mark::Routed);
    }

    /// The backend pick's why (`ferrogate.route.reason`, `ferrogate.route.match` on the root
    /// span; the last attempt's wins).
    pub fn picked(&self, reason: &'static str, matched: f32) {
        if let Some(t) = self.sampled() {
            t.set([
                KeyValue::new("ferrogate.route.reason", reason),
                KeyValue::new("ferrogate.route.match", f64::from(matched)),
            ]);
        }
    }

    pub fn deployment(&self) -> &str {
        self.deployment.get().map_or(UNKNOWN, String::as_str)
    }

    pub fn sampled(&self) -> Option<&RequestTrace> {
        self.trace.as_ref().filter(|t| t.sampled)
    }

    pub fn trace_id(&self) -> Option<String> {
        self.trace.as_ref().map(RequestTrace::trace_id)
    }

    /// The `auth`, `routing` and `limits` spans from the marks that were reached.
    fn stage_spans(&self, t: &RequestTrace) {
        let start = self.clock.instant;
        let auth = self.at(Mark::AuthDone);
        let routed = self.at(Mark::Routed);
        let admitted = self.at(Mark::Admitted);
        let w = |i| self.clock.wall(i);
        if let Some(a) = auth {
            t.child(None, "auth", w(start), w(a), vec![]);
        }
        if let Some(r) = routed {
            let attrs = vec![KeyValue::new("ferrogate.deployment", self.deployment().to_owned())];
            t.child(None, "routing", w(auth.unwrap_or(start)), w(r), attrs);
            if let Some(a) = admitted {
                t.child(None, "limits", w(r), w(a), vec![]);
            }
        }
    }
}

impl Drop for ObsCx {
    fn drop(&mut self) {
        if let Some(t) = &self.trace {
            if t.sampled {
                self.stage_spans(t);
            }
            t.end();
        }
    }
}
