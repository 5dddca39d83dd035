-- The agency and key registry: who takes part, and which public keys verify their signatures.
CREATE TABLE agencies (
    agency_id   text PRIMARY KEY CHECK (agency_id ~ '^[a-z0-9]+(\.[a-z0-9_]+)*$'),
    kind        text NOT NULL CHECK (kind IN ('enforcement', 'regulator', 'police',
                                              'procuratorate', 'court', 'bus')),
    name        text NOT NULL,
    name_en     text,
    uscc        char(18),
    parent_id   text REFERENCES agencies (agency_id),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agency_keys (
    key_id      text PRIMARY KEY,
    agency_id   text NOT NULL REFERENCES agencies (agency_id),
    algorithm   text NOT NULL CHECK (algorithm IN ('ed25519', 'sm2-sm3')),
    public_key  bytea NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    valid_to    timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);
CREATE INDEX agency_keys_agency ON agency_keys (agency_id);
