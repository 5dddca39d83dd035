-- Issue #15, point 5: the owner of the tables could empty audit_nodes and audit_checkpoints
-- with TRUNCATE, which no row trigger sees; 0002 guarded only audit_entries. Every audit table
-- now refuses TRUNCATE as well as UPDATE and DELETE, whoever asks.
--
-- What a trigger cannot stop: the owner may still `ALTER TABLE ... DISABLE TRIGGER` (refusing
-- DDL to the owner needs an event trigger, which only a superuser may create). That is why the
-- services do not log in as the owner (deploy/local/up prints one DSN per service), and why
-- `casebus audit verify --checkpoint FILE` compares the log with a checkpoint held outside
-- the database.
CREATE TRIGGER audit_nodes_no_truncate BEFORE TRUNCATE ON audit_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- A service that starts while the schema is current only reads which migrations were applied
-- (bus.db.migrate); it creates nothing, so it needs no more than this.
GRANT SELECT ON schema_migrations
    TO casebus_router, casebus_sla, casebus_adapter, casebus_monitor, casebus_procuratorate_ro;

-- PostgreSQL 15 and later already refuse CREATE in schema public to everyone but its owner;
-- older servers granted it to PUBLIC, which would let a service role create tables.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
