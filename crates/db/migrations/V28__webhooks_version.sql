-- outboxd schema, version 28: every change to the webhooks has a version
-- number, so that the fan-out can tell whether its webhook cache has
-- applied every change that precedes the events it is about to match
-- (docs/architecture.md, "The webhook cache").
--
-- Each statement that changes outbox.webhooks adds one to
-- outbox.webhooks_version, in its own transaction: the row's lock makes
-- the numbers follow commit order. After the notification naming the
-- changed ids (V13, unchanged) it sends the new number on
-- `outbox_webhooks_version`; a daemon that has received that number has
-- received every change up to it. A fan-out round reads the number after
-- its events: any change committed before those events is at most that
-- number, and the round waits until its cache has applied it.

CREATE TABLE outbox.webhooks_version (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO outbox.webhooks_version (version) VALUES (0);

CREATE OR REPLACE FUNCTION outbox.notify_webhooks_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
    v bigint;
BEGIN
    SELECT array_agg(id::text) INTO ids FROM (SELECT id FROM changed LIMIT 301) AS c;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE outbox.webhooks_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('outbox_webhooks',
                      CASE WHEN cardinality(ids) > 300 THEN '' ELSE array_to_string(ids, ',') END);
    PERFORM pg_notify('outbox_webhooks_version', v::text);
    RETURN NULL;
END
$$;
