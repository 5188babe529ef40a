-- Least-privilege roles for outboxd. Optional: run it once per database,
-- after `outboxd migrate`, as the role that owns the outbox schema (the one
-- that ran the migrations):
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
--
-- It creates three group roles (NOLOGIN) if they do not exist, and grants
-- them what each kind of user needs and no more. Give them to login roles:
--
--   CREATE ROLE billing_app LOGIN PASSWORD '...' IN ROLE outbox_publisher;
--   CREATE ROLE ops_alice   LOGIN PASSWORD '...' IN ROLE outbox_admin;
--   CREATE ROLE outboxd_svc LOGIN PASSWORD '...' IN ROLE outbox_daemon;
--
-- outbox_publisher: the application. Inserts events and calls publish; reads
--   nothing else (the id of events only, for INSERT ... RETURNING id;
--   publish compares a repeated key with its first event as the owner).
-- outbox_admin: people and tools that manage webhooks and the catalog, read
--   the delivery log, send test events and replay. Can read webhook secrets
--   (an admin hands them to receivers) but cannot delete events or history.
-- outbox_daemon: `outboxd run --no-migrate` (migrations need the owner).
--   Reads and writes the pipeline's tables, disables webhooks that answer
--   410 or keep failing, deletes old history (retention). No DDL.
--
-- Re-running is safe: roles are created only when missing, grants repeat.
-- After a migration adds a table, run it again.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'outbox_publisher') THEN
        CREATE ROLE outbox_publisher NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'outbox_admin') THEN
        CREATE ROLE outbox_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'outbox_daemon') THEN
        CREATE ROLE outbox_daemon NOLOGIN;
    END IF;
END
$$;

-- Nobody but the owner gets anything by default.
REVOKE ALL ON SCHEMA outbox FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA outbox FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox FROM PUBLIC;

GRANT USAGE ON SCHEMA outbox TO outbox_publisher, outbox_admin, outbox_daemon;

-- Functions the CHECK constraints and triggers call run with the caller's
-- rights, so every role may execute them.
GRANT EXECUTE ON FUNCTION
    outbox.is_valid_event_type(text),
    outbox.are_valid_patterns(text[]),
    outbox.are_valid_headers(jsonb),
    outbox.max_payload_bytes(),
    outbox.payload_size(jsonb),
    outbox.payload_within_limit(jsonb),
    outbox.on_event_insert(),
    outbox.on_event_type_update(),
    outbox.refuse_event_type(text),
    outbox.is_valid_tenant(text),
    outbox.refuse_tenant(text),
    outbox.on_event_tenant_update(),
    outbox.check_webhook(),
    outbox.check_webhook_rate_limit(),
    outbox.check_webhook_ordering(),
    outbox.on_webhook_ordering_change(),
    outbox.check_webhook_secret(),
    outbox.add_webhook_secret(),
    outbox.touch_webhook_of_secret(),
    outbox.generate_secret(),
    outbox.touch_updated_at(),
    outbox.notify_webhooks_changed(),
    outbox.cancel_deliveries_of_gone_webhook()
  TO outbox_publisher, outbox_admin, outbox_daemon;

-- The application.
GRANT INSERT (event_type, payload, idempotency_key, tenant, ordering_key) ON outbox.events TO outbox_publisher;
-- publish() is SECURITY DEFINER: the publisher reads no one's idempotency keys.
REVOKE SELECT ON outbox.events FROM outbox_publisher;
GRANT SELECT (id) ON outbox.events TO outbox_publisher;
-- The insert trigger reads whether a daemon is asleep and wants a NOTIFY,
-- and the payload limit (which only the owner changes).
GRANT SELECT ON outbox.wakeup, outbox.limits TO outbox_publisher, outbox_admin, outbox_daemon;
GRANT EXECUTE ON FUNCTION outbox.publish(text, jsonb, text, text, text) TO outbox_publisher;

-- Admins.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox.webhooks, outbox.event_types TO outbox_admin;
-- Each change to the webhooks takes the next version number (V28).
GRANT SELECT, UPDATE ON outbox.webhooks_version TO outbox_admin, outbox_daemon;
-- Secrets have a table of their own: made by a trigger when a webhook is
-- added (INSERT), rotated (UPDATE), deleted with their webhook.
GRANT SELECT, INSERT, UPDATE ON outbox.webhook_secrets TO outbox_admin;
GRANT SELECT ON outbox.events, outbox.deliveries, outbox.delivery_attempts,
                outbox.delivery_log, outbox.webhook_health, outbox.wakeup,
                outbox.dispatch_state, outbox.undispatched_events,
                outbox.halted_keys TO outbox_admin;
