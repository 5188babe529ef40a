-- outboxd schema, version 3: what the admin tooling needs.
--
-- Test events are marked (is_test) so the delivery log can tell them apart;
-- webhook secrets can be rotated with an overlap window during which both
-- the new and the previous secret sign; the delivery log is indexed by
-- webhook and time for the per-webhook views of the CLI.

ALTER TABLE outbox.events ADD COLUMN is_test boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN outbox.events.is_test IS
  'sent by outbox.send_test_event or `outboxd test-event`, not by the application';

-- The previous secret signs alongside the current one until it expires, so
-- receivers can switch to the new secret without a gap. Only one previous
-- secret is kept: rotating again during a window drops the oldest one.
ALTER TABLE outbox.webhooks
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT previous_secret_format
        CHECK (previous_secret IS NULL OR previous_secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$'),
    ADD CONSTRAINT previous_secret_has_expiry
        CHECK (previous_secret IS NULL OR previous_secret_expires_at IS NOT NULL);
COMMENT ON COLUMN outbox.webhooks.previous_secret IS
  'the secret before the last rotation; it also signs until previous_secret_expires_at';

-- "Last delivery", "success rate over the last hour" and `outboxd deliveries
-- --webhook` read attempts of one webhook by time; without this each is a
-- scan of the whole log. (Built without CONCURRENTLY: on a large existing
-- log, attempt inserts wait while the migration builds it.)
CREATE INDEX delivery_attempts_webhook_time
    ON outbox.delivery_attempts (webhook_id, started_at);

-- The same view as in V1 with is_test appended at the end (CREATE OR REPLACE
-- VIEW may only add columns at the end). Still no secret in it.
CREATE OR REPLACE VIEW outbox.delivery_log AS
SELECT a.id          AS attempt_id,
       a.started_at,
       a.webhook_id,
       w.name        AS webhook_name,
       w.url         AS webhook_url,
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

-- send_test_event as in V1, now marking the event as a test.
CREATE OR REPLACE FUNCTION outbox.send_test_event(webhook_id bigint, event_type text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    hook    outbox.webhooks%ROWTYPE;
    etype   text := coalesce($2, 'webhook.test');
    example jsonb;
    new_id  bigint;
BEGIN
    SELECT * INTO hook FROM outbox.webhooks w WHERE w.id = $1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist', $1 USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT hook.enabled THEN
        RAISE EXCEPTION 'webhook % (%) is disabled: enable it first', hook.id, hook.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT t.example_payload INTO example FROM outbox.event_types t WHERE t.name = etype;
    INSERT INTO outbox.events (event_type, payload, target_webhook_id, is_test)
    VALUES (etype, coalesce(example, '{"test": true}'::jsonb), hook.id, true)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

-- rotate_secret: a new secret now; the current one becomes the previous
-- secret and keeps signing for `overlap` (none with a zero overlap). Returns
-- the new secret, to hand to the receiver. The UPDATE notifies the daemons,
-- which reload their webhook cache and sign with both from then on.
CREATE FUNCTION outbox.rotate_secret(webhook_id bigint, overlap interval DEFAULT '24 hours')
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    new_secret text;
BEGIN
    IF overlap IS NULL OR overlap < interval '0' THEN
        RAISE EXCEPTION 'overlap must be zero or more, got %', overlap
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE outbox.webhooks w
       SET previous_secret = CASE WHEN overlap > interval '0' THEN w.secret END,
           previous_secret_expires_at = CASE WHEN overlap > interval '0' THEN now() + overlap END,
           secret = outbox.generate_secret()
     WHERE w.id = rotate_secret.webhook_id
    RETURNING w.secret INTO new_secret;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % does not exist', rotate_secret.webhook_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN new_secret;
END
$$;
