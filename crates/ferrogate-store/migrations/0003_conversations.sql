-- Conversations, their items and stored responses (issue 18). One text for SQLite and
-- PostgreSQL, as in 0001: TEXT and BIGINT only, times in unix milliseconds (UTC), JSON in TEXT.
-- No foreign key to tenants: the anonymous owner ('-', auth off) is no tenant row, and a
-- tenant's deletion must not be blocked by its conversations (retention removes them).

CREATE TABLE conversations (
    id            TEXT   NOT NULL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    key_id        TEXT,
    metadata      TEXT   NOT NULL,
    -- Bumped by every change to the item list: a turn appends only if the version it read is
    -- still current (UPDATE … WHERE version = $expected), so concurrent turns never interleave.
    version       BIGINT NOT NULL,
    -- The position the next item gets: items of a turn get consecutive positions.
    next_seq      BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    -- NULL: kept until deleted. Rows past it are invisible and removed by the retention purge.
    expires_at_ms BIGINT
);
CREATE INDEX conversations_tenant ON conversations (tenant_id);
CREATE INDEX conversations_expires_at ON conversations (expires_at_ms);

CREATE TABLE conversation_items (
    id              TEXT   NOT NULL PRIMARY KEY,
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT   NOT NULL,
    -- The item (id, role, content parts, status) as JSON.
    body            TEXT   NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    CONSTRAINT conversation_items_position UNIQUE (conversation_id, seq)
);

-- One row per tenant that ever created a conversation: creating one updates it first, which
-- serializes one tenant's creations (a row lock on PostgreSQL, the write lock on SQLite), so the
-- per-tenant cap counted after it is exact under concurrency.
CREATE TABLE conversation_tenants (
    tenant_id TEXT   NOT NULL PRIMARY KEY,
    creates   BIGINT NOT NULL
);

CREATE TABLE stored_responses (
    id                   TEXT   NOT NULL PRIMARY KEY,
    tenant_id            TEXT   NOT NULL,
    key_id               TEXT,
    -- No foreign keys: a response outlives the conversation or response it continued.
    conversation_id      TEXT,
    previous_response_id TEXT,
    status               TEXT   NOT NULL,
    -- The response object (parameters, output items, usage, error) as JSON.
    body                 TEXT   NOT NULL,
    -- Its input items, oldest first, as a JSON list.
    input_items          TEXT   NOT NULL,
    created_at_ms        BIGINT NOT NULL,
    expires_at_ms        BIGINT
);
CREATE INDEX stored_responses_tenant ON stored_responses (tenant_id);
CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at_ms);
