-- Adapters (design §9): department API tokens, submission idempotency, pending deliveries.

-- One row per API token a department holds; only the SHA-256 of the token is stored.
CREATE TABLE adapter_tokens (
    token_sha256  bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    agency_id     text NOT NULL REFERENCES agencies (agency_id),
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX adapter_tokens_agency ON adapter_tokens (agency_id);

-- Idempotency-Key of each submission: the same key and body answer the same message id again.
CREATE TABLE adapter_submissions (
    agency_id        text NOT NULL,
    idempotency_key  text NOT NULL CHECK (idempotency_key <> ''),
    body_sha256      bytea NOT NULL CHECK (length(body_sha256) = 32),
    message_id       uuid NOT NULL UNIQUE,
    kind             text NOT NULL,
    case_id          text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, idempotency_key)
);

-- Messages waiting for (or done with) delivery to a department, by webhook or by pull.
-- id is the pull cursor; a case's rows are delivered in id order, one at a time.
CREATE TABLE adapter_deliveries (
    id               bigserial PRIMARY KEY,
    agency_id        text NOT NULL,
    message_id       uuid NOT NULL,
    case_id          text NOT NULL,
    kind             text NOT NULL,
    sender           text NOT NULL,
    correlation_id   text NOT NULL,
    document         jsonb NOT NULL,          -- the message in the department's vocabulary
    needs_ack        boolean NOT NULL,        -- whether acceptance answers with bus.ack
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'accepted', 'rejected')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    reason           text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    UNIQUE (agency_id, message_id)
);
CREATE INDEX adapter_deliveries_pending ON adapter_deliveries (agency_id, id)
    WHERE state = 'pending';
CREATE INDEX adapter_deliveries_case ON adapter_deliveries (agency_id, case_id, id)
    WHERE state = 'pending';
