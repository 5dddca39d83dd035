-- The procuratorate's own memory of the audit log: every checkpoint it has seen and verified,
-- and every alarm it raised. In a real deployment this lives in the procuratorate's database,
-- not the bus's; the tables are the same.
CREATE TABLE monitor_checkpoints (
    origin        text NOT NULL,
    tree_size     bigint NOT NULL CHECK (tree_size >= 0),
    root_hash     bytea NOT NULL CHECK (length(root_hash) = 32),
    timestamp_ms  bigint,
    note          text NOT NULL,
    seen_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, tree_size)
);

CREATE TABLE monitor_alarms (
    id          bigserial PRIMARY KEY,
    origin      text NOT NULL,
    kind        text NOT NULL,
    tree_size   bigint,
    detail      text NOT NULL,
    note        text,
    raised_at   timestamptz NOT NULL DEFAULT now()
);
