//! The limits part of the entry stage (`crate::entry`): puts the client address into the
//! request's context (`RequestCx::limits`) for inference endpoints when rate limits may apply,
//! and writes the rate-limit headers the admission stage left there onto whatever response goes
//! out (200 or 429).

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::response::Response;

use super::client_ip;
use crate::request::{Endpoint, RequestCx, RequestLimits};
use crate::state::AppState;

/// Puts the client address into the request's context; the handle is for [`write_headers`].
pub fn attach(st: &AppState, req: &mut Request) -> Option<Arc<RequestLimits>> {
    // Only inference endpoints are rate-limited.
    if !st.limits.active() || Endpoint::from_path(req.uri().path()).is_none() {
        return None;
    }
    let ip = client_ip::client_ip(req, &st.limits.trusted_proxies);
    let rl = Arc::new(RequestLimits { ip, headers: OnceLock::new() });
    if let Some(cx) = req.extensions_mut().get_mut::<RequestCx>() {
        cx.limits = Some(Arc::clone(&rl));
    }
    Some(rl)
}

/// The rate-limit headers, if the request was checked, onto its response.
pub fn write_headers(rl: &RequestLimits, res: &mut Response) {
    if let Some(h) = rl.headers.get() {
        h.write(res.headers_mut());
    }
}
