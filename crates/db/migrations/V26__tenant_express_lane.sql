-- outboxd schema, version 26: an express lane in the event stream, so that
-- one tenant's backlog does not hold back another tenant's events
-- (docs/architecture.md, "The event stream, and how late commits are
-- caught").
--
-- A pass fans out, in (xid, id) order, every event its snapshot (`upto`)
-- sees: events committed after it waits for the pass to end, however long
-- the pass is (a tenant's 100,000-event backlog takes seconds). While a
-- pass goes on, each of its rounds may also take the events committed since
-- the lane last looked (the lane's own snapshot, `express_seen`, so each
-- event is read by it once) of tenants with nothing left before them: no
-- event of the tenant remains in the pass, and none of the tenant's later
-- events had to wait already (`express_waiting`, the tenants that wait for
-- the next pass). Those are fanned out in the same transaction, under the
-- same lock, and get `dispatched_at`, which makes the next pass skip them
-- as it skips test events. A tenant's events therefore keep the order a
-- pass would give them: the lane takes an event only when a pass would
-- have nothing of the tenant to fan out before it.
--
-- The caller says how many events the lane may take a round (none by
-- default: platform-only installations do not run it) and whether keyed
-- events may go (not while a platform webhook is ordered: it gets every
-- tenant's events of a key, whose order across tenants the lane would not
-- keep). Platform events never take the lane; the index for it holds
-- tenants' events only.

ALTER TABLE outbox.dispatch_state
    ADD COLUMN express_seen pg_snapshot,
    ADD COLUMN express_waiting text[],
    ADD CONSTRAINT express_in_pass CHECK (upto IS NOT NULL OR (express_seen IS NULL AND express_waiting IS NULL));
COMMENT ON COLUMN outbox.dispatch_state.express_seen IS
  'during a pass, once its express lane has run: every transaction this snapshot sees and upto does not has been looked at by the lane';
COMMENT ON COLUMN outbox.dispatch_state.express_waiting IS
  'during a pass: tenants whose events committed after upto wait for the next pass (one of them could not take the express lane)';

-- What remains of a tenant in the pass: one probe from the pass's position.
CREATE INDEX events_by_tenant ON outbox.events (tenant, xid, id) WHERE tenant IS NOT NULL;

-- As in V8, and the express lane's state goes with the pass.
CREATE OR REPLACE FUNCTION outbox.restart_stream() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    now_seen pg_snapshot;
    m xid8;
    ours_below xid8;
    n bigint;
BEGIN
    LOCK TABLE outbox.events IN SHARE ROW EXCLUSIVE MODE;
    -- Taken once no insert is under way.
    now_seen := pg_current_snapshot();
    m := pg_snapshot_xmin(now_seen);
    ours_below := CASE
        WHEN (SELECT pg_snapshot_xmax(done) FROM outbox.dispatch_state) > pg_snapshot_xmax(now_seen)
        THEN pg_snapshot_xmax(now_seen)
        ELSE '0'::xid8 END;
    -- Both judged by the old progress row, which changes last.
    UPDATE outbox.events e SET dispatched_at = now()
     WHERE e.dispatched_at IS NULL AND e.xid >= m AND e.xid >= ours_below
       AND coalesce(outbox.is_dispatched(e), false);
    UPDATE outbox.events e SET xid = pg_current_xact_id()
     WHERE e.dispatched_at IS NULL
       AND (e.xid < ours_below OR NOT coalesce(outbox.is_dispatched(e), false));
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO outbox.dispatch_state (done) VALUES (format('%s:%s:', m, m)::pg_snapshot)
    ON CONFLICT (singleton) DO UPDATE
       SET done = EXCLUDED.done, upto = NULL, after_xid = NULL, after_id = NULL,
           express_seen = NULL, express_waiting = NULL, updated_at = now();
    RETURN n;
END
$$;

DROP FUNCTION outbox.next_events(bigint);

-- One step of fan-out: the next events of the stream, at most max_events,
-- in (xid, id) order, and the progress row moved past them; while the pass
-- goes on, then at most express_events of the express lane. The caller
-- inserts their deliveries in the same transaction; the row lock makes
-- replicas take turns (each turn is a few milliseconds, no HTTP inside).
CREATE FUNCTION outbox.next_events(max_events bigint, express_events bigint DEFAULT 0,
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
    lane_from xid8;
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
        s.express_seen := NULL;
        s.express_waiting := NULL;
    END IF;
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
        tenant := e.tenant;
        ordering_key := e.ordering_key;
        RETURN NEXT;
    END LOOP;
    IF n < max_events THEN
        -- The pass is complete. Written even when it returned nothing: it
        -- may have read past test events, which would be read again.
        UPDATE outbox.dispatch_state
           SET done = s.upto, upto = NULL, after_xid = NULL, after_id = NULL,
               express_seen = NULL, express_waiting = NULL, updated_at = now();
        RETURN;
    END IF;
    IF express_events > 0 THEN
        -- The express lane: tenants' events of the transactions that have
        -- ended since it last looked (those running then, and those begun
        -- since), in the order a pass would take them. Read as a pass
        -- reads, from the oldest of those on: the index's order, with
        -- bounds the planner sees (an `xid = ANY` took the whole table when
        -- one transaction had written most events).
        seen := pg_current_snapshot();
        s.express_seen := coalesce(s.express_seen, s.upto);
        s.express_waiting := coalesce(s.express_waiting, '{}');
        lane_from := coalesce(
            (SELECT min(x) FROM pg_snapshot_xip(s.express_seen) AS x
              WHERE pg_visible_in_snapshot(x, seen)),
            pg_snapshot_xmax(s.express_seen));
        FOR e IN
            SELECT v.xid, v.id, v.event_type, v.target_webhook_id, v.payload::text AS payload,
                   v.created_at, v.tenant, v.ordering_key
              FROM outbox.events v
             WHERE (v.xid, v.id) >= (lane_from, 0)
               AND v.xid < pg_snapshot_xmax(seen)
               AND pg_visible_in_snapshot(v.xid, seen)
               AND NOT pg_visible_in_snapshot(v.xid, s.express_seen)
               AND v.tenant IS NOT NULL
               AND v.dispatched_at IS NULL
             ORDER BY v.xid, v.id
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
  'The next events to fan out (at most max_events of the pass, then at most express_events of tenants with nothing left in it), the progress row moved past them. For outboxd; see docs/architecture.md.';