GRANT EXECUTE ON FUNCTION outbox.is_dispatched(outbox.events) TO outbox_admin, outbox_daemon;
-- Test events are events; replays and the cancel-on-disable trigger update deliveries.
GRANT INSERT ON outbox.events TO outbox_admin;
-- Only the columns replays and cancelling write: not a delivery's event,
-- webhook, lease or history.
REVOKE UPDATE ON outbox.deliveries FROM outbox_admin;
GRANT UPDATE (state, attempts, earlier_attempts, replays, next_attempt_at, locked_until,
              last_error, updated_at, released_at)
   ON outbox.deliveries TO outbox_admin;
GRANT EXECUTE ON FUNCTION
    outbox.publish(text, jsonb, text, text, text),
    outbox.send_test_event(bigint, text),
    outbox.replay(bigint),
    outbox.replay_failed(bigint, timestamptz),
    outbox.skip_halted(bigint),
    outbox.rotate_secret(bigint, interval),
    outbox.add_webhook(text, text, text[], jsonb)
  TO outbox_admin;
-- The CLI checks the schema version before it acts.
GRANT SELECT ON public.outbox_schema_history TO outbox_admin, outbox_daemon;

-- The daemon.
GRANT SELECT, UPDATE ON outbox.events, outbox.webhooks, outbox.wakeup TO outbox_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox.deliveries, outbox.delivery_attempts,
                                        outbox.webhook_health TO outbox_daemon;
-- The console (in the daemon) keeps its sessions and used portal links.
GRANT SELECT, INSERT, DELETE ON outbox.console_sessions, outbox.portal_links_used TO outbox_daemon;
GRANT DELETE ON outbox.events TO outbox_daemon;
GRANT SELECT ON outbox.event_types, outbox.delivery_log, outbox.undispatched_events,
                outbox.webhook_secrets TO outbox_daemon;
-- Fan-out reads events as a stream and keeps its progress in one row
-- (outbox.restart_stream, run for a database restored into another cluster,
-- writes that row with INSERT ... ON CONFLICT).
GRANT SELECT, INSERT, UPDATE ON outbox.dispatch_state TO outbox_daemon;
GRANT EXECUTE ON FUNCTION outbox.next_events(bigint, bigint, boolean), outbox.express_candidates(pg_snapshot, pg_snapshot),
    outbox.restart_stream() TO outbox_daemon;
-- The delivery log's ids, and its partitions made ahead and retired (sql/V14).
GRANT USAGE ON SEQUENCE outbox.delivery_attempts_id TO outbox_daemon;
GRANT EXECUTE ON FUNCTION outbox.keep_attempt_partitions(interval, interval, interval) TO outbox_daemon;
-- Rate limits: every replica takes tokens of the shared buckets, and slows a
-- webhook down after a 429 with Retry-After.
GRANT SELECT, INSERT, UPDATE ON outbox.rate_buckets TO outbox_daemon;
GRANT SELECT ON outbox.rate_buckets TO outbox_admin;
GRANT EXECUTE ON FUNCTION
    outbox.take_rate_tokens(bigint, integer),
    outbox.slow_rate(bigint, interval),
    outbox.rate_in_force(integer, outbox.rate_buckets, timestamptz),
    outbox.is_next_of_key(outbox.deliveries, boolean, text)
  TO outbox_daemon;
-- Ordered delivery: the fan-out and the result writer (and, as admins,
-- replays, skips and policy changes) take a key's lock and promote its
-- next held delivery by the same rule (outbox.next_held, which the
-- writer's promotion reads directly); the reaper rescues stuck keys.
GRANT EXECUTE ON FUNCTION
    outbox.promote_held(bigint[], text[]),
    outbox.next_held(bigint[], text[]),
    outbox.lock_keys(bigint[], text[]),
    outbox.key_bucket(bigint, text),
    outbox.is_next_of_key(outbox.deliveries, boolean, text)
  TO outbox_daemon, outbox_admin;
GRANT EXECUTE ON FUNCTION outbox.promote_stuck_keys(integer, interval) TO outbox_daemon;
GRANT SELECT ON outbox.halted_keys TO outbox_daemon;
-- A paused webhook's events wait as deferred rows (V29) until they are
-- made deliveries; disabling or deleting a webhook (an admin's change)
-- makes them cancelled ones through outbox.expand_deferred, which runs as
-- its owner.
GRANT SELECT, INSERT, DELETE ON outbox.deferred_deliveries TO outbox_daemon;
GRANT SELECT ON outbox.deferred_deliveries TO outbox_admin;
GRANT EXECUTE ON FUNCTION outbox.expand_deferred(bigint, integer), outbox.is_deferred(bigint),
                          outbox.open_deliveries(bigint)
  TO outbox_daemon, outbox_admin;
-- `outboxd test-event` runs as an admin, but inserts its event already dispatched.
GRANT INSERT ON outbox.events TO outbox_daemon;
