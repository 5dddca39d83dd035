-- Issue #19: the 国密 profile. An sm2-sm3 key may name the signer's distinguishing id that goes
-- into SM2's Z (GB/T 32918.2); NULL means GM/T 0009's default, 1234567812345678. The algorithm
-- column already admits 'sm2-sm3' (0001); the key itself is the 65-byte uncompressed point.
ALTER TABLE agency_keys ADD COLUMN sm2_id bytea;
ALTER TABLE agency_keys ADD CONSTRAINT agency_keys_sm2_id_only_for_sm2
    CHECK (sm2_id IS NULL OR (algorithm = 'sm2-sm3' AND octet_length(sm2_id) BETWEEN 1 AND 8191));
ALTER TABLE agency_keys ADD CONSTRAINT agency_keys_public_key_length
    CHECK ((algorithm = 'ed25519' AND octet_length(public_key) = 32)
        OR (algorithm = 'sm2-sm3' AND octet_length(public_key) = 65));
