-- The relay's numbering (src/log/relay.rs) as a function: PL/pgSQL keeps the plan of
-- each statement for the rest of the session, where the relay's script, sent as a
-- simple query, was parsed and planned again on every batch, which cost the database
-- about as much CPU as the writes it numbered. The statements are the same; see the
-- relay for why they are safe. Run inside the relay's transaction.
--
-- Locks the meta row, then numbers up to `batch_limit` unsequenced rows in (xid, id)
-- order, only settled ones (xid below the snapshot's xmin) when `settled_only`. The
-- numbering is a statement of its own, so its snapshot (READ COMMITTED: taken when it
-- starts) comes after the lock was granted and sees the rows the previous holder
-- numbered as numbered. Returns the epoch and last seq as locked, the new last seq
-- (NULL if it numbered nothing) and whether unsequenced rows were left beyond the
-- batch.
CREATE OR REPLACE FUNCTION realtime_number_batch(batch_limit bigint, settled_only boolean)
RETURNS TABLE (epoch text, last_seq bigint, new_last bigint, left_over boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    locked_epoch text;
    locked_last bigint;
BEGIN
    SELECT m.epoch, m.last_seq INTO locked_epoch, locked_last
    FROM realtime_meta m WHERE m.id = 1 FOR UPDATE;
    RETURN QUERY
    WITH batch AS (
        SELECT o.id, row_number() OVER (ORDER BY o.xid, o.id) AS n
        FROM realtime_outbox o
        WHERE o.seq IS NULL
          AND (NOT settled_only OR o.xid < pg_snapshot_xmin(pg_current_snapshot()))
        ORDER BY o.xid, o.id
        LIMIT batch_limit
    ), numbered AS (
        UPDATE realtime_outbox o
        SET seq = (SELECT m.last_seq FROM realtime_meta m WHERE m.id = 1) + batch.n
        FROM batch WHERE o.id = batch.id
        RETURNING o.seq
    ), bumped AS (
        UPDATE realtime_meta m SET last_seq = (SELECT max(seq) FROM numbered)
        WHERE m.id = 1 AND EXISTS (SELECT 1 FROM numbered)
        RETURNING m.last_seq
    )
    SELECT locked_epoch, locked_last, (SELECT b.last_seq FROM bumped b),
           EXISTS (SELECT 1 FROM realtime_outbox o WHERE o.seq IS NULL
                   AND NOT EXISTS (SELECT 1 FROM batch WHERE batch.id = o.id));
END;
$$;
