-- For an update: a JSON object of the values before it of the public fields it
-- changed and of the rule fields it changed (NULL for other actions, or when
-- unknown). Read rules and filters judge the record as it was with it, so that an
-- update can be delivered as `enter` or `leave`. Never sent to clients.
ALTER TABLE realtime_outbox ADD COLUMN previous TEXT;
