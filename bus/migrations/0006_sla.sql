-- SLA deadlines (design §8): one row per deadline a policy of deploy/sla-policies.yaml opened.
-- The engine opens, moves and closes rows in the same transaction as its inbox marker; the
-- scheduler claims open rows whose next warning or due instant has come (FOR UPDATE SKIP
-- LOCKED, so replicas never claim the same row) and, in that same transaction, writes the
-- sla.* envelope to the outbox and moves the row on. A row is never deleted: it is the record
-- of whether the step was taken in time.
CREATE TABLE sla_deadlines (
    id                    uuid PRIMARY KEY,        -- uuid5(namespace, policy_id/opened_by)
    policy_id             text NOT NULL,
    case_id               text NOT NULL,
    correlation_id        text NOT NULL,
    opened_by             uuid NOT NULL,           -- the opening message (scheduled: synthetic)
    opened_kind           text NOT NULL,
    period_key            text,                    -- scheduled policies: the month, YYYY-MM
    opened_at             timestamptz NOT NULL,    -- when the engine opened it, by its clock
    start_at              timestamptz NOT NULL,
    due_at                timestamptz NOT NULL,
    owner_agency          text NOT NULL,           -- owes the step
    waiting_agency        text NOT NULL,           -- waits for it
    notify_procuratorate  boolean NOT NULL DEFAULT false,
    notify_agencies       text[] NOT NULL DEFAULT '{}',  -- procuratorates told of a breach
    obligation            text NOT NULL DEFAULT 'duty' CHECK (obligation IN ('duty', 'window')),
    -- open → met (closed in time) | breached (duty passed due) | lapsed (window passed due)
    --      | cancelled; a breached row may still become met when the closing message turns
    --      out to have been sent in time (it reached the engine late).
    state                 text NOT NULL DEFAULT 'open'
                          CHECK (state IN ('open', 'met', 'breached', 'lapsed', 'cancelled')),
    warnings_at           timestamptz[] NOT NULL DEFAULT '{}',  -- pending warnings, ascending
    next_warning_at       timestamptz,             -- warnings_at[1], for the scheduler's index
    warnings_sent         integer NOT NULL DEFAULT 0 CHECK (warnings_sent >= 0),
    last_warning_at       timestamptz,
    breach_emitted_at     timestamptz,
    met_emitted_at        timestamptz,
    moved_by              uuid,
    moved_at              timestamptz,
    moves                 integer NOT NULL DEFAULT 0 CHECK (moves >= 0),
    closed_by             uuid,
    closed_kind           text,
    closed_at             timestamptz,             -- when the closing step was taken
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- One deadline per policy per opening message: opening again is a no-op.
    UNIQUE (policy_id, opened_by),
    CHECK (next_warning_at IS NOT DISTINCT FROM warnings_at[1]),
    CHECK ((closed_by IS NULL) = (closed_at IS NULL)),
    CHECK (state <> 'met' OR closed_at IS NOT NULL),
    CHECK (state <> 'breached' OR breach_emitted_at IS NOT NULL)
);

-- The scheduler: open rows in the order their next action comes due.
CREATE INDEX sla_deadlines_next_action ON sla_deadlines ((least(next_warning_at, due_at)))
    WHERE state = 'open';
-- Closing and moving: by thread, by opening message (the unique index), by case, by period.
CREATE INDEX sla_deadlines_thread ON sla_deadlines (correlation_id) WHERE closed_at IS NULL;
CREATE INDEX sla_deadlines_case ON sla_deadlines (case_id) WHERE closed_at IS NULL;
CREATE INDEX sla_deadlines_period ON sla_deadlines (policy_id, period_key)
    WHERE period_key IS NOT NULL AND closed_at IS NULL;
-- `casebus sla status --agency`: what one agency owes or waits for.
CREATE INDEX sla_deadlines_owner ON sla_deadlines (owner_agency) WHERE closed_at IS NULL;
CREATE INDEX sla_deadlines_waiting ON sla_deadlines (waiting_agency) WHERE closed_at IS NULL;

GRANT SELECT, INSERT, UPDATE ON sla_deadlines TO casebus_app;
