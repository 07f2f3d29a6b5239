//! The entry stage: what every request passes between the panic guard and its route, in one
//! middleware — refused while draining (503, probes excepted), the client address and
//! rate-limit headers (`limits::layer`), who is calling (`auth::admit`), the body read whole
//! within its bounds (`body::read`). One stage rather than four layers: each `from_fn` layer is
//! a boxed future and a clone of the inner service on every request.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, body, limits};

pub async fn layer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    if st.is_draining() && !matches!(req.uri().path(), "/health" | "/ready") {
        return ApiError::shutting_down().into_response();
    }
    let limits = limits::layer::attach(&st, &mut req);
    if let Err(refused) = auth::admit(&st, &mut req).await {
        return refused;
    }
    let req = match body::read(&st, req).await {
        Ok(req) => req,
        Err(refused) => return refused,
    };
    let mut res = next.run(req).await;
    if let Some(rl) = limits {
        limits::layer::write_headers(&rl, &mut res);
    }
    res
}
