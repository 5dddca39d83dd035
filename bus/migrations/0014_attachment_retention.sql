-- Issue #20 point 4: retention of case files. The bus never deletes a file referenced by a
-- message younger than the retention of its kind (deploy/attachment-retention.yaml); once every
-- reference has expired, and an upload no message referred to has outlived its grace period,
-- `casebus attachments sweep` deletes the bytes and records why here.

-- The kind and sending time of the message behind each reference: a file's retention runs
-- from its referring messages, each by its own kind. References recorded before this migration
-- take their kind from the adapters' own records where one exists; the others keep it NULL,
-- which the sweep reads as "the longest retention of any kind" (never deleting too early).
ALTER TABLE attachment_refs ADD COLUMN kind text, ADD COLUMN sent_at timestamptz;
UPDATE attachment_refs r SET kind = s.kind
    FROM adapter_submissions s WHERE s.message_id = r.message_id;
UPDATE attachment_refs r SET kind = d.kind
    FROM adapter_deliveries d
    WHERE d.message_id = r.message_id AND d.agency_id = r.agency_id AND r.kind IS NULL;
UPDATE attachment_refs SET sent_at = recorded_at;
ALTER TABLE attachment_refs ALTER COLUMN sent_at SET NOT NULL;

-- One row per file the bus has been given, whatever store holds the bytes (the S3 store has
-- no table of its own): the row a submission locks FOR SHARE while it checks the file and
-- records its reference, and the sweep FOR UPDATE while it deletes the bytes, so the two never
-- interleave (bus/attachments/_sweep.py). last_uploaded_at starts the grace period of an
-- upload; state 'deleted' is the tombstone a later submission or download is answered from.
CREATE TABLE attachment_files (
    sha256            bytea PRIMARY KEY CHECK (length(sha256) = 32),
    state             text NOT NULL DEFAULT 'stored' CHECK (state IN ('stored', 'deleted')),
    last_uploaded_at  timestamptz NOT NULL DEFAULT now()
);
-- What the sweep looks at first: stored files past their grace.
CREATE INDEX attachment_files_stored ON attachment_files (last_uploaded_at)
    WHERE state = 'stored';
INSERT INTO attachment_files (sha256, last_uploaded_at)
    SELECT sha256, max(uploaded_at) FROM attachment_uploads GROUP BY sha256;
INSERT INTO attachment_files (sha256, last_uploaded_at)
    SELECT sha256, min(recorded_at) FROM attachment_refs GROUP BY sha256
    ON CONFLICT (sha256) DO NOTHING;
INSERT INTO attachment_files (sha256, last_uploaded_at)
    SELECT sha256, stored_at FROM attachment_blobs
    ON CONFLICT (sha256) DO NOTHING;

-- Every deletion, written in the transaction that makes the tombstone: which file (hash, size,
-- media type), the rule whose period ran out last and the message it ran from, the newest
-- referring message, when it expired, the clock the sweep decided by, who ran it and when.
-- Append-only, even for the owner: what the bus destroyed must stay explainable.
CREATE TABLE attachment_deletions (
    id                 bigserial PRIMARY KEY,
    sha256             bytea NOT NULL CHECK (length(sha256) = 32),
    size_bytes         bigint CHECK (size_bytes >= 0),   -- NULL: the store held no bytes
    media_type         text,
    rule               text NOT NULL CHECK (rule IN ('kind_retention', 'default_retention',
                                                     'unknown_kind_retention', 'upload_grace')),
    retention_days     integer NOT NULL CHECK (retention_days > 0),
    message_id         uuid,            -- the message whose retention ran out last, if any
    message_kind       text,
    message_sent_at    timestamptz,
    newest_message_at  timestamptz,     -- the newest message referring to the file, if any
    references_count   integer NOT NULL CHECK (references_count >= 0),
    last_uploaded_at   timestamptz NOT NULL,
    expired_at         timestamptz NOT NULL,
    as_of              timestamptz NOT NULL CHECK (as_of >= expired_at),
    operator           text NOT NULL,
    db_role            text NOT NULL DEFAULT session_user,
    deleted_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachment_deletions_sha256 ON attachment_deletions (sha256, id);
CREATE TRIGGER attachment_deletions_append_only BEFORE UPDATE OR DELETE ON attachment_deletions
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER attachment_deletions_no_truncate BEFORE TRUNCATE ON attachment_deletions
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The adapters record uploads (a new row, or a fresh grace period: UPDATE) and lock a file's
-- row FOR SHARE while a submission refers to it (which needs UPDATE); they read deletions to
-- answer 410. Only the owner (the sweep) deletes bytes or writes a deletion.
GRANT SELECT, INSERT, UPDATE (state, last_uploaded_at) ON attachment_files
    TO casebus_adapter, casebus_procuratorate_adapter;
GRANT SELECT ON attachment_deletions TO casebus_adapter, casebus_procuratorate_adapter;
GRANT SELECT ON attachment_files, attachment_deletions TO casebus_procuratorate_ro;
