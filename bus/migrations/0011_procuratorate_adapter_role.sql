-- Issue #15, point 5: every service connects as its own role. The procuratorate's adapter is
-- the one adapter that is a party to the audit log: it appends every query it answers (event
-- `query`, so who looked at what is itself on the record) and answers timelines, evidence
-- bundles and proofs from the log. casebus_adapter must not have that: with it, any
-- department adapter's login could read every agency's traffic in the log and append to it.
-- So the procuratorate's adapter has a role of its own: casebus_adapter's grants, repeated
-- here table by table (no role membership, which the migrating role may not be able to
-- grant), and the audit log's, as the router has them less router_accepted and
-- dead_letter_bodies. It may not UPDATE, DELETE or TRUNCATE anything of the log either.
--
-- The router and the SLA engine needed no new grant: what stopped them as their roles was
-- registering their signing keys at start (an INSERT into agency_keys), which is now the
-- operator's (`casebus agency key add`; bus/provision.py).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'casebus_procuratorate_adapter') THEN
        BEGIN
            CREATE ROLE casebus_procuratorate_adapter NOLOGIN NOSUPERUSER NOCREATEDB
                NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of this cluster migrated a moment ago
        END;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO casebus_procuratorate_adapter;
GRANT SELECT ON agencies, agency_keys, schema_migrations TO casebus_procuratorate_adapter;

-- As casebus_adapter (0009): outbox, inbox marks, tokens, submissions, deliveries, its tables.
GRANT SELECT, INSERT, UPDATE ON outbox TO casebus_procuratorate_adapter;
GRANT USAGE ON SEQUENCE outbox_id_seq TO casebus_procuratorate_adapter;
GRANT SELECT, INSERT ON inbox_handled TO casebus_procuratorate_adapter;
GRANT SELECT ON adapter_tokens TO casebus_procuratorate_adapter;
GRANT SELECT, INSERT ON adapter_submissions TO casebus_procuratorate_adapter;
GRANT SELECT, INSERT, UPDATE ON adapter_deliveries TO casebus_procuratorate_adapter;
GRANT USAGE ON SEQUENCE adapter_deliveries_id_seq TO casebus_procuratorate_adapter;
GRANT SELECT, INSERT ON procuratorate_events, procuratorate_tree_heads
    TO casebus_procuratorate_adapter;
GRANT USAGE ON SEQUENCE procuratorate_events_id_seq TO casebus_procuratorate_adapter;

-- The audit log: read it all, append queries (entries and their subtree hashes); checkpoints
-- are the router's to sign, so read only.
GRANT SELECT, INSERT ON audit_entries, audit_nodes TO casebus_procuratorate_adapter;
GRANT SELECT ON audit_checkpoints TO casebus_procuratorate_adapter;
