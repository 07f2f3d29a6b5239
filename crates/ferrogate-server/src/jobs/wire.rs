//! OpenAI's `file` and `batch` objects, as the official SDKs read them (times in unix seconds).

use ferrogate_core::jobs::{Batch, FileObject};
use serde_json::{Value, json};

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

fn secs_opt(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |m| Value::from(secs(m)))
}

/// The `file` object.
pub fn file(f: &FileObject) -> Value {
    json!({
        "id": f.id.as_str(),
        "object": "file",
        "bytes": f.bytes,
        "created_at": secs(f.created_at_ms),
        "expires_at": null,
        "filename": f.filename,
        "purpose": f.purpose.as_str(),
        "status": "processed",
        "status_details": null,
    })
}

/// The `batch` object.
pub fn batch(b: &Batch) -> Value {
    let t = &b.times;
    let errors = match b.errors.is_empty() {
        true => Value::Null,
        false => json!({ "object": "list", "data": b.errors }),
    };
    json!({
        "id": b.id.as_str(),
        "object": "batch",
        "endpoint": b.endpoint.as_str(),
        "errors": errors,
        "input_file_id": b.input_file_id.as_str(),
        "completion_window": b.completion_window,
        "status": b.status.as_str(),
        "output_file_id": b.output_file_id.as_ref().map(|f| f.as_str()),
        "error_file_id": b.error_file_id.as_ref().map(|f| f.as_str()),
        "created_at": secs(b.created_at_ms),
        "in_progress_at": secs_opt(t.in_progress_at_ms),
        "expires_at": secs(b.expires_at_ms),
        "finalizing_at": secs_opt(t.finalizing_at_ms),
        "completed_at": secs_opt(t.completed_at_ms),
        "failed_at": secs_opt(t.failed_at_ms),
        "expired_at": secs_opt(t.expired_at_ms),
        "cancelling_at": secs_opt(t.cancelling_at_ms),
        "cancelled_at": secs_opt(t.cancelled_at_ms),
        "request_counts": b.request_counts,
        "metadata": b.metadata,
    })
}

/// An OpenAI list page: `{"object":"list","data","first_id","last_id","has_more"}`.
pub fn page(data: Vec<Value>, has_more: bool) -> Value {
    let id = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": has_more,
        "data": data,
    })
}
