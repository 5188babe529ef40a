-- outboxd schema, version 8: the daemon reads outbox.events as a stream
-- instead of marking each event (see README, Performance).
--
-- Before, fan-out set dispatched_at on every event: a second version of
-- every row (payload included), new entries in every index of the table and
-- dead tuples for vacuum, on the host's busiest table. Now the table is
-- append-only for the daemon. Every event carries the id of the transaction
-- that wrote it (set by the insert trigger, so no application can get it
-- wrong), and the daemon keeps one row of progress in outbox.dispatch_state:
--
--   done            a snapshot: every event whose transaction it sees as
--                   committed has been fanned out;
--   upto            the snapshot the current pass reads up to (NULL between
--                   passes);
--   after_xid/id    how far the current pass got, in (xid, id) order.
--
-- An event whose transaction commits late (it began before others that
-- committed first) is not visible in `done` and is picked up by the first
-- pass after its commit, whatever its id: the snapshots, not the ids, decide
-- what is new, so nothing is skipped and nothing waits for long transactions
-- elsewhere. The progress row is updated in the transaction that inserts
-- the deliveries, under its row lock, so fan-out happens exactly once
-- however many replicas run, and a crash before commit only repeats it.
--
-- dispatched_at stays for test events (sent at once, outside the stream)
-- and for events fanned out before this version. The backlog is
-- outbox.undispatched_events.

ALTER TABLE outbox.events ADD COLUMN xid xid8;
-- Set after the column exists, so history is not rewritten. The trigger
-- sets it too (a value given in the insert is overwritten); the default
-- covers inserts with triggers disabled.
ALTER TABLE outbox.events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN outbox.events.xid IS
  'the writing transaction (pg_current_xact_id()), set by the insert trigger; the daemon reads events in (xid, id) order';
COMMENT ON COLUMN outbox.events.dispatched_at IS
  'set for test events, which are delivered at once, and for events fanned out before schema version 8; see outbox.undispatched_events';

CREATE TABLE outbox.dispatch_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    done      pg_snapshot NOT NULL,
    upto      pg_snapshot,
    after_xid xid8,
    after_id  bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pass_complete CHECK ((upto IS NULL) = (after_xid IS NULL) AND (upto IS NULL) = (after_id IS NULL))
);
COMMENT ON TABLE outbox.dispatch_state IS
  'How far outboxd has fanned out outbox.events (one row; see sql/V8__event_stream.sql). Written by the daemon only.';

-- Starts the stream over: events not fanned out yet join it as this
-- transaction's, and `done` sees only transactions older than the oldest
-- one still running, so they, and everything written from now on, are new
-- to the next pass. Fanned-out events whose xid would look new get
-- dispatched_at instead. Locks the table against inserts meanwhile.
-- Used by this migration for the events waiting before it, and by
-- next_events when the progress row is ahead of this server's transaction
-- counter (a database restored from a dump into another cluster). Then
-- the row's snapshots describe the other server's transactions: events
-- with an xid this server has not reached yet are the other server's and
-- are judged by the row; events with a lower xid were written here since
-- the restore and are not fanned out yet, whatever the row would say.
-- (Were the other server younger, some of its own events would fall on
-- this side and be fanned out again: a repeat, never a loss.)
CREATE FUNCTION outbox.restart_stream() RETURNS bigint
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
           updated_at = now();
    RETURN n;
END
$$;
COMMENT ON FUNCTION outbox.restart_stream() IS
  'Starts the event stream over, keeping every event not fanned out yet; returns how many. outboxd calls it when the progress row comes from another cluster.';


CREATE OR REPLACE FUNCTION outbox.on_event_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.xid := pg_current_xact_id();
    IF pg_column_size(NEW.payload) > outbox.max_payload_bytes() THEN
        PERFORM outbox.payload_within_limit(NEW.payload);
    END IF;
    IF (SELECT requested FROM outbox.wakeup) THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NEW;
END
$$;

-- Whether outboxd has fanned the event out (or it was a test event).
CREATE FUNCTION outbox.is_dispatched(e outbox.events) RETURNS boolean
LANGUAGE sql STABLE
RETURN e.dispatched_at IS NOT NULL
    OR (SELECT pg_visible_in_snapshot(e.xid, s.done)
            OR (s.upto IS NOT NULL
                AND pg_visible_in_snapshot(e.xid, s.upto)
                AND (e.xid, e.id) <= (s.after_xid, s.after_id))
          FROM outbox.dispatch_state s);

-- The events waiting from before this version join the stream (read
-- through events_undispatched, dropped below).
SELECT outbox.restart_stream();

-- A pass reads this index from its start position on. History from before
-- this version has no xid and takes no room in it.
CREATE INDEX events_stream ON outbox.events (xid, id) WHERE xid IS NOT NULL;
-- Every new event would be in it now; retention goes by id (see the
-- daemon's janitor).
DROP INDEX outbox.events_undispatched;
DROP INDEX outbox.events_dispatched_at;

-- The backlog: committed events outboxd has not fanned out yet. Two
-- index scans, each as long as its part of the backlog, never the history
-- nor everything since a long transaction began: the events after the
-- current position (the pass's, or between passes done's xmax) that done
-- does not see, and the events before it whose transactions were running
-- (at the pass's snapshot, or between passes at done). The progress row is
-- read by subqueries, each evaluated once, so that the bounds reach the
-- index (joined, the planner, which has no statistics for a one-row
-- table, read the whole index).
CREATE VIEW outbox.undispatched_events AS
SELECT e.*
  FROM outbox.events e
 WHERE (e.xid, e.id) > (coalesce((SELECT after_xid FROM outbox.dispatch_state),
                                 pg_snapshot_xmax((SELECT done FROM outbox.dispatch_state))),
                        coalesce((SELECT after_id FROM outbox.dispatch_state), 0))
   AND e.dispatched_at IS NULL
   AND NOT pg_visible_in_snapshot(e.xid, (SELECT done FROM outbox.dispatch_state))
UNION ALL
SELECT e.*
  FROM outbox.events e
 WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(coalesce(upto, done)) FROM outbox.dispatch_state))
   AND (e.xid, e.id) <= (coalesce((SELECT after_xid FROM outbox.dispatch_state),
                                  pg_snapshot_xmax((SELECT done FROM outbox.dispatch_state))),
                         coalesce((SELECT after_id FROM outbox.dispatch_state), 0))
   AND e.dispatched_at IS NULL
   AND NOT pg_visible_in_snapshot(e.xid, (SELECT done FROM outbox.dispatch_state));
COMMENT ON VIEW outbox.undispatched_events IS
  'Committed events outboxd has not fanned out to webhooks yet (the backlog).';

-- One step of fan-out: the next events of the stream, at most max_events,
-- in (xid, id) order, and the progress row moved past them. The caller
-- inserts their deliveries in the same transaction; the row lock makes
-- replicas take turns (each turn is a few milliseconds, no HTTP inside).
CREATE FUNCTION outbox.next_events(max_events bigint)
RETURNS TABLE (id bigint, event_type text, target_webhook_id bigint, payload text,
               created_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s outbox.dispatch_state;
    n bigint := 0;
    last_xid xid8;
    last_id bigint;
    e record;
BEGIN
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
