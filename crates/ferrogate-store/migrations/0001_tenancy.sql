-- Tenants, API keys and the usage ledger. ONE text for SQLite and PostgreSQL, so only portable
-- types: TEXT and BIGINT. Times are unix milliseconds (UTC); booleans are BIGINT 0/1 (sqlx's
-- Any driver cannot read SQLite BOOLEAN columns); limits and scopes are JSON documents in TEXT,
-- read tolerantly, so a new optional limit needs no migration.

CREATE TABLE tenants (
    id            TEXT   NOT NULL PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    limits        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
-- Instances poll "changed since T" every second to invalidate their caches.
CREATE INDEX tenants_updated_at ON tenants (updated_at_ms);

CREATE TABLE api_keys (
    id            TEXT   NOT NULL PRIMARY KEY,
    -- No cascade: deleting a tenant with active keys is refused (revoked keys are deleted first).
    tenant_id     TEXT   NOT NULL REFERENCES tenants (id),
    name          TEXT   NOT NULL,
    -- fg-<8 chars>: the visible part of the key, kept across rotations.
    prefix        TEXT   NOT NULL UNIQUE,
    -- Lowercase hex SHA-256 of the whole key. The key itself is never stored.
    key_digest    TEXT   NOT NULL UNIQUE,
    scopes        TEXT   NOT NULL,
    limits        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
CREATE INDEX api_keys_updated_at ON api_keys (updated_at_ms);

-- Exactly one row per request: request_id is the key and inserts are ON CONFLICT DO NOTHING,
-- so a batch retried after a timeout writes nothing twice. No foreign keys: the ledger is
-- history and outlives the keys and tenants it names.
CREATE TABLE usage_ledger (
    request_id           TEXT   NOT NULL PRIMARY KEY,
    tenant_id            TEXT,
    key_id               TEXT,
    endpoint             TEXT   NOT NULL,
    model_requested      TEXT   NOT NULL,
    model_served         TEXT,
    backend              TEXT,
    prompt_tokens        BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens    BIGINT NOT NULL,
    latency_ms           BIGINT NOT NULL,
    ttft_ms              BIGINT,
    http_status          BIGINT NOT NULL,
    error_type           TEXT,
    streamed             BIGINT NOT NULL CHECK (streamed IN (0, 1)),
    cancelled            BIGINT NOT NULL CHECK (cancelled IN (0, 1)),
    created_at_ms        BIGINT NOT NULL
);
CREATE INDEX usage_ledger_created_at ON usage_ledger (created_at_ms);
CREATE INDEX usage_ledger_tenant_created_at ON usage_ledger (tenant_id, created_at_ms);
CREATE INDEX usage_ledger_key_created_at ON usage_ledger (key_id, created_at_ms);
