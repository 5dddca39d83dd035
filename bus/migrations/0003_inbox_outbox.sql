-- The transactional outbox and the inbox idempotency table of adapters (design §6).

-- An adapter writes its outgoing messages here in the same transaction as its own state;
-- bus.outbox.OutboxRelay publishes them to Kafka and sets published_at.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    owner         text NOT NULL CHECK (owner <> ''),
    message_id    uuid NOT NULL UNIQUE,
    case_id       text NOT NULL,
    topic         text NOT NULL,
    key           bytea NOT NULL,
    value         bytea NOT NULL,           -- the signed envelope, Avro single-object encoding
    headers       jsonb NOT NULL DEFAULT '[]'::jsonb
                  CHECK (jsonb_typeof(headers) = 'array'),  -- [[name, UTF-8 text], ...]
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    text
);
-- The relay claims pending rows in id order and checks for earlier pending rows of a case.
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_pending_case ON outbox (owner, case_id, id) WHERE published_at IS NULL;

-- One row per message a consumer has handled: a redelivered message finds its row and is skipped.
CREATE TABLE inbox_handled (
    consumer      text NOT NULL CHECK (consumer <> ''),
    message_id    uuid NOT NULL,
    handled_at    timestamptz NOT NULL DEFAULT now(),
    topic         text NOT NULL,
    partition     integer NOT NULL,
    kafka_offset  bigint NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
