//! The semantic cache's PostgreSQL index (pgvector) against the machine's PostgreSQL, one fresh
//! database per test: ranking by cosine inside a scope, scopes apart, the threshold, another
//! model's dimension never compared, expiry and the per-scope bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ferrogate_core::cache::{CachedCompletion, SemanticIndex, SemanticScope};
use ferrogate_store::semantic_pg::PgSemanticIndex;
use ferrogate_testkit::TestDatabase;
use ferrogate_testkit::db::DbKind;
use serde_json::json;

fn entry(text: &str) -> CachedCompletion {
    let completion = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    });
    CachedCompletion::from_completion(&serde_json::from_value(completion).unwrap()).unwrap()
}

/// A unit vector at `deg` degrees in the plane of the first two axes, padded to `dims`.
fn unit(deg: f32, dims: usize) -> Vec<f32> {
    let mut v = vec![0.0; dims];
    v[0] = deg.to_radians().cos();
    v[1] = deg.to_radians().sin();
    v
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn nearest_by_cosine_within_the_scope_and_threshold() {
    let db = TestDatabase::open(DbKind::Postgres).await;
    let index = PgSemanticIndex::connect(&db.url, 16).await.unwrap();
    let (a, b) = (SemanticScope::new("a".repeat(64)), SemanticScope::new("b".repeat(64)));
    index.insert(&a, unit(0.0, 8), entry("east"), HOUR).await.unwrap();
    index.insert(&a, unit(90.0, 8), entry("north"), HOUR).await.unwrap();
    index.insert(&b, unit(10.0, 8), entry("other scope"), HOUR).await.unwrap();

    // 20° from east, 70° from north: east, with cos 20° as the similarity.
    let hit = index.nearest(&a, &unit(20.0, 8), 0.5).await.unwrap().expect("a hit");
    assert_eq!(hit.entry.text, "east");
    assert!((hit.similarity - 20f32.to_radians().cos()).abs() < 1e-4, "{}", hit.similarity);
    let hit = index.nearest(&a, &unit(80.0, 8), 0.5).await.unwrap().expect("a hit");
    assert_eq!(hit.entry.text, "north");
    // Above the threshold or nothing: 45° is cos 0.707 from both.
    assert!(index.nearest(&a, &unit(45.0, 8), 0.9).await.unwrap().is_none());
    // Another scope's rows are never candidates, however close.
    assert_eq!(index.nearest(&b, &unit(0.0, 8), 0.5).await.unwrap().unwrap().entry.text, "other scope");
    assert!(index.nearest(&SemanticScope::new("c".repeat(64)), &unit(0.0, 8), 0.0).await.unwrap().is_none());
    // Another model's dimension is skipped, not an error.
    assert!(index.nearest(&a, &unit(0.0, 4), 0.0).await.unwrap().is_none());
    // A vector pgvector cannot hold is a miss on lookup and refused on insert.
    assert!(index.nearest(&a, &[], 0.0).await.unwrap().is_none());
    assert!(index.nearest(&a, &[f32::NAN, 1.0], 0.0).await.unwrap().is_none());
    assert!(index.insert(&a, vec![f32::INFINITY; 8], entry("bad"), HOUR).await.is_err());
    // Shared: a second connection (another replica) sees the same rows.
    let other = PgSemanticIndex::connect(&db.url, 16).await.unwrap();
    assert_eq!(other.nearest(&a, &unit(5.0, 8), 0.5).await.unwrap().unwrap().entry.text, "east");
}

#[tokio::test]
async fn expired_rows_and_rows_past_the_bound_are_gone() {
    let db = TestDatabase::open(DbKind::Postgres).await;
    let index = PgSemanticIndex::connect(&db.url, 3).await.unwrap();
    let s = SemanticScope::new("d".repeat(64));
    index.insert(&s, unit(0.0, 8), entry("short-lived"), Duration::from_millis(50)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(index.nearest(&s, &unit(0.0, 8), 0.9).await.unwrap().is_none(), "expired");

    // Four entries under a bound of three: the oldest (at 0°) goes.
    for (deg, text) in [(0.0, "oldest"), (60.0, "b"), (120.0, "c"), (180.0, "d")] {
        index.insert(&s, unit(deg, 8), entry(text), HOUR).await.unwrap();
    }
    assert!(index.nearest(&s, &unit(0.0, 8), 0.9).await.unwrap().is_none(), "the oldest was pruned");
    assert_eq!(index.nearest(&s, &unit(175.0, 8), 0.9).await.unwrap().unwrap().entry.text, "d");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM semantic_vectors").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 3);
}
