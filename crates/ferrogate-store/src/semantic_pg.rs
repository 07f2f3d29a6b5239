//! The semantic cache's index in PostgreSQL with pgvector ([`PgSemanticIndex`]), shared by every
//! replica: one row per cached answer — its scope (tenant, deployment, conversation prefix
//! digest), its unit embedding as a pgvector `vector`, the entry as JSON, its expiry. A lookup
//! takes the scope's newest live rows (bounded by `per_scope`) and lets PostgreSQL rank them by
//! cosine distance (`<=>`): one row comes back, not every candidate vector.
//!
//! No approximate-nearest-neighbour index (HNSW/IVFFlat): the scope is filtered first and holds
//! one conversation prefix's answers, a few rows found through the `(scope, id)` b-tree, so an
//! exact scan of them is cheaper than an ANN probe would be, and the column's dimension stays free
//! (another embedding model's vectors are skipped by `vector_dims`, never compared).
//!
//! Needs the `vector` extension installed in the server (`scripts/setup.sh --test` builds
//! pgvector from Debian's source package when it is missing); `connect` runs `CREATE EXTENSION IF
//! NOT EXISTS vector` and says plainly when it cannot. The table is created on connect (`IF NOT
//! EXISTS`): PostgreSQL only, outside the shared SQLite/PostgreSQL migrations.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use ferrogate_core::cache::{CacheError, CachedCompletion, SemanticHit, SemanticIndex, SemanticScope};
use ferrogate_core::tenancy::time::now_ms;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The index; cheap to clone (a pool).
#[derive(Clone)]
pub struct PgSemanticIndex {
    pool: PgPool,
    per_scope: i64,
}

/// `semantic_vectors`, not the `REAL[]` table `semantic_cache` of earlier versions (left alone:
/// its entries expire and nothing reads them).
const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS semantic_vectors (
        id BIGSERIAL PRIMARY KEY,
        scope TEXT NOT NULL,
        embedding vector NOT NULL,
        entry TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS semantic_vectors_scope ON semantic_vectors (scope, id DESC)",
];

impl PgSemanticIndex {
    /// Connects, makes sure pgvector is there and creates the table if needed. The error never
    /// echoes the URL.
    pub async fn connect(url: &str, per_scope: usize) -> Result<Self, String> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| format!("semantic cache database: cannot connect ({})", kind(&e)))?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&pool).await.map_err(|e| {
            format!(
                "semantic cache database: the pgvector extension is needed ({}); install it in the server \
                 (Debian: postgresql-15-pgvector, or scripts/setup.sh --test, which builds it)",
                kind(&e)
            )
        })?;
        for stmt in SCHEMA {
            sqlx::query(stmt)
                .execute(&pool)
                .await
                .map_err(|e| format!("semantic cache database: schema ({})", kind(&e)))?;
        }
        Ok(Self { pool, per_scope: i64::try_from(per_scope.max(1)).unwrap_or(64) })
    }
}

/// pgvector's text form, `[0.1,0.2,…]`, bound as text and cast in SQL. `None` for a vector
/// pgvector cannot hold (empty, or not finite).
fn literal(vector: &[f32]) -> Option<String> {
    if vector.is_empty() || vector.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut s = String::with_capacity(vector.len() * 12 + 2);
    s.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    Some(s)
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
        let Some(query) = literal(vector) else { return Ok(None) };
        let dims = i32::try_from(vector.len()).unwrap_or(i32::MAX);
        // The scope's newest live rows of this dimension, then the nearest of them by cosine.
        let best: Option<(f64, String)> = sqlx::query_as(
            "SELECT 1 - (embedding <=> $4::vector) AS similarity, entry FROM (\
               SELECT embedding, entry FROM semantic_vectors \
               WHERE scope = $1 AND expires_at_ms > $2 AND vector_dims(embedding) = $5 \
               ORDER BY id DESC LIMIT $3) newest \
             ORDER BY embedding <=> $4::vector LIMIT 1",
        )
        .bind(scope.as_str())
        .bind(now_ms())
        .bind(self.per_scope)
        .bind(query)
        .bind(dims)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some((similarity, entry)) = best else { return Ok(None) };
        // NaN (a zero vector) fails the comparison: a miss.
        let similarity = similarity as f32;
        if similarity.is_nan() || similarity < threshold {
            return Ok(None);
        }
        let entry: CachedCompletion =
            serde_json::from_str(&entry).map_err(|e| CacheError::Corrupt(format!("semantic cache entry: {e}")))?;
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
        let Some(vector) = literal(&vector) else {
            return Err(CacheError::Corrupt("semantic cache: an empty or non-finite embedding".into()));
        };
        let entry = serde_json::to_string(&entry).map_err(|e| CacheError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO semantic_vectors (scope, embedding, entry, expires_at_ms) VALUES ($1, $2::vector, $3, $4)",
        )
        .bind(scope.as_str())
        .bind(vector)
        .bind(entry)
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        // Keep the scope bounded: expired rows and those beyond the newest `per_scope` go.
        sqlx::query(
            "DELETE FROM semantic_vectors WHERE scope = $1 AND (expires_at_ms <= $2 OR id < COALESCE((\
             SELECT MIN(id) FROM (SELECT id FROM semantic_vectors WHERE scope = $1 ORDER BY id DESC LIMIT $3) newest), 0))",
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
