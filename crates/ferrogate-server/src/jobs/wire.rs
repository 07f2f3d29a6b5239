//! OpenAI's `file` and `batch` objects, as the official SDKs read them (times in unix seconds).

use ferrogate_core::jobs::{Batch, FileObject, Page};
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

/// One page of an OpenAI list (`?after=ID&limit=N`): the store is asked for one entry more than
/// is shown, and that extra one says `has_more`.
pub struct ListPage {
    /// What to ask the store for.
    pub ask: Page,
    /// Entries shown.
    shown: usize,
}

impl ListPage {
    /// `limit` (absent: `default`) clamped to 1..=`max`.
    pub fn new(after: Option<String>, limit: Option<u32>, default: u32, max: u32) -> Self {
        let shown = limit.unwrap_or(default).clamp(1, max);
        Self { ask: Page { after, limit: shown + 1 }, shown: shown as usize }
    }

    /// The page of `items` (as the store answered [`ListPage::ask`]), each as `to_json` says.
    pub fn answer<T>(&self, mut items: Vec<T>, to_json: impl Fn(&T) -> Value) -> Value {
        let more = items.len() > self.shown;
        items.truncate(self.shown);
        page(items.iter().map(to_json).collect(), more)
    }
}

/// An OpenAI list page: `{"object":"list","data","first_id","last_id","has_more"}`.
fn page(data: Vec<Value>, has_more: bool) -> Value {
    let id = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": has_more,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_shows_its_limit_and_knows_if_there_is_more() {
        let p = ListPage::new(Some("a".into()), Some(2), 20, 100);
        assert_eq!((p.ask.after.as_deref(), p.ask.limit), (Some("a"), 3));
        let v = p.answer(vec!["b", "c", "d"], |s| json!({ "id": s }));
        assert_eq!(
            (v["has_more"].clone(), v["first_id"].clone(), v["last_id"].clone()),
            (json!(true), json!("b"), json!("c"))
        );
        assert_eq!(p.answer(vec!["b"], |s| json!({ "id": s }))["has_more"], false);
        assert_eq!(ListPage::new(None, None, 20, 100).ask.limit, 21);
        assert_eq!(ListPage::new(None, Some(0), 20, 100).ask.limit, 2);
        assert_eq!(ListPage::new(None, Some(5000), 20, 100).ask.limit, 101);
        let empty = ListPage::new(None, None, 20, 100).answer(Vec::<&str>::new(), |s| json!({ "id": s }));
        assert_eq!((empty["first_id"].clone(), empty["has_more"].clone()), (Value::Null, json!(false)));
    }
}
