-- Least-privilege group roles, one per kind of service (issue "security"). They are NOLOGIN:
-- whoever deploys creates the LOGIN users, with passwords from a secret store, and makes each a
-- member of one of these, e.g.
--   CREATE ROLE router_1 LOGIN PASSWORD :'from_the_secret_store' IN ROLE casebus_router;
-- No password is in this repository. The tables stay owned by the migrating role; no role here
-- owns anything, may create anything, or may UPDATE, DELETE or TRUNCATE an audit table (the
-- append-only triggers of 0002 refuse it as well).
--
--   casebus_router            reads the registry and keys; appends to the audit log
--   casebus_sla               the SLA engine: its deadlines, its outbox rows and inbox marks
--   casebus_adapter           every department adapter: outbox, inbox marks, adapter tables
--   casebus_monitor           the procuratorate's audit monitor: the heads it saw, its alarms
--   casebus_procuratorate_ro  the procuratorate's read access: the audit log, deadlines, what
--                             the procuratorate adapter stored; reads only
--
-- Roles are cluster-wide, so they are created once; several databases of one cluster (tests,
-- staging) may migrate at the same moment, hence the duplicate_object guard. Grants are per
-- database and made here every time.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['casebus_router', 'casebus_sla', 'casebus_adapter',
                             'casebus_monitor', 'casebus_procuratorate_ro'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE '
                               'NOREPLICATION NOBYPASSRLS', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another migration created it a moment ago
            END;
        END IF;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public
    TO casebus_router, casebus_sla, casebus_adapter, casebus_monitor, casebus_procuratorate_ro;

-- Everyone verifies signatures against the registry.
GRANT SELECT ON agencies, agency_keys
    TO casebus_router, casebus_sla, casebus_adapter, casebus_monitor, casebus_procuratorate_ro;

-- The router: audit before deliver (design §6, §7).
GRANT SELECT, INSERT ON audit_entries, audit_nodes, audit_checkpoints, router_accepted
    TO casebus_router;

-- Services that publish through an outbox and consume through an inbox table (design §6).
GRANT SELECT, INSERT, UPDATE ON outbox TO casebus_sla, casebus_adapter;
GRANT USAGE ON SEQUENCE outbox_id_seq TO casebus_sla, casebus_adapter;
GRANT SELECT, INSERT ON inbox_handled TO casebus_sla, casebus_adapter, casebus_monitor;

-- Adapters: tokens are issued and revoked by an operator (`casebus adapter token`), not by
-- the adapter, which only checks them.
GRANT SELECT ON adapter_tokens TO casebus_adapter;
GRANT SELECT, INSERT ON adapter_submissions TO casebus_adapter;
GRANT SELECT, INSERT, UPDATE ON adapter_deliveries TO casebus_adapter;
GRANT USAGE ON SEQUENCE adapter_deliveries_id_seq TO casebus_adapter;

-- The audit monitor keeps what it saw and what it found wrong; it changes nothing else.
GRANT SELECT, INSERT ON monitor_checkpoints, monitor_alarms TO casebus_monitor;
GRANT USAGE ON SEQUENCE monitor_alarms_id_seq TO casebus_monitor;

-- The procuratorate reads the whole audit log (it checks proofs itself) and its monitor's
-- findings.
GRANT SELECT ON audit_entries, audit_nodes, audit_checkpoints, monitor_checkpoints,
                monitor_alarms
    TO casebus_procuratorate_ro;

-- Tables of migrations that may be absent from an older tree: granted when present.
DO $$
BEGIN
    IF to_regclass('sla_deadlines') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON sla_deadlines TO casebus_sla;
        GRANT SELECT ON sla_deadlines TO casebus_procuratorate_ro;
    END IF;
    IF to_regclass('procuratorate_events') IS NOT NULL THEN
        GRANT SELECT, INSERT ON procuratorate_events TO casebus_adapter;
        GRANT SELECT ON procuratorate_events TO casebus_procuratorate_ro;
    END IF;
    IF to_regclass('procuratorate_events_id_seq') IS NOT NULL THEN
        GRANT USAGE ON SEQUENCE procuratorate_events_id_seq TO casebus_adapter;
    END IF;
    IF to_regclass('procuratorate_tree_heads') IS NOT NULL THEN
        GRANT SELECT, INSERT ON procuratorate_tree_heads TO casebus_adapter;
        GRANT SELECT ON procuratorate_tree_heads TO casebus_procuratorate_ro;
    END IF;
END $$;
