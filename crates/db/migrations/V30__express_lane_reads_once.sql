-- outboxd schema, version 30: the express lane reads each event once
-- however many transactions elsewhere in the cluster overlap its rounds
-- (docs/architecture.md, "The event stream, and how late commits are
-- caught").
--
-- In V26 the lane read the stream from the oldest transaction that was
-- running at its last look and had ended since. Any transaction of the
-- cluster counts (another database's too), so one that began before a
-- tenant's flood and ended after the lane had looked made the next round
-- read the whole flood again. The lane now reads those transactions' events
-- by equality on their xid, one index probe each, and the range from its
-- last look's horizon on.

-- The express lane's candidates: tenants' undispatched events of the
-- transactions `seen` sees and `since` does not, in (xid, id) order. Each
-- piece is read in index order with bounds the planner sees (an
-- `xid = ANY` over all of them took the whole table when one transaction
-- had written most events).
CREATE FUNCTION outbox.express_candidates(since pg_snapshot, seen pg_snapshot)
RETURNS TABLE (id bigint, event_type text, target_webhook_id bigint, payload text,
               created_at timestamptz, tenant text, ordering_key text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    x xid8;
BEGIN
    -- Transactions running at `since` that have ended, oldest first: all
    -- below the horizon, so before the range in stream order.
    FOR x IN SELECT t FROM pg_snapshot_xip(since) AS t
              WHERE pg_visible_in_snapshot(t, seen) ORDER BY t LOOP
        RETURN QUERY
            SELECT v.id, v.event_type, v.target_webhook_id, v.payload::text,
                   v.created_at, v.tenant, v.ordering_key
              FROM outbox.events v
             WHERE v.xid = x AND v.tenant IS NOT NULL AND v.dispatched_at IS NULL
             ORDER BY v.id;
    END LOOP;
    RETURN QUERY
        SELECT v.id, v.event_type, v.target_webhook_id, v.payload::text,
               v.created_at, v.tenant, v.ordering_key
          FROM outbox.events v
         WHERE (v.xid, v.id) >= (pg_snapshot_xmax(since), 0)
           AND v.xid < pg_snapshot_xmax(seen)
           AND pg_visible_in_snapshot(v.xid, seen)
           AND v.tenant IS NOT NULL
           AND v.dispatched_at IS NULL
         ORDER BY v.xid, v.id;
END
$$;
COMMENT ON FUNCTION outbox.express_candidates(pg_snapshot, pg_snapshot) IS
  'The express lane''s candidates: tenants'' events not fanned out of the transactions seen sees and since does not, in stream order. For outbox.next_events.';

-- As in V27, the lane's events read by outbox.express_candidates.
-- One step of fan-out: the next events of the stream, at most max_events,
-- in (xid, id) order, and the progress row moved past them; while the pass
-- goes on, then at most express_events of the express lane. With
-- max_events = 0, only the lane, and only while a pass goes on. The caller
-- inserts their deliveries in the same transaction; the row lock makes
-- replicas take turns (each turn is a few milliseconds, no HTTP inside).
CREATE OR REPLACE FUNCTION outbox.next_events(max_events bigint, express_events bigint DEFAULT 0,
                                   express_keyed boolean DEFAULT true)
RETURNS TABLE (id bigint, event_type text, target_webhook_id bigint, payload text,
               created_at timestamptz, tenant text, ordering_key text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s outbox.dispatch_state;
    seen pg_snapshot;
    n bigint := 0;
    last_xid xid8;
    last_id bigint;
    e record;
    express_ids bigint[] := '{}';
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
    IF max_events <= 0 AND s.upto IS NULL THEN
        -- The lane alone runs beside a pass: none is under way.
        RETURN;
    END IF;
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
        s.express_seen := NULL;
        s.express_waiting := NULL;
    END IF;
    -- The pass's position, kept as it is when this step takes none of it.
    last_xid := s.after_xid;
    last_id := s.after_id;
    FOR e IN
        SELECT v.xid, v.id, v.event_type, v.target_webhook_id, v.payload::text AS payload,
               v.created_at, v.tenant, v.ordering_key
          FROM outbox.events v
         WHERE (v.xid, v.id) > (s.after_xid, s.after_id)
           AND v.xid < pg_snapshot_xmax(s.upto)
           AND pg_visible_in_snapshot(v.xid, s.upto)
           AND NOT pg_visible_in_snapshot(v.xid, s.done)
           -- Test events were delivered when they were written, and the
           -- express lane's events fanned out already.
           AND v.dispatched_at IS NULL
         ORDER BY v.xid, v.id
         LIMIT greatest(max_events, 0)
    LOOP
        n := n + 1;
        last_xid := e.xid;
        last_id := e.id;
        id := e.id;
        event_type := e.event_type;
        target_webhook_id := e.target_webhook_id;
        payload := e.payload;
        created_at := e.created_at;
        tenant := e.tenant;
        ordering_key := e.ordering_key;
        RETURN NEXT;
    END LOOP;
    IF n < greatest(max_events, 0) THEN
        -- The pass is complete. Written even when it returned nothing: it
        -- may have read past test events, which would be read again.
        UPDATE outbox.dispatch_state
           SET done = s.upto, upto = NULL, after_xid = NULL, after_id = NULL,
               express_seen = NULL, express_waiting = NULL, updated_at = now();
        RETURN;
    END IF;
    IF express_events > 0 THEN
        -- The express lane: tenants' events of the transactions that have
        -- ended since it last looked, in the order a pass would take them.
        seen := pg_current_snapshot();
        s.express_seen := coalesce(s.express_seen, s.upto);
        s.express_waiting := coalesce(s.express_waiting, '{}');
        FOR e IN SELECT * FROM outbox.express_candidates(s.express_seen, seen)
        LOOP
            CONTINUE WHEN e.tenant = ANY (s.express_waiting);
            IF cardinality(express_ids) >= express_events
               OR (e.ordering_key IS NOT NULL AND NOT express_keyed)
               -- Something of the tenant remains in the pass.
               OR EXISTS (SELECT 1 FROM outbox.events w
                           WHERE w.tenant = e.tenant
                             AND (w.tenant, w.xid, w.id) > (e.tenant, last_xid, last_id)
                             AND w.xid < pg_snapshot_xmax(s.upto)
                             AND pg_visible_in_snapshot(w.xid, s.upto)
                             AND NOT pg_visible_in_snapshot(w.xid, s.done)
                             AND w.dispatched_at IS NULL) THEN
                -- This event waits for the next pass, and so do the
                -- tenant's later ones, so that none overtakes it.
                s.express_waiting := s.express_waiting || e.tenant;
                CONTINUE;
            END IF;
            express_ids := express_ids || e.id;
            id := e.id;
            event_type := e.event_type;
            target_webhook_id := e.target_webhook_id;
            payload := e.payload;
            created_at := e.created_at;
            tenant := e.tenant;
            ordering_key := e.ordering_key;
            RETURN NEXT;
        END LOOP;
        s.express_seen := seen;
        IF cardinality(express_ids) > 0 THEN
            UPDATE outbox.events v SET dispatched_at = now() WHERE v.id = ANY (express_ids);
        END IF;
    END IF;
    UPDATE outbox.dispatch_state
       SET upto = s.upto, after_xid = last_xid, after_id = last_id,
           express_seen = s.express_seen, express_waiting = s.express_waiting,
           updated_at = now();
END
$$;
COMMENT ON FUNCTION outbox.next_events(bigint, bigint, boolean) IS
  'The next events to fan out (at most max_events of the pass, then at most express_events of tenants with nothing left in it; with max_events = 0 the lane alone, during a pass), the progress row moved past them. For outboxd; see docs/architecture.md.';
