-- outboxd schema, version 22: first attempts and retries in separate lanes
-- (docs/architecture.md, "Lanes: fresh events beside retries"). A claim takes
-- a webhook's due first attempts before its retries, so that a backlog of
-- retries never sorts ahead of a fresh event. The index of the pending
-- deliveries carries the lane, least(attempts, 1) (0: the first attempt of
-- the current budget, 1: a retry), between the webhook and the schedule; each
-- lane is a range of it. It replaces the index of V7, so a pending row costs
-- no more index entries than before.
--
-- Building it reads outbox.deliveries and makes writes to it wait meanwhile.
-- On a large table, build it first without blocking anyone:
--   CREATE INDEX CONCURRENTLY deliveries_due_v22 ON outbox.deliveries
--       (webhook_id, least(attempts, 1), next_attempt_at) WHERE state = 'pending';
-- and this migration only swaps the names.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_index i
                    WHERE i.indexrelid = to_regclass('outbox.deliveries_due_v22')
                      AND i.indisvalid) THEN
        DROP INDEX IF EXISTS outbox.deliveries_due_v22;
        CREATE INDEX deliveries_due_v22 ON outbox.deliveries
            (webhook_id, least(attempts, 1), next_attempt_at) WHERE state = 'pending';
    END IF;
END
$$;
DROP INDEX outbox.deliveries_due;
ALTER INDEX outbox.deliveries_due_v22 RENAME TO deliveries_due;
