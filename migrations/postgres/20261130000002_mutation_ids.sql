-- The client mutation id of the write the event describes (1-128 characters, opaque;
-- NULL when the write carried none). Sent to subscribers as the event's "mutation".
ALTER TABLE realtime_outbox ADD COLUMN IF NOT EXISTS mutation TEXT;
