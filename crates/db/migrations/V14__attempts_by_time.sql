-- outboxd schema, version 14: the delivery log is partitioned by time, and
-- retention drops whole partitions instead of deleting rows one by one.
--
-- outbox.delivery_attempts becomes a table partitioned by range of
-- started_at. The table as it was, with all its history, becomes one
-- partition of it (delivery_attempts_before_v14, from the beginning of
-- time to the cut-over) and is dropped whole once the cut-over is older
-- than the retention. After it come partitions of a fixed width that the
-- daemon creates ahead of time (outbox.keep_attempt_partitions); a
-- default partition catches any attempt no partition covers, and the
-- janitor deletes its old rows as before. outbox.attempt_partitions lists
-- the range partitions and their bounds.
--
-- Locks (see docs/architecture.md, "The delivery log by partition"): the
-- rename takes an ACCESS EXCLUSIVE lock on the old table for the whole
-- migration, which here also builds a unique index on (id, started_at)
-- and checks that every row is older than the cut-over, two scans of the
-- old table. On a large log run these first, without blocking anyone,
-- and the migration finds them and only changes the catalog:
--   CREATE UNIQUE INDEX CONCURRENTLY delivery_attempts_id_started_at
--       ON outbox.delivery_attempts (id, started_at);
--   ALTER TABLE outbox.delivery_attempts ADD CONSTRAINT delivery_attempts_before_v14_bound
--       CHECK (started_at < '2030-01-01 00:00+00') NOT VALID;   -- a time after the upgrade
--   ALTER TABLE outbox.delivery_attempts VALIDATE CONSTRAINT delivery_attempts_before_v14_bound;
-- The cut-over is then the time in that constraint.

CREATE TABLE outbox.attempt_partitions (
    name  text PRIMARY KEY,
    lower timestamptz NOT NULL,
    upper timestamptz NOT NULL
);
COMMENT ON TABLE outbox.attempt_partitions IS
  'The range partitions of outbox.delivery_attempts: started_at from lower (inclusive) to upper.';

DO $$
DECLARE
    cutover timestamptz;
    views   record;
    defs    text[] := '{}';
    names   text[] := '{}';
    next_id bigint;
