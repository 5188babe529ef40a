-- Promotion hands over (docs/architecture.md, "Ordered delivery").
--
-- The result writer that finishes a key's head promotes the key's next held
-- delivery; when its own deliverer has room for the webhook it promotes it
-- straight to in_flight under a lease (as a claim would) and hands it to
-- the delivery loop in memory, otherwise to pending as before. Which
-- delivery is a key's next is one rule, outbox.next_held, read by
-- outbox.promote_held (admins' skips, policy changes, the rescuer) and by
-- the writer's own statement (crates/db/src/results.rs).

-- The earliest held delivery of each given (webhook, ordering key) when the
-- key has no head (pending or in flight) and nothing earlier blocks it
-- (is_next_of_key). A single SELECT, STABLE: inlined where it is used in
-- FROM, so it reads the caller's snapshot (taken after lock_keys).
CREATE FUNCTION outbox.next_held(webhook_ids bigint[], ordering_keys text[])
RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT n.id
      FROM (SELECT DISTINCT k.webhook_id, k.ordering_key
              FROM unnest($1, $2) AS k(webhook_id, ordering_key)
             WHERE k.ordering_key IS NOT NULL) k
      JOIN outbox.webhooks w ON w.id = k.webhook_id
     CROSS JOIN LATERAL (
           SELECT h.* FROM outbox.deliveries h
            WHERE h.webhook_id = k.webhook_id AND h.ordering_key = k.ordering_key
              AND h.state = 'held'
            ORDER BY h.event_id
            LIMIT 1) n
     WHERE NOT EXISTS (SELECT 1 FROM outbox.deliveries b
                        WHERE b.webhook_id = k.webhook_id
                          AND b.ordering_key = k.ordering_key
                          AND b.state IN ('pending', 'in_flight'))
       AND outbox.is_next_of_key(n::outbox.deliveries, w.ordered, w.ordering_policy)
$$;
COMMENT ON FUNCTION outbox.next_held(bigint[], text[]) IS
  'The next held delivery of each given (webhook, ordering key) that nothing blocks any more; take the keys'' locks (lock_keys) in an earlier statement.';

CREATE OR REPLACE FUNCTION outbox.promote_held(webhook_ids bigint[], ordering_keys text[])
RETURNS SETOF bigint
LANGUAGE sql VOLATILE AS $$
    UPDATE outbox.deliveries d
       SET state = 'pending', next_attempt_at = now(), updated_at = now()
     WHERE d.id = ANY (ARRAY(SELECT n FROM outbox.next_held($1, $2) AS n))
       AND d.state = 'held'
    RETURNING d.id
$$;
