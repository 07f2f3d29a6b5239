-- The ledger's key becomes a server-made row id (issue 17). Until now request_id — the client's
-- X-Request-Id when it sent one — was the primary key with inserts ON CONFLICT DO NOTHING, so a
-- client repeating one id got a single row for any number of requests and erased its own usage.
-- Now `id` (a UUIDv7 the gateway makes when it builds the row) is the key, which keeps a retried
-- batch idempotent, and request_id is a plain, non-unique column kept for correlation.
--
-- One text for SQLite and PostgreSQL: neither can change a primary key in place portably, so the
-- table is rebuilt. Existing rows keep their request_id as their id (they were unique).

DROP INDEX usage_ledger_created_at;
DROP INDEX usage_ledger_tenant_created_at;
DROP INDEX usage_ledger_key_created_at;
ALTER TABLE usage_ledger RENAME TO usage_ledger_v1;

CREATE TABLE usage_ledger (
    id                   TEXT   NOT NULL,
    request_id           TEXT   NOT NULL,
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
    created_at_ms        BIGINT NOT NULL,
    -- Named: PostgreSQL keeps the old table's "usage_ledger_pkey" until it is dropped below.
    CONSTRAINT usage_ledger_id_pkey PRIMARY KEY (id)
);

INSERT INTO usage_ledger (id, request_id, tenant_id, key_id, endpoint, model_requested, model_served, backend,
    prompt_tokens, cached_prompt_tokens, completion_tokens, latency_ms, ttft_ms, http_status, error_type, streamed,
    cancelled, created_at_ms)
SELECT request_id, request_id, tenant_id, key_id, endpoint, model_requested, model_served, backend,
    prompt_tokens, cached_prompt_tokens, completion_tokens, latency_ms, ttft_ms, http_status, error_type, streamed,
    cancelled, created_at_ms
FROM usage_ledger_v1;

DROP TABLE usage_ledger_v1;

CREATE INDEX usage_ledger_created_at ON usage_ledger (created_at_ms);
CREATE INDEX usage_ledger_tenant_created_at ON usage_ledger (tenant_id, created_at_ms);
CREATE INDEX usage_ledger_key_created_at ON usage_ledger (key_id, created_at_ms);
-- Finding a request's rows by the id a client or a log line quotes.
CREATE INDEX usage_ledger_request_id ON usage_ledger (request_id);
