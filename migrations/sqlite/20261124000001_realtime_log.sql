-- The event log. A row is written in the same transaction as the model write it
-- describes; the relay later gives it a gapless `seq` (NULL until then).
CREATE TABLE IF NOT EXISTS realtime_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER UNIQUE,
    collection TEXT NOT NULL,
    record_key TEXT,
    action TEXT NOT NULL,
    event_name TEXT,
    payload TEXT NOT NULL,
    changes TEXT,
    acl TEXT NOT NULL DEFAULT '{}',
    except_connection TEXT,
    created_at TEXT NOT NULL
);

-- The relay scans only unsequenced rows.
CREATE INDEX IF NOT EXISTS realtime_outbox_unsequenced ON realtime_outbox (id) WHERE seq IS NULL;

-- One row: the log's epoch (changes when continuity breaks) and the last assigned seq.
CREATE TABLE IF NOT EXISTS realtime_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);

INSERT OR IGNORE INTO realtime_meta (id, epoch, last_seq)
VALUES (1, lower(hex(randomblob(8))), 0);
