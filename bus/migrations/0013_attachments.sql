-- Issue #20: case files travel with the case. Departments upload a document once to their
-- adapter; the bus keeps it here, content-addressed by SHA-256, and serves it only to the
-- parties of a message that references it.
--
-- A blob and its chunks are written in one transaction whose last statement inserts the blob
-- row: until then no one sees a chunk (the foreign key is checked at commit), so an upload cut
-- off half-way leaves nothing behind, and the same bytes uploaded twice are stored once (the
-- second upload's blob row conflicts on sha256 and its transaction is rolled back).
CREATE SEQUENCE attachment_blob_ids;

CREATE TABLE attachment_blobs (
    id           bigint PRIMARY KEY,
    sha256       bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    chunk_bytes  integer NOT NULL CHECK (chunk_bytes > 0),
    media_type   text NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);

-- Every chunk but the last holds exactly chunk_bytes, so a byte offset names its chunk.
CREATE TABLE attachment_chunks (
    blob_id  bigint NOT NULL REFERENCES attachment_blobs (id) DEFERRABLE INITIALLY DEFERRED,
    seq      integer NOT NULL CHECK (seq >= 0),
    data     bytea NOT NULL,
    PRIMARY KEY (blob_id, seq)
);
-- Case files are mostly PDF, OFD (ZIP), JPEG, MP4: already compressed. EXTERNAL keeps them
-- out of line without trying pglz on every chunk first.
ALTER TABLE attachment_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Who uploaded which bytes: a submission may refer to a stored attachment only if its sender
-- uploaded it or may already read it, so knowing a hash is not enough to get the file.
CREATE TABLE attachment_uploads (
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    agency_id    text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, agency_id)
);

-- Which messages refer to which attachments, and through them who may read each: the sender
-- (written when its adapter accepts the submission) and every agency the bus delivered the
-- message to, recipients and automatic copies (written when the delivery arrives).
CREATE TABLE attachment_refs (
    sha256       bytea NOT NULL CHECK (length(sha256) = 32),
    agency_id    text NOT NULL,
    message_id   uuid NOT NULL,
    case_id      text NOT NULL,
    role         text NOT NULL CHECK (role IN ('sender', 'recipient', 'copy')),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, agency_id, message_id)
);

-- Every download asked for, allowed (a party) or refused (403): who, which attachment, which
-- cases, which bytes, when; written before the answer leaves. Append-only.
CREATE TABLE attachment_fetches (
    id          bigserial PRIMARY KEY,
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    agency_id   text NOT NULL,
    case_ids    text[] NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('allowed', 'refused')),
    byte_range  text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachment_fetches_sha256 ON attachment_fetches (sha256, id);
CREATE TRIGGER attachment_fetches_append_only BEFORE UPDATE OR DELETE ON attachment_fetches
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER attachment_fetches_no_truncate BEFORE TRUNCATE ON attachment_fetches
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The adapters store, record and read; none may change or remove a stored file or a fetch.
GRANT SELECT, INSERT ON attachment_blobs, attachment_chunks, attachment_uploads,
                        attachment_refs, attachment_fetches
    TO casebus_adapter, casebus_procuratorate_adapter;
GRANT USAGE ON SEQUENCE attachment_blob_ids, attachment_fetches_id_seq
    TO casebus_adapter, casebus_procuratorate_adapter;
GRANT SELECT ON attachment_refs, attachment_fetches TO casebus_procuratorate_ro;
