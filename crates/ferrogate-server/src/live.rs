//! Live reconfiguration, the server's half: [`Live::apply`] turns a reloaded configuration and
//! the deployments the composition root rebuilt into the next [`AppState`] snapshot and serves it
//! — the router in force is swapped whole, so a request that already started keeps the router
//! and snapshot it started with (no request is dropped or fails because of a reload) and every
//! request after the swap sees the new one. Reading the file, deciding what changed and what needs
//! a restart is the binary's (`ferrogate::reload`).

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use axum::Router;

use crate::accept::Served;
use crate::settings::Settings;
use crate::state::{AppState, LiveServices};
use crate::tls::gate::Gate;

/// The handle a running server gives the composition root for reloads (cheap to clone).
#[derive(Clone)]
pub struct Live {
    /// The snapshot the server started with: reaches the one in force (`current`).
    first: AppState,
    /// The router in force, read by the accept loop for every request.
    served: Served,
    /// The mTLS gate of the admin API, fixed at start (TLS settings need a restart).
    gate: Option<Gate>,
    /// One reload at a time (SIGHUP and a file change may race).
    applying: Arc<Mutex<()>>,
}

impl Live {
    pub(crate) fn new(st: AppState, gate: Option<Gate>) -> Live {
        let served = Arc::new(ArcSwap::from_pointee(crate::router::router_gated(st.clone(), gate)));
        Live { first: st, served, gate, applying: Arc::default() }
    }

    pub(crate) fn served(&self) -> Served {
        Arc::clone(&self.served)
    }

    /// The snapshot in force.
    pub fn current(&self) -> AppState {
        self.first.current()
    }

    /// Builds the snapshot of `cfg` over `live` and puts it in force; on `Err` (every problem
    /// listed) nothing changed. Counts the attempt in `ferrogate_config_reloads_total` either way.
    pub fn apply(&self, cfg: &Settings, live: LiveServices) -> Result<AppState, Vec<String>> {
        let _one = self.applying.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current();
        let next = match old.reconfigured(cfg, live) {
            Ok(next) => next,
            Err(errs) => {
                self.refused();
                return Err(errs);
            }
        };
        if let (Some(t), Some(s)) = (&next.tenancy, &cfg.tenancy) {
            t.reprice(s, &cfg.deployments);
        }
        let fresh = next.backends.iter().filter(|b| !old.backends.iter().any(|o| same(o, b))).cloned().collect();
        crate::probes::spawn(&next, fresh);
        let router: Router = crate::router::router_gated(next.clone(), self.gate);
        self.served.store(Arc::new(router));
        next.publish();
        next.obs.metrics.config_reload(true);
        Ok(next)
    }

    /// A reload refused before it reached [`apply`](Self::apply) (unreadable or invalid file, a
    /// backend that cannot be built): counted, nothing changed.
    pub fn refused(&self) {
        self.current().obs.metrics.config_reload(false);
    }
}

/// The same backend object (not merely the same name).
fn same(a: &Arc<dyn ferrogate_core::Backend>, b: &Arc<dyn ferrogate_core::Backend>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
