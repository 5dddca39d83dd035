-- Issue #19: under the 国密 profile the signed envelope binds each file by its SM3 digest
-- (GB/T 32905) as well as by SHA-256, which stays the store's address. Adapters compute SM3
-- while an upload streams in, beside SHA-256, and keep it here, on the file's one row whatever
-- store holds the bytes (PostgreSQL chunks or S3), for the submission check to fill in or
-- compare. NULL: uploaded before this migration; the next upload of the same bytes fills it.
ALTER TABLE attachment_files ADD COLUMN sm3 bytea
    CONSTRAINT attachment_files_sm3_length CHECK (sm3 IS NULL OR length(sm3) = 32);
GRANT UPDATE (sm3) ON attachment_files TO casebus_adapter, casebus_procuratorate_adapter;
