//! `server.tls.admin_requires_client_cert`: the admin API (and `/metrics` unless public) answer
//! only connections that presented a client certificate the listener verified — checked right
//! inside the access layer (so a refusal is logged and counted like any other) and before every
//! other stage, so a connection without one learns nothing about the key store.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::PeerCert;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::dashboard;

/// Which paths need a verified client certificate.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    /// `/metrics` too (it is not `metrics.public`).
    pub metrics: bool,
}

impl Gate {
    fn guards(self, path: &str) -> bool {
        path == "/admin" || path.starts_with("/admin/") || (self.metrics && path == dashboard::METRICS)
    }
}

/// The router's stage (`router::router_gated`), present only when a gate is configured.
pub async fn check(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let verified = req.extensions().get::<PeerCert>().is_some_and(|c| c.verified);
    if gate.guards(req.uri().path()) && !verified {
        return ApiError::permission_denied(
            ErrorCode::EndpointNotAllowed,
            None,
            "this endpoint requires a verified TLS client certificate (server.tls.admin_requires_client_cert)",
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_api_and_private_metrics_are_guarded() {
        let g = Gate { metrics: true };
        assert!(g.guards("/admin/v1/keys"));
        assert!(g.guards("/metrics"));
        assert!(!g.guards("/v1/chat/completions"));
        assert!(!g.guards("/administrator"));
        assert!(!Gate { metrics: false }.guards("/metrics"));
    }
}
