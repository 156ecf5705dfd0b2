-- Every outbox row is numbered by the statement that inserts it, in the writing
-- transaction. SQLite has one writer at a time, so numbering order is commit order
-- and `seq` stays gapless: a rolled-back transaction takes its numbers back with it.
-- The relay then only reads what it has not published, and never takes the write
-- lock that every writer waits for.

-- Rows an older version left for its relay to number get their seqs first.
WITH batch AS (
  SELECT id, (SELECT last_seq FROM realtime_meta WHERE id = 1)
             + row_number() OVER (ORDER BY id) AS next_seq
  FROM realtime_outbox WHERE seq IS NULL
)
UPDATE realtime_outbox SET seq = batch.next_seq FROM batch
WHERE realtime_outbox.id = batch.id;

UPDATE realtime_meta
SET last_seq = coalesce((SELECT max(seq) FROM realtime_outbox), last_seq)
WHERE id = 1;

-- Also numbers the rows capture triggers insert, which never give a seq.
CREATE TRIGGER IF NOT EXISTS realtime_outbox_sequence
AFTER INSERT ON realtime_outbox
WHEN NEW.seq IS NULL
BEGIN
  UPDATE realtime_meta SET last_seq = last_seq + 1 WHERE id = 1;
  UPDATE realtime_outbox SET seq = (SELECT last_seq FROM realtime_meta WHERE id = 1)
  WHERE id = NEW.id;
END;

-- Nothing waits unnumbered any more: the index of such rows would only cost a write
-- and a delete per event.
DROP INDEX IF EXISTS realtime_outbox_unsequenced;
