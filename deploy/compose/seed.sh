#!/usr/bin/env bash
# One-shot seeding for docker-compose.yml: wait until outboxd has applied its
# migrations (outbox.webhooks exists), then register the sample receiver as a
# webhook for every event type, unless a webhook of that name already exists.
# Connection settings come from the libpq PG* variables.
set -euo pipefail

: "${WEBHOOK_NAME:=sample receiver}"
: "${WEBHOOK_URL:=http://receiver:8080/}"
: "${WEBHOOK_SECRET:?WEBHOOK_SECRET must be set}"
: "${SEED_TIMEOUT:=180}"

deadline=$(( $(date +%s) + SEED_TIMEOUT ))
until [ "$(psql -XAtq -c "SELECT to_regclass('outbox.webhooks') IS NOT NULL" 2>/dev/null || true)" = "t" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "seed: outbox.webhooks did not appear within ${SEED_TIMEOUT}s; is outboxd running?" >&2
        exit 1
    fi
    echo "seed: waiting for outboxd's migrations..."
    sleep 2
done

# psql variables (:'name') quote the values safely.
psql -X -v ON_ERROR_STOP=1 \
     -v name="$WEBHOOK_NAME" -v url="$WEBHOOK_URL" -v secret="$WEBHOOK_SECRET" <<'SQL'
INSERT INTO outbox.webhooks (name, url, event_types)
SELECT :'name', :'url', ARRAY['*']
WHERE NOT EXISTS (SELECT 1 FROM outbox.webhooks WHERE name = :'name');
UPDATE outbox.webhook_secrets SET secret = :'secret'
 WHERE webhook_id = (SELECT id FROM outbox.webhooks WHERE name = :'name')
   AND secret IS DISTINCT FROM :'secret';
SELECT id, name, url, event_types, enabled FROM outbox.webhooks WHERE name = :'name';
SQL
echo "seed: done"
