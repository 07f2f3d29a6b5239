//! A batch line as a `batch_item` job, what the server's runner answers for it, and the output
//! and error file lines (OpenAI's format) made from the finished jobs.
//!
//! Pure: the file lines are functions of the job records.

use ferrogate_core::jobs::{BatchId, BatchLine, BatchStatus, JobRecord, JobState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A `batch_item` job's payload: one input line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItemJob {
    /// The batch.
    pub batch_id: BatchId,
    /// The caller's id, echoed in the output.
    pub custom_id: String,
    /// 1-based input line (output order).
    pub line: u64,
    /// The endpoint (`/v1/chat/completions`, …).
    pub url: String,
    /// The request body.
    pub body: Value,
}

impl BatchItemJob {
    /// The job payload of a validated line.
    pub fn new(batch_id: &BatchId, url: &str, line: BatchLine) -> Self {
        Self {
            batch_id: batch_id.clone(),
            custom_id: line.custom_id,
            line: line.line,
            url: url.into(),
            body: line.body,
        }
    }
}

/// What the server's batch runner returns for a line: `Ok` for a 2xx answer, and inside
/// `JobError::failed` for a 4xx answer that is the line's final result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResponse {
    /// The HTTP status the endpoint answered.
    pub status_code: u16,
    /// The request id of the call (ledger row, logs).
    pub request_id: String,
    /// The response body (the same JSON the endpoint returns).
    pub body: Value,
}

/// Which file a finished line goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum FileLine {
    /// The output file.
    Output(u64, String),
    /// The error file.
    Error(u64, String),
}

/// The file line of a batch job, in a batch that ended in `status`; `None` for a job that is
/// not finished or whose payload is unreadable.
pub fn file_line(job: &JobRecord, status: BatchStatus) -> Option<FileLine> {
    let item: BatchItemJob = serde_json::from_value(job.payload.clone()).ok()?;
    let id = format!("batch_req_{}", job.id.as_str().trim_start_matches("job_"));
    let line = |response: Value, error: Value| {
        json!({ "id": id, "custom_id": item.custom_id, "response": response, "error": error }).to_string()
    };
    let result = job.result.clone().unwrap_or(Value::Null);
    Some(match job.state {
        JobState::Succeeded => FileLine::Output(item.line, line(result, Value::Null)),
        JobState::Failed => FileLine::Error(item.line, line(result, Value::Null)),
        JobState::Dead => {
            let message = job.last_error.clone().unwrap_or_else(|| "the request failed".into());
            FileLine::Error(item.line, line(Value::Null, json!({ "code": "server_error", "message": message })))
        }
        JobState::Cancelled => {
            let (code, message) = match status {
                BatchStatus::Expired => {
                    ("batch_expired", "This request could not be executed before the completion window expired.")
                }
                _ => ("batch_cancelled", "This request was not executed because the batch was cancelled."),
            };
            FileLine::Error(item.line, line(Value::Null, json!({ "code": code, "message": message })))
        }
        JobState::Queued | JobState::Running => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use ferrogate_core::jobs::{JobId, JobKind};

    use super::*;

    fn job(state: JobState, result: Option<Value>, error: Option<&str>) -> JobRecord {
        let item = BatchItemJob {
            batch_id: "batch_1".into(),
            custom_id: "req-7".into(),
            line: 7,
            url: "/v1/chat/completions".into(),
            body: json!({}),
        };
        JobRecord {
            id: JobId::from("job_abc"),
            kind: JobKind::BatchItem,
            state,
            tenant_id: None,
            key_id: None,
            batch_id: Some("batch_1".into()),
            priority: 0,
            attempts: 1,
            max_attempts: 5,
            payload: serde_json::to_value(item).unwrap(),
            result,
            last_error: error.map(Into::into),
            cancel_requested: false,
            run_after_ms: 0,
            lease_until_ms: None,
            dedupe_key: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            finished_at_ms: None,
        }
    }

    fn parsed(line: Option<FileLine>) -> (bool, u64, Value) {
        match line.unwrap() {
            FileLine::Output(n, s) => (true, n, serde_json::from_str(&s).unwrap()),
            FileLine::Error(n, s) => (false, n, serde_json::from_str(&s).unwrap()),
        }
    }

    #[test]
    fn lines_follow_openais_format() {
        let ok = json!({"status_code": 200, "request_id": "r1", "body": {"id": "chatcmpl-1"}});
        let (output, n, v) =
            parsed(file_line(&job(JobState::Succeeded, Some(ok.clone()), None), BatchStatus::Completed));
        assert!(output && n == 7);
        assert_eq!(v, json!({"id": "batch_req_abc", "custom_id": "req-7", "response": ok, "error": null}));

        let bad = json!({"status_code": 400, "request_id": "r2", "body": {"error": {}}});
        let (output, _, v) = parsed(file_line(&job(JobState::Failed, Some(bad.clone()), None), BatchStatus::Completed));
        assert!(!output && v["response"] == bad);

        let (_, _, v) = parsed(file_line(&job(JobState::Dead, None, Some("upstream 503")), BatchStatus::Completed));
        assert_eq!(v["error"], json!({"code": "server_error", "message": "upstream 503"}));
        let (_, _, v) = parsed(file_line(&job(JobState::Cancelled, None, None), BatchStatus::Expired));
        assert_eq!(v["error"]["code"], "batch_expired");
        let (_, _, v) = parsed(file_line(&job(JobState::Cancelled, None, None), BatchStatus::Cancelled));
        assert_eq!(v["error"]["code"], "batch_cancelled");
        assert!(file_line(&job(JobState::Running, None, None), BatchStatus::Completed).is_none());
    }
}
