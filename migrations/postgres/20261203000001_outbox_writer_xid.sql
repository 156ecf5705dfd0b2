-- The transaction that wrote each row. A row is "settled" once its xid is below the
-- oldest transaction still running: no transaction can commit a row that sorts
-- before it in (xid, id) order any more. The relay numbers settled rows in that
-- order, which later commits never change, so after a crash that lost its numbering
-- (it commits without waiting for its flush) it numbers the same rows the same way
-- again. Rows written before this column have no xid and are numbered as unsettled
-- rows are (see src/log/relay.rs).
ALTER TABLE realtime_outbox ADD COLUMN IF NOT EXISTS xid xid8;
ALTER TABLE realtime_outbox ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

-- The relay may number a settled row without a flush of its own only if the row's
-- own commit was flushed: a transaction that writes events never commits with
-- synchronous_commit off. Statement-level, so a write pays one call, however many
-- rows it inserts; it only ever raises the setting, and only for that transaction.
CREATE OR REPLACE FUNCTION realtime_outbox_durable_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('synchronous_commit') = 'off' THEN
        PERFORM set_config('synchronous_commit', 'local', true);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS realtime_outbox_durable_commit ON realtime_outbox;
CREATE TRIGGER realtime_outbox_durable_commit BEFORE INSERT ON realtime_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION realtime_outbox_durable_commit();
