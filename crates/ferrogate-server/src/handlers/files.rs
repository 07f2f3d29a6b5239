//! OpenAI Files: `POST /v1/files` (multipart, `purpose=batch`), `GET /v1/files`,
//! `GET /v1/files/{id}`, `DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`. Every file
//! belongs to the caller's tenant; another tenant's id is 404. Size cap and per-tenant quota:
//! `[batches]` file limits; an upload has its own body bound (`body::upload_limit`), and a
//! file over the cap is 413.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferrogate_core::jobs::{FileId, FilePurpose, NewFile};
use ferrogate_core::tenancy::TenantId;
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::jobs::services::Jobs;
use crate::jobs::wire;
use crate::request::RequestCx;
use crate::state::AppState;

/// The background-work services and the caller's tenant (files and batches are per tenant).
pub(crate) fn scope(st: &AppState, cx: &RequestCx) -> Result<(Arc<Jobs>, TenantId), ApiError> {
    let jobs = st.jobs.clone().ok_or_else(|| ApiError::internal("files route without background work"))?;
    let tenant = cx.caller.as_ref().and_then(|c| c.principal.tenant_id().cloned()).ok_or_else(|| {
        ApiError::unauthorized("Files and batches need a tenant's API key (stored keys, not static ones)")
    })?;
    Ok((jobs, tenant))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    order: Option<String>,
}

pub async fn upload(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let body = body.map_err(|e| ApiError::invalid(None, format!("Could not read the upload: {}", e.body_text())))?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let form = multipart::parse(ctype, &body).map_err(|m| ApiError::invalid(None, m))?;
    let purpose =
        form.field("purpose").ok_or_else(|| ApiError::invalid(Some("purpose".into()), "purpose is required"))?;
    let purpose: FilePurpose = String::from_utf8_lossy(purpose)
        .trim()
        .parse()
        .ok()
        .filter(|p| *p == FilePurpose::Batch)
        .ok_or_else(|| ApiError::invalid(Some("purpose".into()), "purpose must be 'batch'"))?;
    let file = form.file().ok_or_else(|| ApiError::invalid(Some("file".into()), "file is required"))?;
    let cap = jobs.services.file_limits.max_file_bytes;
    if file.content.len() as u64 > cap {
        let message = format!("The file is {} bytes, larger than the limit of {cap} bytes", file.content.len());
        return Err(ApiError { param: Some("file".into()), ..ApiError::new(ErrorCode::RequestTooLarge, message) });
    }
    let content = String::from_utf8(file.content.to_vec())
        .map_err(|_| ApiError::invalid(Some("file".into()), "the file must be UTF-8 text (JSONL)"))?;
    let new = NewFile { tenant_id: tenant, purpose, filename: file.filename.clone(), content };
    let limits = &jobs.services.file_limits;
    new.validate(limits).map_err(|e| ApiError::invalid(Some("file".into()), e.0))?;
    let stored = jobs.services.files.create_file(new, limits).await?;
    Ok(Json(wire::file(&stored)).into_response())
}

pub async fn list(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let q = crate::admin::query(q)?;
    let purpose = match q.purpose.as_deref() {
        None | Some("") => None,
        Some(p) => Some(p.parse::<FilePurpose>().map_err(|e| ApiError::invalid(Some("purpose".into()), e.0))?),
    };
    let page = wire::ListPage::new(q.after, q.limit, 100, 1000);
    let files = jobs.services.files.list_files(&tenant, purpose, &page.ask).await?;
    Ok(Json(page.answer(files, wire::file)).into_response())
}

pub async fn get(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let f = jobs.services.files.get_file(&tenant, &FileId::from(id.as_str())).await?;
    let f = f.ok_or_else(|| ApiError::not_found("file", &id))?;
    Ok(Json(wire::file(&f)).into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    if !jobs.services.files.delete_file(&tenant, &FileId::from(id.as_str())).await? {
        return Err(ApiError::not_found("file", &id));
    }
    Ok(Json(json!({ "id": id, "object": "file", "deleted": true })).into_response())
}

pub async fn content(
    State(st): State<AppState>,
    Extension(cx): Extension<RequestCx>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (jobs, tenant) = scope(&st, &cx)?;
    let text = jobs.services.files.file_content(&tenant, &FileId::from(id.as_str())).await?;
    let text = text.ok_or_else(|| ApiError::not_found("file", &id))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], text).into_response())
}

/// A `multipart/form-data` body, read whole (it already passed the body layer's bound).
mod multipart {
    /// One uploaded file part.
    pub struct FilePart<'a> {
        pub filename: String,
        pub content: &'a [u8],
    }

    pub struct Form<'a> {
        fields: Vec<(String, Option<String>, &'a [u8])>,
    }

    impl<'a> Form<'a> {
        pub fn field(&self, name: &str) -> Option<&'a [u8]> {
            self.fields.iter().find(|(n, f, _)| n == name && f.is_none()).map(|(_, _, v)| *v)
        }

        pub fn file(&self) -> Option<FilePart<'a>> {
            self.fields
                .iter()
                .find(|(n, _, _)| n == "file")
                .map(|(_, f, v)| FilePart { filename: f.clone().unwrap_or_else(|| "upload.jsonl".into()), content: v })
        }
    }

    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    }

    /// `name="value"` from a header's parameters.
    fn param(header: &str, name: &str) -> Option<String> {
        header.split(';').map(str::trim).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_owned())
        })
    }

    pub fn parse<'a>(content_type: &str, body: &'a [u8]) -> Result<Form<'a>, String> {
        if !content_type.to_ascii_lowercase().starts_with("multipart/form-data") {
            return Err("expected a multipart/form-data upload with 'file' and 'purpose'".into());
        }
        let boundary = param(content_type, "boundary").ok_or("the multipart upload has no boundary")?;
        let delim = format!("--{boundary}").into_bytes();
        let mut fields = Vec::new();
        let mut at = find(body, &delim, 0).ok_or("the multipart body has no part")? + delim.len();
        loop {
            if body.get(at..at + 2) == Some(b"--") {
                break;
            }
            let head_start = at + 2; // CRLF after the delimiter
            let head_end = find(body, b"\r\n\r\n", head_start).ok_or("a multipart part has no header end")?;
            let head = String::from_utf8_lossy(body.get(head_start..head_end).unwrap_or_default()).into_owned();
            let content_start = head_end + 4;
            let mut next_delim = b"\r\n".to_vec();
            next_delim.extend_from_slice(&delim);
            let content_end = find(body, &next_delim, content_start).ok_or("a multipart part is not closed")?;
            let disposition = head
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
                .ok_or("a multipart part has no Content-Disposition")?;
            let name = param(disposition, "name").ok_or("a multipart part has no name")?;
            let filename = param(disposition, "filename");
            fields.push((name, filename, body.get(content_start..content_end).unwrap_or_default()));
            at = content_end + next_delim.len();
        }
        Ok(Form { fields })
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn reads_fields_and_the_file() {
            let body = b"--XX\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--XX--\r\n";
            let f = parse("multipart/form-data; boundary=XX", body).unwrap();
            assert_eq!(f.field("purpose").unwrap(), b"batch");
            let file = f.file().unwrap();
            assert_eq!((file.filename.as_str(), file.content), ("in.jsonl", &b"{\"a\":1}\n{\"b\":2}\n"[..]));
            assert!(parse("application/json", body).is_err());
            assert!(
                parse(
                    "multipart/form-data; boundary=XX",
                    b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"
                )
                .is_err()
            );
        }
    }
}
