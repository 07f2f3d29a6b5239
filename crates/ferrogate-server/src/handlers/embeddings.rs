//! `POST /v1/embeddings`: decode, run the embeddings path, encode the vectors as the client asked
//! (`encoding_format`: JSON floats, or base64 of little-endian f32 — the official SDKs' default).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use ferrogate_protocol::openai::embeddings::{EmbeddingRequest, EmbeddingResponse, EmbeddingVector};

use crate::error::ApiError;
use crate::handlers::{decode, decorate};
use crate::pipeline::embed::{self, Embedded};
use crate::request::{Endpoint, RequestCx};
use crate::state::AppState;

pub async fn handle(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: EmbeddingRequest = decode(body, st.settings.body_limit)?;
    let base64 = req.wants_base64();
    let Embedded { vectors, prompt_tokens, shown, settle } = embed::run(&st, &cx, req, Endpoint::Embeddings).await?;
    let vectors = vectors
        .into_iter()
        .map(|v| if base64 { EmbeddingVector::Base64(encode(&v)) } else { EmbeddingVector::Float(v) });
    let body = EmbeddingResponse::new(shown.to_string(), vectors.collect(), prompt_tokens);
    let mut res = Json(body).into_response();
    decorate(&mut res, &shown, &settle);
    Ok(res)
}

/// OpenAI's base64 form: the vector's f32 values, little-endian, base64 (standard alphabet).
pub fn encode(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_is_little_endian_f32() {
        let s = encode(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }
}
