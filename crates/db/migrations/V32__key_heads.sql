-- outboxd schema, version 32: the probe for a key's head reads the head
-- alone (docs/architecture.md, "Ordered delivery").
--
-- Through deliveries_by_key, a probe for a key's head visits every open
-- delivery of the key and fetches its row to learn its state: a key with n
-- held deliveries costs n row reads per promotion, and a backlog of one
-- key drains in time quadratic in its length. deliveries_key_heads holds
-- only heads (at most one a key), so that probe reads one entry or none.
-- It is built from the heads there are: a small set.
CREATE INDEX deliveries_key_heads ON outbox.deliveries (webhook_id, ordering_key)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'in_flight');

-- next_held: the same rule as in V31, its block read as two probes: a head
-- (deliveries_key_heads; the conditions on state repeat its predicate so
-- that the planner can prove it applies), and under halt an earlier
-- failure not released (deliveries_by_key, below the key's earliest held
-- event, where no held delivery is).
CREATE OR REPLACE FUNCTION outbox.next_held(webhook_ids bigint[], ordering_keys text[])
RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
    SELECT n.id
      FROM (SELECT DISTINCT k.webhook_id, k.ordering_key
              FROM unnest($1, $2) AS k(webhook_id, ordering_key)
             WHERE k.ordering_key IS NOT NULL) k
      JOIN outbox.webhooks w ON w.id = k.webhook_id
     CROSS JOIN LATERAL (
           SELECT h.id, h.event_id FROM outbox.deliveries h
            WHERE h.webhook_id = k.webhook_id AND h.ordering_key = k.ordering_key
              AND h.state = 'held'
            ORDER BY h.event_id
            LIMIT 1) n
     WHERE NOT EXISTS (
           SELECT 1 FROM outbox.deliveries b
            WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
              AND b.state IN ('pending', 'in_flight')
           OFFSET 0)
       AND NOT (w.ordered AND w.ordering_policy = 'halt' AND EXISTS (
           SELECT 1 FROM outbox.deliveries b
            WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
              AND b.state IN ('pending', 'in_flight', 'held', 'failed')
              AND b.state = 'failed' AND b.event_id < n.event_id
              AND b.released_at IS NULL
           OFFSET 0))
$$;
COMMENT ON FUNCTION outbox.next_held(bigint[], text[]) IS
  'The next held delivery of each given (webhook, ordering key) that nothing blocks any more; take the keys'' locks (lock_keys) in an earlier statement.';
