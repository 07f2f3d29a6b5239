-- The durable job queue (issue 19): jobs, their attempt history, webhook endpoints and
-- deliveries. ONE text for SQLite and PostgreSQL (TEXT and BIGINT only; times are unix ms; flags
-- are BIGINT 0/1; JSON documents in TEXT), like migration 1.

CREATE TABLE jobs (
    id               TEXT   NOT NULL PRIMARY KEY,
    -- response | batch_item | webhook
    kind             TEXT   NOT NULL,
    -- queued | running | succeeded | failed | cancelled | dead
    state            TEXT   NOT NULL,
    tenant_id        TEXT,
    key_id           TEXT,
    batch_id         TEXT,
    -- Lower runs first.
    priority         BIGINT NOT NULL,
    -- Runs so far: counted when leased, so a run whose worker died counts.
    attempts         BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    payload          TEXT   NOT NULL,
    result           TEXT,
    last_error       TEXT,
    cancel_requested BIGINT NOT NULL CHECK (cancel_requested IN (0, 1)),
    run_after_ms     BIGINT NOT NULL,
    -- The current lease (running jobs): a random token per lease call, and its end.
    lease_token      TEXT,
    lease_until_ms   BIGINT,
    worker_id        TEXT,
    -- Enqueueing the same key twice stores one job (NULLs never conflict).
    dedupe_key       TEXT   UNIQUE,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    finished_at_ms   BIGINT
);
-- The lease scan: runnable jobs of some kinds by priority, then run_after.
CREATE INDEX jobs_pick ON jobs (state, kind, priority, run_after_ms);
-- Expired leases.
CREATE INDEX jobs_lease_until ON jobs (state, lease_until_ms);
CREATE INDEX jobs_batch ON jobs (batch_id, state);
CREATE INDEX jobs_finished ON jobs (state, finished_at_ms);

CREATE TABLE job_attempts (
    id             TEXT   NOT NULL PRIMARY KEY,
    job_id         TEXT   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt        BIGINT NOT NULL,
    lease_token    TEXT   NOT NULL,
    worker_id      TEXT   NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    finished_at_ms BIGINT,
    -- running | succeeded | failed | error | lease_expired | released | cancelled
    outcome        TEXT   NOT NULL,
    error          TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, started_at_ms);

CREATE TABLE webhook_endpoints (
    id            TEXT   NOT NULL PRIMARY KEY,
    url           TEXT   NOT NULL,
    -- JSON array of event names.
    events        TEXT   NOT NULL,
    tenant_id     TEXT,
    -- whsec_…, sealed (v1:base64 of ChaCha20-Poly1305 under the server key): HMAC needs the key itself.
    secret        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- No foreign key: deliveries are history and outlive a deleted endpoint.
CREATE TABLE webhook_deliveries (
    id               TEXT   NOT NULL PRIMARY KEY,
    endpoint_id      TEXT   NOT NULL,
    event_type       TEXT   NOT NULL,
    job_id           TEXT   NOT NULL,
    status           TEXT   NOT NULL,
    attempts         BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- Files (OpenAI /v1/files): UTF-8 text (JSONL) in the database, owned by a tenant.
CREATE TABLE files (
    id            TEXT   NOT NULL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    -- batch | batch_output
    purpose       TEXT   NOT NULL,
    filename      TEXT   NOT NULL,
    bytes         BIGINT NOT NULL,
    content       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX files_tenant ON files (tenant_id, id);

-- Batches (OpenAI /v1/batches); their lines are batch_item jobs.
CREATE TABLE batches (
    id                TEXT   NOT NULL PRIMARY KEY,
    tenant_id         TEXT   NOT NULL,
    key_id            TEXT,
    endpoint          TEXT   NOT NULL,
    input_file_id     TEXT   NOT NULL,
    completion_window TEXT   NOT NULL,
    -- validating | failed | in_progress | finalizing | completed | expired | cancelling | cancelled
    status            TEXT   NOT NULL,
    output_file_id    TEXT,
    error_file_id     TEXT,
    -- JSON array of {code, message, param, line}.
    errors            TEXT   NOT NULL,
    request_total     BIGINT NOT NULL,
    request_completed BIGINT NOT NULL,
    request_failed    BIGINT NOT NULL,
    metadata          TEXT,
    -- JSON object of the *_at_ms times of each status entered.
    times             TEXT   NOT NULL,
    created_at_ms     BIGINT NOT NULL,
    expires_at_ms     BIGINT NOT NULL,
    updated_at_ms     BIGINT NOT NULL
);
CREATE INDEX batches_tenant ON batches (tenant_id, id);
CREATE INDEX batches_status ON batches (status, created_at_ms);
