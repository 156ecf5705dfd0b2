-- The seq becomes the table's row id. Before, an insert wrote the row, bumped the
-- AUTOINCREMENT counter, bumped `realtime_meta.last_seq`, then rewrote the row with
-- its seq and indexed it: five b-tree writes per event. Now it is one: SQLite gives a
-- row without a seq the largest seq plus one, which is gapless in commit order
-- because writers are serialized, and a rolled-back transaction takes its rows, and
-- so its numbers, back with it.
--
-- `realtime_meta.last_seq` is no longer bumped per event. It becomes a floor: the
-- largest seq ever deleted (pruning, or an operator's DELETE). The log's position is
-- the larger of it and the largest seq in the table, and a seq is never handed out
-- twice even after every row was deleted (see the two triggers below).

DROP TRIGGER IF EXISTS realtime_outbox_sequence;

-- Rebuilt in place. Capture triggers on the app's tables insert into
-- `realtime_outbox` by name; with `legacy_alter_table` the rename below leaves them
-- alone, so once the new table takes the name they write to it.
PRAGMA legacy_alter_table = ON;
ALTER TABLE realtime_outbox RENAME TO realtime_outbox_before_row_id;

CREATE TABLE realtime_outbox (
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    record_key TEXT,
    action TEXT NOT NULL,
    event_name TEXT,
    payload TEXT NOT NULL,
    changes TEXT,
    acl TEXT NOT NULL DEFAULT '{}',
    except_connection TEXT,
    created_at TEXT NOT NULL,
    previous TEXT,
    mutation TEXT,
    source TEXT
);

-- Every row has its seq already (the previous migration numbered the stragglers).
INSERT INTO realtime_outbox (seq, collection, record_key, action, event_name, payload,
    changes, acl, except_connection, created_at, previous, mutation, source)
SELECT seq, collection, record_key, action, event_name, payload,
    changes, acl, except_connection, created_at, previous, mutation, source
FROM realtime_outbox_before_row_id WHERE seq IS NOT NULL;

DROP TABLE realtime_outbox_before_row_id;
PRAGMA legacy_alter_table = OFF;

-- A deleted seq raises the floor, so that once the newest rows are gone the next row
-- does not take their numbers again.
CREATE TRIGGER IF NOT EXISTS realtime_outbox_floor
AFTER DELETE ON realtime_outbox
WHEN OLD.seq > (SELECT last_seq FROM realtime_meta WHERE id = 1)
BEGIN
  UPDATE realtime_meta SET last_seq = OLD.seq WHERE id = 1;
END;

-- A row given a seq at or under the floor (the table's newest rows were deleted, so
-- "largest plus one" went back) moves above it. The store's own inserts name their
-- seq above the floor and never fire this; capture triggers' inserts only do then.
CREATE TRIGGER IF NOT EXISTS realtime_outbox_above_floor
AFTER INSERT ON realtime_outbox
WHEN NEW.seq <= (SELECT last_seq FROM realtime_meta WHERE id = 1)
BEGIN
  UPDATE realtime_outbox SET seq = (SELECT last_seq FROM realtime_meta WHERE id = 1) + 1
  WHERE seq = NEW.seq;
END;
