//! Bounded input, the last part of the entry stage (`crate::entry`): the request body is read here, whole, within
//! `server.body_read_timeout_secs` of its head (408 `body_read_timeout` and the connection
//! closed, so a body trickled byte by byte holds nothing for long) and within
//! `server.body_limit_bytes` (413) — a file upload (`POST /v1/files`) within its own bound,
//! `[batches] max_file_bytes` plus the multipart framing ([`upload_limit`]). Handlers then
//! decode from memory.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;
use crate::state::AppState;

/// Room for a file upload's multipart framing around the file: boundaries, part headers and
/// the `purpose` field.
const MULTIPART_FRAMING: usize = 64 * 1024;

/// The request with its body read whole, or the refusal to send (413, 408, 400; the
/// connection closed).
pub async fn read(st: &AppState, req: Request) -> Result<Request, Response> {
    let limit = limit(st, &req);
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(st.settings.body_read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(closing(ApiError::body_too_large(limit)));
        }
        Ok(Err(e)) => return Err(closing(ApiError::invalid(None, format!("Could not read the request body: {e}")))),
        Err(_) => return Err(closing(ApiError::body_read_timeout(st.settings.body_read_timeout))),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// This request's bound: `server.body_limit_bytes`, or for a file upload the larger of that and
/// [`upload_limit`].
fn limit(st: &AppState, req: &Request) -> usize {
    let upload = req.method() == Method::POST && req.uri().path() == "/v1/files";
    match upload.then(|| upload_limit(st)).flatten() {
        Some(n) => n.max(st.settings.body_limit),
        None => st.settings.body_limit,
    }
}

/// A file upload's bound when background work is on: `[batches] max_file_bytes` and the
/// multipart framing around it (the handler then holds the file itself to the cap, 413).
pub fn upload_limit(st: &AppState) -> Option<usize> {
    let cap = st.jobs.as_ref()?.services.file_limits.max_file_bytes;
    Some(usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(MULTIPART_FRAMING))
}

/// The rest of the body is not read: the connection cannot carry another request.
fn closing(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
