-- outboxd schema, version 9: an idle daemon writes nothing.
--
-- Every fan-out round locked the progress row (`FOR UPDATE` assigns a
-- transaction id and writes a lock record) and, its pass complete, updated
-- it: with nothing to do, each replica wrote WAL once a poll interval, so
-- the database never went quiet (with `archive_timeout` set, a WAL segment
-- archived each time it runs out). `next_events` now first looks, without
-- the lock, for an event the pass would read; the locked path is
-- unchanged.
--
-- Skipping the pass loses nothing: it would have found nothing, and the
-- next one starts from the same place. The look is two index probes: the
-- events of transactions that were running at `done` and have ended (a
-- handful of ids), and any event past `done`'s horizon. While the daemon
-- is idle no event arrives, so what the next pass rereads does not grow.

CREATE OR REPLACE FUNCTION outbox.next_events(max_events bigint)
RETURNS TABLE (id bigint, event_type text, target_webhook_id bigint, payload text,
               created_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s outbox.dispatch_state;
    seen pg_snapshot;
    n bigint := 0;
    last_xid xid8;
    last_id bigint;
    e record;
BEGIN
    -- Nothing to do, found without the lock: no pass under way, no event
    -- (test events included) of a transaction that was running at `done`
    -- and has ended, nor of a later one, is visible. Anything else,
    -- including a row from another cluster, takes the locked path below.
    SELECT * INTO STRICT s FROM outbox.dispatch_state;
    IF s.upto IS NULL THEN
        seen := pg_current_snapshot();
        IF pg_snapshot_xmax(s.done) <= pg_snapshot_xmax(seen) THEN
            PERFORM 1 FROM outbox.events v
              WHERE v.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip(s.done) AS x
                                        WHERE pg_visible_in_snapshot(x, seen)))
              LIMIT 1;
            IF NOT FOUND THEN
                -- In stream order, so that the planner walks the index
                -- from done's horizon whatever the session's settings (as
                -- an EXISTS it estimated many rows and scanned the table).
                PERFORM 1 FROM outbox.events v
                  WHERE (v.xid, v.id) > (pg_snapshot_xmax(s.done), 0)
                    AND v.xid < pg_snapshot_xmax(seen)
                    AND pg_visible_in_snapshot(v.xid, seen)
                  ORDER BY v.xid, v.id
                  LIMIT 1;
                IF NOT FOUND THEN
                    RETURN;
                END IF;
            END IF;
        END IF;
    END IF;
    SELECT * INTO STRICT s FROM outbox.dispatch_state FOR UPDATE;
    IF s.upto IS NULL THEN
        s.upto := pg_current_snapshot();
        IF pg_snapshot_xmax(s.done) > pg_snapshot_xmax(s.upto) THEN
            -- Snapshots only move forward on one server: this row was
            -- written by another one (the database was restored from a
            -- dump), and its transaction ids mean nothing here.
            RAISE WARNING 'outbox.dispatch_state is ahead of this server (restored from a dump?): % events not fanned out yet start the stream over',
                outbox.restart_stream();
            RETURN;
        END IF;
        -- New to this pass: transactions that were running at `done` and
        -- have ended, and those that began after it. Starting at the oldest
        -- of the first kind, not at done's xmin, keeps a long transaction
        -- elsewhere from making every pass read all events since it began.
        s.after_xid := coalesce(
            (SELECT min(x) FROM pg_snapshot_xip(s.done) AS x
              WHERE pg_visible_in_snapshot(x, s.upto)),
            pg_snapshot_xmax(s.done));
        s.after_id := 0;
    END IF;
    FOR e IN
        SELECT v.xid, v.id, v.event_type, v.target_webhook_id, v.payload::text AS payload,
               v.created_at
          FROM outbox.events v
         WHERE (v.xid, v.id) > (s.after_xid, s.after_id)
           AND v.xid < pg_snapshot_xmax(s.upto)
           AND pg_visible_in_snapshot(v.xid, s.upto)
           AND NOT pg_visible_in_snapshot(v.xid, s.done)
           -- Test events were delivered when they were written.
           AND v.dispatched_at IS NULL
         ORDER BY v.xid, v.id
         LIMIT max_events
    LOOP
        n := n + 1;
        last_xid := e.xid;
        last_id := e.id;
        id := e.id;
        event_type := e.event_type;
        target_webhook_id := e.target_webhook_id;
        payload := e.payload;
        created_at := e.created_at;
        RETURN NEXT;
    END LOOP;
    IF n < max_events THEN
        -- The pass is complete. Written even when it returned nothing: it
        -- may have read past test events, which would be read again.
        UPDATE outbox.dispatch_state
           SET done = s.upto, upto = NULL, after_xid = NULL, after_id = NULL,
               updated_at = now();
    ELSE
        UPDATE outbox.dispatch_state
           SET upto = s.upto, after_xid = last_xid, after_id = last_id, updated_at = now();
    END IF;
END
$$;
