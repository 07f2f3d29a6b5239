use ferrogate_core::jobs::{
    BatchChanges, BatchEndpoint, BatchError, BatchStatus, BatchStore, FileLimits, FilePurpose, FileStore, NewBatch,
    NewFile, Page, RequestCounts, validate_input,
};
use ferrogate_core::tenancy::StoreError;
use serde_json::json;

use crate::common::TestDb;

fn upload(tenant: &str, name: &str, content: &str) -> NewFile {
    NewFile { tenant_id: tenant.into(), purpose: FilePurpose::Batch, filename: name.into(), content: content.into() }
}

pub async fn files_are_per_tenant_with_caps_and_quotas(db: &TestDb) {
    let s = &db.store;
    let limits = FileLimits { max_file_bytes: 100, tenant_quota_bytes: 150 };
    let a = s.create_file(upload("t1", "a.jsonl", &"x".repeat(80)), &limits).await.unwrap();
    assert_eq!((a.bytes, a.purpose, a.filename.as_str()), (80, FilePurpose::Batch, "a.jsonl"));
    assert!(a.id.as_str().starts_with("file-"));
    let too_big = s.create_file(upload("t1", "big", &"x".repeat(101)), &limits).await.unwrap_err();
    assert!(matches!(too_big, StoreError::Invalid(_)), "{too_big}");
    let over = s.create_file(upload("t1", "b", &"y".repeat(80)), &limits).await.unwrap_err();
    assert!(matches!(over, StoreError::Invalid(ref m) if m.to_string().contains("quota")), "{over}");
    let other = s.create_file(upload("t2", "b", &"y".repeat(80)), &limits).await.unwrap();
    let b = s.create_file(upload("t1", "c", &"z".repeat(70)), &limits).await.unwrap();
    assert_eq!(s.tenant_file_bytes(&"t1".into()).await.unwrap(), 150);

    assert_eq!(s.get_file(&"t1".into(), &a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_file(&"t2".into(), &a.id).await.unwrap(), None, "another tenant's file is not found");
    assert_eq!(s.file_content(&"t1".into(), &a.id).await.unwrap().unwrap(), "x".repeat(80));
    assert_eq!(s.file_content(&"t2".into(), &a.id).await.unwrap(), None);
    let listed = s.list_files(&"t1".into(), Some(FilePurpose::Batch), &Page::first(10)).await.unwrap();
    assert_eq!(listed, [a.clone(), b.clone()]);
    assert!(s.list_files(&"t1".into(), Some(FilePurpose::BatchOutput), &Page::first(10)).await.unwrap().is_empty());
    assert!(!s.delete_file(&"t1".into(), &other.id).await.unwrap(), "not t1's");
    assert!(s.delete_file(&"t1".into(), &a.id).await.unwrap());
    assert_eq!(s.tenant_file_bytes(&"t1".into()).await.unwrap(), 70);

    // Written once under a chosen id, however often the writer runs.
    let id = ferrogate_core::jobs::FileId::from("file-out-1");
    let once = s.create_file_once(&id, upload("t1", "out", "first"), &limits).await.unwrap();
    let again = s.create_file_once(&id, upload("t1", "out", "second"), &limits).await.unwrap();
    assert_eq!((once.id.as_str(), &again), ("file-out-1", &once));
    assert_eq!(s.file_content(&"t1".into(), &id).await.unwrap().unwrap(), "first");
}

pub async fn batch_records_move_through_their_statuses_once(db: &TestDb) {
    let s = &db.store;
    let line = |id: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}).to_string()
    };
    let input = format!("{}\n{}\n", line("a"), line("b"));
    let file = s.create_file(upload("t1", "in.jsonl", &input), &FileLimits::default()).await.unwrap();
    let new = NewBatch {
        tenant_id: "t1".into(),
        key_id: Some("k1".into()),
        endpoint: BatchEndpoint::ChatCompletions,
        input_file_id: file.id.clone(),
        completion_window_ms: 86_400_000,
        metadata: Some(json!({"job": "nightly"})),
    };
    let batch = s.create_batch(new.clone()).await.unwrap();
    assert_eq!((batch.status, batch.completion_window.as_str()), (BatchStatus::Validating, "24h"));
    assert_eq!(batch.expires_at_ms - batch.created_at_ms, 86_400_000);
    assert_eq!(s.get_batch(Some(&"t1".into()), &batch.id).await.unwrap(), Some(batch.clone()));
    assert_eq!(s.get_batch(Some(&"t2".into()), &batch.id).await.unwrap(), None);

    let content = s.file_content(&"t1".into(), &file.id).await.unwrap().unwrap();
    let lines = validate_input(&content, batch.endpoint, &Default::default()).unwrap();
    let counts = RequestCounts { total: u64::try_from(lines.len()).unwrap(), completed: 0, failed: 0 };
    let go = BatchChanges { request_counts: Some(counts), ..BatchChanges::default() };
    let running = s.transition(&batch.id, BatchStatus::Validating, BatchStatus::InProgress, go.clone()).await.unwrap();
    let running = running.unwrap();
    assert_eq!((running.status, running.request_counts.total), (BatchStatus::InProgress, 2));
    assert!(running.times.in_progress_at_ms.is_some());
    let again = s.transition(&batch.id, BatchStatus::Validating, BatchStatus::InProgress, go).await.unwrap();
    assert!(again.is_none(), "a second instance does not move it again");
    let illegal = s.transition(&batch.id, BatchStatus::InProgress, BatchStatus::Validating, BatchChanges::default());
    assert!(matches!(illegal.await, Err(StoreError::Invalid(_))));

    s.set_counts(&batch.id, RequestCounts { total: 2, completed: 1, failed: 1 }).await.unwrap();
    s.transition(&batch.id, BatchStatus::InProgress, BatchStatus::Finalizing, BatchChanges::default()).await.unwrap();
    let output = NewFile { purpose: FilePurpose::BatchOutput, ..upload("t1", "out", "{}") };
    let out = s.create_file(output, &FileLimits::default()).await.unwrap();
    let done = BatchChanges { output_file_id: Some(out.id.clone()), ..BatchChanges::default() };
    let done = s.transition(&batch.id, BatchStatus::Finalizing, BatchStatus::Completed, done).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.output_file_id, done.request_counts.completed),
        (BatchStatus::Completed, Some(out.id), 1)
    );
    assert_eq!(done.metadata, Some(json!({"job": "nightly"})));

    // A refused input file: failed, with its errors.
    let bad = s.create_batch(new).await.unwrap();
    let errors = vec![BatchError::at(3, "duplicate_custom_id", Some("custom_id"), "dup".into())];
    let failed = BatchChanges { errors: Some(errors.clone()), ..BatchChanges::default() };
    let failed = s.transition(&bad.id, BatchStatus::Validating, BatchStatus::Failed, failed).await.unwrap().unwrap();
    assert_eq!((failed.status, failed.errors), (BatchStatus::Failed, errors));
    let completed = s.batches_in(BatchStatus::Completed, 10).await.unwrap();
    assert_eq!(completed.len(), 1);
    let listed: Vec<_> =
        s.list_batches(&"t1".into(), &Page::first(10)).await.unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(listed, [bad.id.clone(), batch.id.clone()], "newest first");
    let next = Page { after: Some(bad.id.to_string()), limit: 10 };
    assert_eq!(s.list_batches(&"t1".into(), &next).await.unwrap().len(), 1);
}
