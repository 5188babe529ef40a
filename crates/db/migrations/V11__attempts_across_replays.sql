-- outboxd schema, version 11: a delivery's history reads true across replays.
--
-- A replay gives a delivery a fresh attempt budget (`attempts` back to 0,
-- which is what the claims and the retry schedule count). The attempts made
-- before are kept in `earlier_attempts`, so the delivery log numbers
-- attempts on across replays (1, 2, then 3 after a replay, not 1 again),
-- and `replays` says how often it was put back. Each attempt row records
-- the URL it was sent to: a webhook's URL may be edited later, and the log
-- should show where a request actually went. replay and replay_failed
-- refuse an id that does not exist, as send_test_event and rotate_secret do.

ALTER TABLE outbox.deliveries
    ADD COLUMN earlier_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN replays integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN outbox.deliveries.attempts IS
  'attempts since the delivery was created or last replayed: what the retry budget counts';
COMMENT ON COLUMN outbox.deliveries.earlier_attempts IS
  'attempts made before the last replay; attempt rows are numbered on from here';
COMMENT ON COLUMN outbox.deliveries.replays IS 'how often outbox.replay or replay_failed put it back';

ALTER TABLE outbox.delivery_attempts ADD COLUMN url text;
COMMENT ON COLUMN outbox.delivery_attempts.url IS
  'the URL the request was sent to (NULL for attempts logged before schema version 11)';

-- As in V3, with webhook_url the URL tried (the webhook's current URL for
-- attempts that did not record one).
CREATE OR REPLACE VIEW outbox.delivery_log AS
SELECT a.id          AS attempt_id,
       a.started_at,
       a.webhook_id,
       w.name        AS webhook_name,
       coalesce(a.url, w.url) AS webhook_url,
       a.event_id,
       e.event_type,
       a.delivery_id,
       a.attempt,
       a.outcome,
       a.status_code,
       a.error,
       a.duration_ms,
       a.response_body,
       d.state       AS delivery_state,
       coalesce(e.is_test, false) AS is_test
  FROM outbox.delivery_attempts a
  LEFT JOIN outbox.webhooks w ON w.id = a.webhook_id
  LEFT JOIN outbox.events e ON e.id = a.event_id
  LEFT JOIN outbox.deliveries d ON d.id = a.delivery_id
 ORDER BY a.id DESC;

-- replay: back to pending with a fresh attempt budget. Returns how many
-- deliveries were put back (0 when it is already pending or in flight).
CREATE OR REPLACE FUNCTION outbox.replay(delivery_id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE outbox.deliveries
       SET state = 'pending', earlier_attempts = earlier_attempts + attempts, attempts = 0,
           replays = replays + 1, next_attempt_at = now(), locked_until = NULL,
           updated_at = now()
     WHERE id = $1 AND state IN ('delivered', 'failed', 'cancelled');
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 AND NOT EXISTS (SELECT 1 FROM outbox.deliveries d WHERE d.id = $1) THEN
        RAISE EXCEPTION 'delivery % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION outbox.replay_failed(webhook_id bigint, since timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM outbox.webhooks w WHERE w.id = $1) THEN
        RAISE EXCEPTION 'webhook % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE outbox.deliveries d
       SET state = 'pending', earlier_attempts = d.earlier_attempts + d.attempts, attempts = 0,
           replays = d.replays + 1, next_attempt_at = now(), locked_until = NULL,
           updated_at = now()
     WHERE d.webhook_id = $1 AND d.state = 'failed' AND d.created_at >= $2;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
