-- outboxd schema, version 13: a webhook change names the webhooks it
-- changed, so each daemon reloads those and not its whole cache.
--
-- The notification on `outbox_webhooks` carries the changed ids,
-- comma-separated (one notification per statement, from its transition
-- table); a statement that changes more than 300 webhooks, whose list would
-- not fit in a payload, sends an empty payload, which means "reload all".

CREATE OR REPLACE FUNCTION outbox.notify_webhooks_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    SELECT array_agg(id::text) INTO ids FROM (SELECT id FROM changed LIMIT 301) AS c;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('outbox_webhooks',
                      CASE WHEN cardinality(ids) > 300 THEN '' ELSE array_to_string(ids, ',') END);
    RETURN NULL;
END
$$;

DROP TRIGGER webhooks_notify ON outbox.webhooks;
CREATE TRIGGER webhooks_notify_insert AFTER INSERT ON outbox.webhooks
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();
CREATE TRIGGER webhooks_notify_update AFTER UPDATE ON outbox.webhooks
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();
CREATE TRIGGER webhooks_notify_delete AFTER DELETE ON outbox.webhooks
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION outbox.notify_webhooks_changed();
