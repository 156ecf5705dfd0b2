-- Capture triggers (src/capture) skip writes while this table has a row. A tidings
-- Store transaction inserts one when it begins and deletes it before it commits, so
-- the row mutes only that transaction's writes (SQLite has one writer at a time) and
-- is never committed: the Store records its own events.
CREATE TABLE IF NOT EXISTS realtime_capture_off (id INTEGER PRIMARY KEY CHECK (id = 1));