BEGIN
    -- Views read the table by its identity: remember their definitions,
    -- which name it, to point them at the new table afterwards.
    FOR views IN
        SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS def
          FROM pg_depend d
          JOIN pg_rewrite r ON r.oid = d.objid
          JOIN pg_class v ON v.oid = r.ev_class
         WHERE d.refobjid = 'outbox.delivery_attempts'::regclass AND v.relkind = 'v'
    LOOP
        names := names || views.name;
        defs := defs || views.def;
    END LOOP;

    SELECT (regexp_match(pg_get_constraintdef(c.oid), '''([^'']+)'''))[1]::timestamptz
      INTO cutover
      FROM pg_constraint c
     WHERE c.conrelid = 'outbox.delivery_attempts'::regclass
       AND c.conname = 'delivery_attempts_before_v14_bound' AND c.convalidated;
    IF cutover IS NULL THEN
        cutover := now();
        ALTER TABLE outbox.delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_before_v14_bound;
        EXECUTE format('ALTER TABLE outbox.delivery_attempts ADD CONSTRAINT delivery_attempts_before_v14_bound
                        CHECK (started_at < %L)', cutover);
    END IF;
    CREATE UNIQUE INDEX IF NOT EXISTS delivery_attempts_id_started_at
        ON outbox.delivery_attempts (id, started_at);
    -- The partition's key must be the parent's: (id, started_at), on the
    -- index just made (a change of the catalog only).
    ALTER TABLE outbox.delivery_attempts
        DROP CONSTRAINT delivery_attempts_pkey,
        ADD CONSTRAINT delivery_attempts_before_v14_pkey
            PRIMARY KEY USING INDEX delivery_attempts_id_started_at;

    SELECT coalesce(max(id), 0) + 1 INTO next_id FROM outbox.delivery_attempts;
    ALTER TABLE outbox.delivery_attempts RENAME TO delivery_attempts_before_v14;
    -- A partition may not have an identity column of its own.
    ALTER TABLE outbox.delivery_attempts_before_v14 ALTER COLUMN id DROP IDENTITY;

    EXECUTE format('CREATE SEQUENCE outbox.delivery_attempts_id START WITH %s', next_id);
    CREATE TABLE outbox.delivery_attempts
        (LIKE outbox.delivery_attempts_before_v14 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS)
        PARTITION BY RANGE (started_at);
    ALTER TABLE outbox.delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_before_v14_bound;
    ALTER TABLE outbox.delivery_attempts
        ALTER COLUMN id SET DEFAULT nextval('outbox.delivery_attempts_id'),
        ADD PRIMARY KEY (id, started_at);
    ALTER SEQUENCE outbox.delivery_attempts_id OWNED BY outbox.delivery_attempts.id;
    CREATE INDEX delivery_attempts_by_delivery ON outbox.delivery_attempts (delivery_id);
    CREATE INDEX delivery_attempts_by_webhook_time ON outbox.delivery_attempts (webhook_id, started_at);
    COMMENT ON TABLE outbox.delivery_attempts IS
      'The delivery log: one row per HTTP attempt, partitioned by started_at. Read it through outbox.delivery_log.';

    EXECUTE format('ALTER TABLE outbox.delivery_attempts ATTACH PARTITION outbox.delivery_attempts_before_v14
                    FOR VALUES FROM (MINVALUE) TO (%L)', cutover);
    INSERT INTO outbox.attempt_partitions VALUES ('delivery_attempts_before_v14', '-infinity', cutover);
    CREATE TABLE outbox.delivery_attempts_default PARTITION OF outbox.delivery_attempts DEFAULT;

    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', names[i], defs[i]);
    END LOOP;
END
$$;

-- Creates the partitions that will be needed and drops those older than
-- the retention, one replica at a time (a transaction-scoped advisory
-- lock; another caller returns at once). A new partition starts where the
-- last one ended, or a few seconds from now if that is later (what comes
-- between goes into the default partition), and ends at the next multiple
-- of the width, so it never overlaps rows written or being written. Each new partition is created on its own and then
-- attached, which locks the parent only SHARE UPDATE EXCLUSIVE; a detach
-- locks it ACCESS EXCLUSIVE for a moment, under a lock timeout: when
-- something holds it longer, the partition is retired at the next call.
-- SECURITY DEFINER: the daemon's role needs no DDL rights of its own.
CREATE FUNCTION outbox.keep_attempt_partitions(width interval, ahead interval, retention interval)
RETURNS TABLE (created integer, retired integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, outbox AS $$
DECLARE
    w     double precision := greatest(extract(epoch FROM width), 1);
    lo    timestamptz;
    hi    timestamptz;
    name  text;
    p     record;
BEGIN
    created := 0;
    retired := 0;
    -- "outboxdp" in ASCII.
    IF NOT pg_try_advisory_xact_lock(8031924123350069360) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    PERFORM set_config('lock_timeout', '2s', true);
    LOOP
        SELECT max(a.upper) INTO lo FROM outbox.attempt_partitions a;
        -- Past anything the default partition holds (a new partition may
        -- not take rows already written there), and a little ahead of now:
        -- an insert routed to the default partition while a partition is
        -- attached fails if its row falls in the new range.
        lo := greatest(coalesce(lo, '-infinity'), now() + interval '5 seconds',
                       (SELECT max(t.started_at) + interval '1 microsecond'
                          FROM outbox.delivery_attempts_default t));
        EXIT WHEN lo > now() + ahead;
        hi := to_timestamp((floor(extract(epoch FROM lo) / w) + 1) * w);
        name := 'delivery_attempts_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"t"HH24MISS');
        EXECUTE format('CREATE TABLE outbox.%I (LIKE outbox.delivery_attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE outbox.delivery_attempts ATTACH PARTITION outbox.%I FOR VALUES FROM (%L) TO (%L)',
                       name, lo, hi);
        INSERT INTO outbox.attempt_partitions VALUES (name, lo, hi);
        created := created + 1;
    END LOOP;
    FOR p IN SELECT * FROM outbox.attempt_partitions a
              WHERE a.upper <= now() - retention ORDER BY a.upper
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE outbox.delivery_attempts DETACH PARTITION outbox.%I', p.name);
            EXECUTE format('DROP TABLE outbox.%I', p.name);
            DELETE FROM outbox.attempt_partitions a WHERE a.name = p.name;
            retired := retired + 1;
        EXCEPTION WHEN lock_not_available THEN
            EXIT;
        END;
    END LOOP;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION outbox.keep_attempt_partitions(interval, interval, interval) FROM PUBLIC;
