-- Issue #14: a submitted record too large to route is dead-lettered as its digest, its size
-- and a prefix (Kafka cannot carry it again with the router's headers added); the whole
-- record is kept here, under its value's SHA-256, for an operator to read back.
CREATE TABLE dead_letter_bodies (
    value_sha256   bytea PRIMARY KEY CHECK (length(value_sha256) = 32),
    src_topic      text NOT NULL,
    src_partition  integer NOT NULL,
    src_offset     bigint NOT NULL,
    record_key     bytea,
    record_value   bytea NOT NULL,
    record_headers jsonb NOT NULL,
    received_at    timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON dead_letter_bodies TO casebus_app, casebus_router;
