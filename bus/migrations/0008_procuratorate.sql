-- The procuratorate adapter (design §7, domain.md "What the procuratorate needs to check"): every
-- message of the criminal chain it receives, kept per case, and every tree head it has seen.

-- One row per message received by a procuratorate: the chain's copies, supervision requests,
-- obstruction reports, penalty feedback (for the 以罚代刑 screening) and SLA events.
CREATE TABLE procuratorate_events (
    id           bigserial PRIMARY KEY,
    agency_id    text NOT NULL,            -- the procuratorate that received it
    message_id   uuid NOT NULL,
    kind         text NOT NULL,
    case_id      text NOT NULL,
    sender       text NOT NULL,
    recipients   text[] NOT NULL,
    sent_at      timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    payload      jsonb NOT NULL,           -- the payload in the bus's own field names
    UNIQUE (agency_id, message_id)
);
CREATE INDEX procuratorate_events_case ON procuratorate_events (agency_id, case_id, sent_at);
CREATE INDEX procuratorate_events_kind ON procuratorate_events (agency_id, kind, sent_at);

-- Every signed checkpoint (audit.tree_head) received: the procuratorate keeps what it has seen.
CREATE TABLE procuratorate_tree_heads (
    agency_id    text NOT NULL,
    tree_size    bigint NOT NULL CHECK (tree_size >= 0),
    root_hash    bytea NOT NULL CHECK (length(root_hash) = 32),
    checkpoint   text NOT NULL,
    issued_at    timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, tree_size)
);
