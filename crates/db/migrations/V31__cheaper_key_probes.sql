-- outboxd schema, version 31: the ordered-delivery statements that every
-- result of an ordered webhook runs cost less (docs/architecture.md,
-- "Ordered delivery"). Same rules, cheaper plans.
--
-- next_held: a key's block (a head, or under halt an earlier failure not
-- released) is one probe of the key's index range, planned per key. In
-- V25 the planner could turn the check for a head into an anti join over
-- every open delivery of the index, once per promoted key; OFFSET 0 keeps
-- the subquery correlated (PostgreSQL does not pull such a subquery up
-- into a join), so it is an index probe with the key's bounds. The earlier
-- is_next_of_key call, not inlined as a join filter, is the same probe:
-- the earliest held delivery has nothing held before it, and a head
-- blocks whatever its event.

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
           -- The conditions on state repeat the predicate of
           -- deliveries_by_key, so that the planner can prove it applies.
           SELECT 1 FROM outbox.deliveries b
            WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
              AND b.state IN ('pending', 'in_flight', 'held', 'failed')
              AND (b.state IN ('pending', 'in_flight')
                   OR (b.state = 'failed' AND w.ordered AND w.ordering_policy = 'halt'
                       AND b.released_at IS NULL AND b.event_id < n.event_id))
           OFFSET 0)
$$;
COMMENT ON FUNCTION outbox.next_held(bigint[], text[]) IS
  'The next held delivery of each given (webhook, ordering key) that nothing blocks any more; take the keys'' locks (lock_keys) in an earlier statement.';

-- lock_keys: the same locks in the same order, taken by one statement
-- instead of a statement per lock. The aggregate reads its input in the
-- subquery's order, so two transactions still take their common buckets
-- in the same order and never deadlock.
CREATE OR REPLACE FUNCTION outbox.lock_keys(webhook_ids bigint[], ordering_keys text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(28523, b.bucket))
      FROM (SELECT DISTINCT outbox.key_bucket(k.webhook_id, k.ordering_key) AS bucket
              FROM unnest($1, $2) AS k(webhook_id, ordering_key)
             WHERE k.ordering_key IS NOT NULL
             ORDER BY 1) b
$$;
COMMENT ON FUNCTION outbox.lock_keys(bigint[], text[]) IS
  'Takes the transaction-scoped locks of these (webhook, ordering key) pairs, in order; decide what to change in a later statement.';
