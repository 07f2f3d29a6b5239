//! The semantic cache's index in PostgreSQL ([`PgSemanticIndex`]), shared by every replica:
//! one row per cached answer — its scope (tenant, deployment, conversation prefix digest), its
//! unit embedding as `real[]`, the entry as JSON, its expiry. A lookup reads the live rows of
//! one scope (bounded by `per_scope`) and takes the best cosine in process.
//!
//! Why `real[]` and not pgvector: the index is scoped first — a scope holds the answers to one
//! conversation prefix, a few rows — so a nearest-neighbour index would not be used; and the
//! pgvector extension is not in this project's Debian package set (docs/STATE.md). The table is
//! created on connect (`IF NOT EXISTS`): PostgreSQL only, outside the shared SQLite/PostgreSQL
//! migrations.

use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::cache::semantic::best_match;
use ferrogate_core::cache::{CacheError, CachedCompletion, SemanticHit, SemanticIndex, SemanticScope};
use ferrogate_core::tenancy::time::now_ms;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The index; cheap to clone (a pool).
#[derive(Clone)]
pub struct PgSemanticIndex {
    pool: PgPool,
    per_scope: i64,
}

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS semantic_cache (
        id BIGSERIAL PRIMARY KEY,
        scope TEXT NOT NULL,
        embedding REAL[] NOT NULL,
        entry TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS semantic_cache_scope ON semantic_cache (scope, id DESC)",
];

impl PgSemanticIndex {
    /// Connects and creates the table if needed. The error never echoes the URL.
    pub async fn connect(url: &str, per_scope: usize) -> Result<Self, String> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| format!("semantic cache database: cannot connect ({})", kind(&e)))?;
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(|e| format!("semantic cache database: schema ({})", kind(&e)))?;
        }
        Ok(Self { pool, per_scope: i64::try_from(per_scope.max(1)).unwrap_or(64) })
    }
}

fn kind(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Io(_) => "I/O error".into(),
        _ => "error".into(),
    }
}

fn unavailable(e: sqlx::Error) -> CacheError {
    CacheError::Unavailable(format!("semantic cache database: {}", kind(&e)))
}

#[async_trait]
impl SemanticIndex for PgSemanticIndex {
    async fn nearest(
        &self,
        scope: &SemanticScope,
        vector: &[f32],
        threshold: f32,
    ) -> Result<Option<SemanticHit>, CacheError> {
        let rows: Vec<(Vec<f32>, String)> = sqlx::query_as(
            "SELECT embedding, entry FROM semantic_cache WHERE scope = $1 AND expires_at_ms > $2 \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(scope.as_str())
        .bind(now_ms())
        .bind(self.per_scope)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let best = best_match(rows.iter().map(|(v, entry)| (v.as_slice(), entry)), vector, threshold);
        let Some((similarity, entry)) = best else { return Ok(None) };
        let entry: CachedCompletion =
            serde_json::from_str(entry).map_err(|e| CacheError::Corrupt(format!("semantic cache entry: {e}")))?;
        Ok(Some(SemanticHit { entry, similarity }))
    }

    async fn insert(
        &self,
        scope: &SemanticScope,
        vector: Vec<f32>,
        entry: CachedCompletion,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let entry = serde_json::to_string(&entry).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        sqlx::query("INSERT INTO semantic_cache (scope, embedding, entry, expires_at_ms) VALUES ($1, $2, $3, $4)")
            .bind(scope.as_str())
            .bind(vector)
            .bind(entry)
            .bind(expires)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        // Keep the scope bounded: expired rows and those beyond the newest `per_scope` go.
        sqlx::query(
            "DELETE FROM semantic_cache WHERE scope = $1 AND (expires_at_ms <= $2 OR id < COALESCE((\
             SELECT MIN(id) FROM (SELECT id FROM semantic_cache WHERE scope = $1 ORDER BY id DESC LIMIT $3) newest), 0))",
        )
        .bind(scope.as_str())
        .bind(now)
        .bind(self.per_scope)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}
