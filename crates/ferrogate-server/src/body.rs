//! Stage 5, bounded input: the request body is read here, whole, within
//! `server.body_read_timeout_secs` of its head (408 `body_read_timeout` and the connection
//! closed, so a body trickled byte by byte holds nothing for long) and within
//! `server.body_limit_bytes` (413). Handlers then decode from memory.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn layer(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let read = Limited::new(body, st.settings.body_limit).collect();
    let bytes = match tokio::time::timeout(st.settings.body_read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return closing(ApiError::body_too_large(st.settings.body_limit));
        }
        Ok(Err(e)) => return closing(ApiError::invalid(None, format!("Could not read the request body: {e}"))),
        Err(_) => return closing(ApiError::body_read_timeout(st.settings.body_read_timeout)),
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The rest of the body is not read: the connection cannot carry another request.
fn closing(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}
