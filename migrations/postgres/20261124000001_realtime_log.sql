-- The event log. A row is written in the same transaction as the model write it
-- describes; the relay later gives it a gapless `seq` (NULL until then). Ids are
-- assigned at insert, not at commit, so the relay never sequences by `id > last`.
CREATE TABLE IF NOT EXISTS realtime_outbox (
    id BIGSERIAL PRIMARY KEY,
    seq BIGINT UNIQUE,
    collection TEXT NOT NULL,
    record_key TEXT,
    action TEXT NOT NULL,
    event_name TEXT,
    payload JSONB NOT NULL,
    changes JSONB,
    acl JSONB NOT NULL DEFAULT '{}'::jsonb,
    except_connection TEXT,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS realtime_outbox_unsequenced ON realtime_outbox (id) WHERE seq IS NULL;

CREATE TABLE IF NOT EXISTS realtime_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL,
    last_seq BIGINT NOT NULL
);

INSERT INTO realtime_meta (id, epoch, last_seq)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16), 0)
ON CONFLICT (id) DO NOTHING;
