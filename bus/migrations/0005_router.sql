-- What the router accepted, by message id: a second submission with the same bytes is a
-- duplicate to drop; with other bytes it is a conflicting duplicate to refuse. The source
-- offset tells a duplicate from a re-run of the same record after a crash.
CREATE TABLE router_accepted (
    message_id     uuid PRIMARY KEY,
    value_sha256   bytea NOT NULL CHECK (length(value_sha256) = 32),
    src_partition  integer NOT NULL,
    src_offset     bigint NOT NULL,
    audit_index    bigint NOT NULL,
    accepted_at    timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON router_accepted TO casebus_app;
