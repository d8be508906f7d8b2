-- Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Tokens are stored as the hex SHA-256 of the raw flow token: a raw token
-- identifies a user and is only ever compared, never read back.
-- Times are Unix milliseconds.

-- One row per finished flow token; the primary key is what makes a token
-- single-use, even between replicas racing to complete it.
CREATE TABLE completions (
    token_hash      TEXT   NOT NULL PRIMARY KEY,
    flow            TEXT   NOT NULL,
    -- The completion's params as JSON: the business data the flow produced.
    params          TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    completed_at    BIGINT NOT NULL
);

-- The outcome of each call by idempotency key. `outcome` is NULL while the
-- call is in progress (a claim, held until `expires_at`).
CREATE TABLE outcomes (
    token_hash      TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    outcome         TEXT,
    expires_at      BIGINT NOT NULL,
    PRIMARY KEY (token_hash, idempotency_key)
);
CREATE INDEX outcomes_expires_at ON outcomes (expires_at);

-- State a flow keeps for a token between screens.
CREATE TABLE sessions (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    flow       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
