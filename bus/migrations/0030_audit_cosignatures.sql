-- Issue #16: witnesses' cosignatures on the log's checkpoints (c2sp.org/tlog-cosignature).
-- One row per checkpoint and witness: the signature line as the witness returned it, so that a
-- checkpoint note plus its rows is the cosigned note any C2SP verifier reads. Append-only like
-- the rest of the log. A row proves nothing by being here: verifiers check each line with the
-- witness's public key, which the database does not hold.
CREATE TABLE audit_cosignatures (
    tree_size    bigint NOT NULL REFERENCES audit_checkpoints (tree_size),
    witness      text NOT NULL,
    line         text NOT NULL,
    timestamp_s  bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tree_size, witness)
);
CREATE TRIGGER audit_cosignatures_append_only BEFORE UPDATE OR DELETE ON audit_cosignatures
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The router signs checkpoints and asks the witnesses; readers of the log read them.
GRANT SELECT, INSERT ON audit_cosignatures TO casebus_app, casebus_router;
GRANT SELECT ON audit_cosignatures
    TO casebus_monitor, casebus_procuratorate_ro, casebus_procuratorate_adapter;
