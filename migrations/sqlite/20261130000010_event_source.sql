-- Who caused the event: NULL for the server (the app's writes and broadcasts, capture
-- triggers, and every row written before this column), 'client' for a client whose
-- user id the collection does not show, 'client:<user id>' otherwise. Sent to
-- subscribers as the event's "source".
ALTER TABLE realtime_outbox ADD COLUMN source TEXT;
