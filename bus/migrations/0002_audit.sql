-- The audit log: an append-only RFC 6962 Merkle tree (design §7).
-- audit_entries holds the leaves; audit_nodes every complete (perfect) subtree hash, leaves
-- included, so proofs need O(log n) lookups; audit_checkpoints every signed tree head.
CREATE TABLE audit_entries (
    idx          bigint PRIMARY KEY CHECK (idx >= 0),
    leaf         bytea NOT NULL,
    leaf_hash    bytea NOT NULL CHECK (length(leaf_hash) = 32),
    event_kind   text NOT NULL,
    message_id   uuid NOT NULL,
    case_id      text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, event_kind)
);
CREATE INDEX audit_entries_case ON audit_entries (case_id, idx);

CREATE TABLE audit_nodes (
    start_idx  bigint NOT NULL CHECK (start_idx >= 0),
    end_idx    bigint NOT NULL CHECK (end_idx > start_idx),
    hash       bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (start_idx, end_idx)
);

CREATE TABLE audit_checkpoints (
    tree_size     bigint PRIMARY KEY CHECK (tree_size >= 0),
    root_hash     bytea NOT NULL CHECK (length(root_hash) = 32),
    timestamp_ms  bigint NOT NULL,
    note          text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Append-only, even for the owner: history is never updated or deleted by the application.
-- (A superuser can still bypass this; that is what the Merkle tree and the procuratorate's
-- monitor are for.)
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_nodes_append_only BEFORE UPDATE OR DELETE ON audit_nodes
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

-- The application role: services log in as a member of it. It may read and append, nothing
-- more. Roles are cluster-wide, so create it only once.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casebus_app') THEN
        CREATE ROLE casebus_app NOLOGIN;
    END IF;
END $$;
GRANT SELECT, INSERT ON audit_entries, audit_nodes, audit_checkpoints TO casebus_app;
GRANT SELECT ON agencies, agency_keys TO casebus_app;
