-- A usage row served from the response cache (docs/STATE.md: billing of cache hits).
-- Existing rows were all computed by a backend.
ALTER TABLE usage_ledger ADD COLUMN cache_hit BIGINT NOT NULL DEFAULT 0;
