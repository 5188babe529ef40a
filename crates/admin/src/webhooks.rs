//! Webhooks: list with health, one, add, edit, enable, disable, rotate the
//! secret, remove. A secret leaves this module only when it is made (add,
//! rotate); the list shows health from the delivery log rather than
//! configuration alone, since "is this endpoint working" is asked first.
//!
//! An edit is checked as the webhook it makes (`WebhookChange::over` the
//! stored row), so the rules of the tenant it will belong to apply whoever
//! edits it: a tenant in its portal, or an admin editing a tenant's webhook
//! or moving one into a tenant.
//!
//! Custom header values are credentials as often as not (`authorization`,
//! an API key under any name), so every view shows their names with the
//! value `HIDDEN`; `header_values` gives them on explicit request, and an
//! update that sends `HIDDEN` back keeps the stored value.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outboxd_core::matching;
use outboxd_core::ordering::FailurePolicy;
use outboxd_deliverer::TargetPolicy;
use serde::Serialize;
use tokio_postgres::Client;

use crate::format::{ser_opt_time, ser_time, time};
use crate::{tenants, validate, webhook_by_id, Error, Result, WebhookRef};

/// A webhook with its recent health: what the list screens show.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookSummary {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Custom headers, each value `HIDDEN`.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub headers: serde_json::Value,
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_time")]
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    #[serde(skip)]
    pub last_attempt_age_seconds: Option<f64>,
    pub attempts_last_hour: i64,
    pub delivered_last_hour: i64,
    pub success_rate_last_hour: Option<f64>,
    pub pending: i64,
    #[serde(serialize_with = "ser_opt_time")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_opt_time")]
    pub failing_since: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_opt_time")]
    pub paused_until: Option<DateTime<Utc>>,
    /// The customer the webhook belongs to; null: a platform webhook.
    pub tenant: Option<String>,
    /// Requests per second, all replicas together; null: no limit.
    pub rate_limit: Option<i32>,
    /// Whether the events of one ordering key go one at a time, in order.
    pub ordered: bool,
    /// When a delivery of a key finally fails: `skip` (it stays failed and
    /// the key's next event goes) or `halt` (the key waits for an admin).
    #[schema(value_type = OrderingPolicy)]
    pub ordering_policy: String,
}

/// The failure policies of an ordered webhook, as the API names them.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderingPolicy {
    /// A finally failed delivery stays failed; the key's next event goes.
    Skip,
    /// The key waits until an admin replays or skips the failed delivery.
    Halt,
}

/// Whether a webhook is taking deliveries, as the CLI's list and the
/// console show it: one reading of `enabled`, the breaker's pause and the
/// failing streak, so both say the same thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Disabled by an admin, by a 410 Gone, or for failing too long.
    Disabled {
        reason: Option<String>,
    },
    /// The circuit breaker holds its deliveries back until then.
    Paused {
        until: DateTime<Utc>,
    },
    /// Enabled and delivering, but its attempts keep failing since then.
    Failing {
        since: DateTime<Utc>,
    },
    Enabled,
}

impl Health {
    /// One word for it, e.g. a CSS class: disabled, paused, failing, enabled.
    pub fn as_str(&self) -> &'static str {
        match self {
            Health::Disabled { .. } => "disabled",
            Health::Paused { .. } => "paused",
            Health::Failing { .. } => "failing",
            Health::Enabled => "enabled",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Disabled { reason: Some(r) } => write!(f, "disabled: {r}"),
            Health::Disabled { reason: None } => f.write_str("disabled"),
            Health::Paused { until } => write!(f, "paused until {} UTC", time(*until)),
            Health::Failing { since } => {
                write!(f, "enabled, failing since {} UTC", time(*since))
            }
            Health::Enabled => f.write_str("enabled"),
        }
    }
}

impl WebhookSummary {
    pub fn health(&self) -> Health {
        match (self.enabled, self.paused_until, self.failing_since) {
            (false, _, _) => Health::Disabled {
                reason: self.disabled_reason.clone(),
            },
            (true, Some(until), _) => Health::Paused { until },
            (true, None, Some(since)) => Health::Failing { since },
            (true, None, None) => Health::Enabled,
        }
    }
}

/// Each webhook with its last attempt, its attempts of the last hour and its
/// open deliveries; the laterals read the (webhook_id, started_at) index.
const LIST: &str = "
SELECT w.id, w.name, w.url, w.event_types, w.enabled, w.disabled_reason,
       last.started_at, last.outcome,
       h.attempts, h.delivered,
       outbox.open_deliveries(w.id) AS pending,
       CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret_expires_at END,
       extract(epoch FROM now() - last.started_at)::float8,
       w.headers, w.created_at,
       wh.failing_since, CASE WHEN wh.paused_until > now() THEN wh.paused_until END,
       w.tenant, w.rate_limit, w.ordered, w.ordering_policy
  FROM outbox.webhooks w
  LEFT JOIN outbox.webhook_secrets s ON s.webhook_id = w.id
  LEFT JOIN outbox.webhook_health wh ON wh.webhook_id = w.id
  LEFT JOIN LATERAL (
        SELECT a.started_at, a.outcome FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id ORDER BY a.started_at DESC LIMIT 1) last ON true
  LEFT JOIN LATERAL (
        SELECT count(*) AS attempts, count(*) FILTER (WHERE a.outcome = 'delivered') AS delivered
          FROM outbox.delivery_attempts a
         WHERE a.webhook_id = w.id AND a.started_at > now() - interval '1 hour') h ON true
 WHERE ($1::int8 IS NULL OR w.id = $1)
   AND ($2::text IS NULL OR w.tenant = $2)
 ORDER BY w.id";

fn summary(r: &tokio_postgres::Row) -> WebhookSummary {
    let attempts: i64 = r.get(8);
    let delivered: i64 = r.get(9);
    WebhookSummary {
        id: r.get(0),
        name: r.get(1),
        url: r.get(2),
        event_types: r.get(3),
        enabled: r.get(4),
        disabled_reason: r.get(5),
        last_attempt_at: r.get(6),
        last_outcome: r.get(7),
        attempts_last_hour: attempts,
        delivered_last_hour: delivered,
        success_rate_last_hour: (attempts > 0).then(|| delivered as f64 / attempts as f64),
        pending: r.get(10),
        previous_secret_expires_at: r.get(11),
        last_attempt_age_seconds: r.get(12),
        headers: hide_values(r.get(13)),
        created_at: r.get(14),
        failing_since: r.get(15),
        paused_until: r.get(16),
        tenant: r.get(17),
        rate_limit: r.get(18),
        ordered: r.get(19),
        ordering_policy: r.get(20),
    }
}

/// Every webhook, by id.
pub async fn list(client: &Client) -> Result<Vec<WebhookSummary>> {
    list_of(client, None).await
}

/// Every webhook of `tenant` (None: every webhook), by id.
pub async fn list_of(client: &Client, tenant: Option<&str>) -> Result<Vec<WebhookSummary>> {
    let none: Option<i64> = None;
    Ok(client
        .query(LIST, &[&none, &tenant])
        .await?
        .iter()
        .map(summary)
        .collect())
}

/// One webhook.
pub async fn get(client: &Client, id: i64) -> Result<WebhookSummary> {
    let any: Option<&str> = None;
    client
        .query_opt(LIST, &[&Some(id), &any])
        .await?
        .map(|r| summary(&r))
        .ok_or_else(|| Error::NotFound(format!("no webhook with id {id}")))
}

/// What every view shows in place of a custom header's value.
pub const HIDDEN: &str = "(hidden)";

/// The headers with each value replaced by `HIDDEN`.
pub fn hide_values(headers: serde_json::Value) -> serde_json::Value {
    match headers {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .map(|(name, _)| (name, HIDDEN.into()))
                .collect(),
        ),
        _ => serde_json::Value::Object(Default::default()),
    }
}

fn ser_hidden<S: serde::Serializer>(headers: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
    hide_values(headers.clone()).serialize(s)
}

const HEADER_VALUES: &str = "SELECT headers FROM outbox.webhooks WHERE id = $1";

/// A webhook's custom headers with their values: only on explicit request
/// (`GET /api/webhooks/{id}?reveal=headers`).
pub async fn header_values(client: &Client, id: i64) -> Result<serde_json::Value> {
    client
        .query_opt(HEADER_VALUES, &[&id])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| Error::NotFound(format!("no webhook with id {id}")))
}

/// What an admin gives for a new or edited webhook, unchecked.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// The customer the webhook is for; None: the platform.
    pub tenant: Option<String>,
    /// Requests per second: `None` leaves it as it is (none for a new
    /// webhook), `Some(None)` removes the limit.
    pub rate_limit: Option<Option<i64>>,
    /// Events of one ordering key one at a time: `None` leaves it as it is
    /// (off for a new webhook).
    pub ordered: Option<bool>,
    /// `skip` or `halt`: `None` leaves it as it is (`skip` for a new webhook).
    pub ordering_policy: Option<String>,
}

/// The same, checked: what goes into the row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckedWebhook {
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// Shown with its values hidden, like every view of a webhook.
    #[serde(serialize_with = "ser_hidden")]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub headers: serde_json::Value,
    pub tenant: Option<String>,
    /// As in the input: `None` leaves the limit as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Option<i32>>,
    /// As in the input: `None` leaves it as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// As in the input: `None` leaves it as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<OrderingPolicy>)]
    pub ordering_policy: Option<String>,
}

impl WebhookInput {
    /// Every field checked; the first problem is returned, naming its field.
    pub fn check(&self) -> Result<CheckedWebhook> {
        self.check_with(&tenants::Rules::default())
    }

    /// The same, a tenant's webhook held to `rules` (see `tenants`).
    pub fn check_with(&self, rules: &tenants::Rules) -> Result<CheckedWebhook> {
        let name = validate::name(&self.name)?;
        validate::url(&self.url)?;
        let tenant = match &self.tenant {
            Some(t) => {
                let t = tenants::id(t)?;
                tenants::check_url(&self.url, rules)?;
                tenants::check_headers(&self.headers)?;
                Some(t)
            }
            None => None,
        };
        let event_types = validate::patterns(&self.events)?;
        let headers = serde_json::Value::Object(validate::headers(&self.headers)?);
        let rate_limit = match self.rate_limit {
            Some(Some(n)) => Some(Some(validate::rate_limit(n)?)),
            other => other.map(|_| None),
        };
        let ordering_policy = self
            .ordering_policy
            .as_deref()
            .map(|p| validate::ordering_policy(p).map(|p| p.as_str().to_owned()))
            .transpose()?;
        Ok(CheckedWebhook {
            name,
            url: self.url.clone(),
            event_types,
            headers,
            tenant,
            rate_limit,
            ordered: self.ordered,
            ordering_policy,
        })
    }
}

/// What an edit changes: each field `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub name: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// The whole set; a value of `HIDDEN` keeps the stored one.
    pub headers: Option<Vec<(String, String)>>,
    /// `Some(None)` makes it a platform webhook, `Some(Some(t))` tenant t's.
    pub tenant: Option<Option<String>>,
    /// `Some(None)` removes the limit.
    pub rate_limit: Option<Option<i64>>,
    pub ordered: Option<bool>,
    pub ordering_policy: Option<String>,
}

impl WebhookChange {
    /// The whole webhook after the change: what is not changed is taken
    /// from `current` (its headers by name, as `HIDDEN`, so the stored
    /// values stay), so the checks see the webhook as it will be, under
    /// the rules of the tenant it will belong to.
    pub fn over(self, current: &WebhookSummary) -> WebhookInput {
        let kept_headers = || {
            hide_values(current.headers.clone())
                .as_object()
                .map(|m| m.keys().map(|k| (k.clone(), HIDDEN.to_owned())).collect())
                .unwrap_or_default()
        };
        WebhookInput {
            name: self.name.unwrap_or_else(|| current.name.clone()),
            url: self.url.unwrap_or_else(|| current.url.clone()),
            events: self.events.unwrap_or_else(|| current.event_types.clone()),
            headers: self.headers.unwrap_or_else(kept_headers),
            tenant: self.tenant.unwrap_or_else(|| current.tenant.clone()),
            rate_limit: self.rate_limit,
            ordered: self.ordered,
            ordering_policy: self.ordering_policy,
        }
    }
}

/// A webhook just made, with its secret (shown this once).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = CreatedWebhook)]
pub struct Created {
    pub id: i64,
    #[serde(flatten)]
    pub webhook: CheckedWebhook,
    pub secret: String,
    /// What the admin should know although the webhook was saved, e.g. that
    /// the SSRF guard would refuse its URL.
    pub warnings: Vec<String>,
}

/// What is worth a warning about a webhook being saved: a URL the SSRF
/// guard of `targets` would refuse, with the setting that allows it. Saved
/// anyway, since the daemon that delivers may be configured otherwise than
/// the caller.
pub async fn warnings(webhook: &CheckedWebhook, targets: &TargetPolicy) -> Vec<String> {
    targets
        .refusal_of(&webhook.url)
        .await
        .map(|blocked| format!("deliveries to {} would be blocked: {blocked}", webhook.url))
        .into_iter()
        .collect()
}

/// The schema's refusal of a webhook row, as the field at fault when the
/// constraint names one: a rule only the schema knows (or one a caller
/// skipped) is still one message naming the field, answered as bad input.
fn refused(e: tokio_postgres::Error) -> Error {
    let field = e
        .as_db_error()
        .and_then(|db| db.constraint())
        .and_then(|c| match c {
            "name_not_blank" => Some("name"),
            "url_scheme" | "url_length" => Some("url"),
            "event_types_syntax" => Some("events"),
            "headers_object" | "headers_valid" | "tenant_headers" => Some("headers"),
            "tenant_format" => Some("tenant"),
            "rate_limit_positive" => Some("rate_limit"),
            "ordering_policy_known" => Some("ordering_policy"),
            _ => None,
        });
    match field {
        Some(field) => Error::invalid(field, crate::db_message(&e)),
        None => Error::Database(e),
    }
}

/// The refusal of a tenant that has as many webhooks as it may.
fn too_many(tenant: Option<&str>, rules: &tenants::Rules) -> Error {
    Error::Conflict(format!(
        "tenant {} has {} webhooks, the most allowed (OUTBOXD_MAX_WEBHOOKS_PER_TENANT); delete one first",
        tenant.unwrap_or_default(),
        rules.max_webhooks
    ))
}

/// A tenant's webhook only while the tenant has fewer than $6 (two
/// concurrent additions may both pass: the limit bounds, it does not meter).
const ADD: &str = "
INSERT INTO outbox.webhooks (name, url, event_types, headers, tenant, rate_limit, ordered, ordering_policy)
SELECT $1, $2, $3, $4, $5, $7, $8, $9
 WHERE $5::text IS NULL OR (SELECT count(*) FROM outbox.webhooks WHERE tenant = $5) < $6
RETURNING id";

/// The secret the insert trigger generated (secrets live in a table of
/// their own, out of the webhooks table's error messages).
const SECRET: &str = "SELECT secret FROM outbox.webhook_secrets WHERE webhook_id = $1";

/// Adds a webhook; its secret is generated by the database. `targets` is
/// the SSRF policy its URL is judged by for the warnings.
pub async fn create(
    client: &Client,
    webhook: CheckedWebhook,
    targets: &TargetPolicy,
) -> Result<Created> {
    create_with(client, webhook, targets, &tenants::Rules::default()).await
}

/// Adds a webhook, a tenant's within `rules.max_webhooks`.
pub async fn create_with(
    client: &Client,
    mut webhook: CheckedWebhook,
    targets: &TargetPolicy,
    rules: &tenants::Rules,
) -> Result<Created> {
    // What a new webhook gets where the input leaves a field as it is.
    webhook.rate_limit.get_or_insert(None);
    webhook.ordered.get_or_insert(false);
    webhook
        .ordering_policy
        .get_or_insert_with(|| FailurePolicy::default().as_str().to_owned());
    let warnings = warnings(&webhook, targets).await;
    let row = client
        .query_opt(
            ADD,
            &[
                &webhook.name,
                &webhook.url,
                &webhook.event_types,
                &webhook.headers,
                &webhook.tenant,
                &rules.max_webhooks,
                &webhook.rate_limit.flatten(),
                &webhook.ordered,
                &webhook.ordering_policy,
            ],
        )
        .await
        .map_err(refused)?;
    let Some(row) = row else {
        return Err(too_many(webhook.tenant.as_deref(), rules));
    };
    let id: i64 = row.get(0);
    let secret: String = client.query_one(SECRET, &[&id]).await?.get(0);
    Ok(Created {
        id,
        secret,
        webhook,
        warnings,
    })
}

/// A header given as `HIDDEN` keeps its stored value (a form or a script
/// sends back what it was shown); one not stored is refused by the
/// schema's header check as a null value. A webhook moved into a tenant
/// ($11 other than its own) only while that tenant has fewer than $12.
const UPDATE: &str = "
UPDATE outbox.webhooks w
   SET name = $2, url = $3, event_types = $4,
       headers = coalesce(
           (SELECT jsonb_object_agg(k, CASE WHEN v = to_jsonb($6::text) THEN w.headers -> k ELSE v END)
              FROM jsonb_each($5::jsonb) AS given(k, v)),
           '{}'::jsonb),
       rate_limit = CASE WHEN $7 THEN $8 ELSE w.rate_limit END,
       ordered = coalesce($9, w.ordered),
       ordering_policy = coalesce($10, w.ordering_policy),
       tenant = $11,
       updated_at = now()
 WHERE id = $1
   AND ($11::text IS NULL OR $11 IS NOT DISTINCT FROM w.tenant
        OR (SELECT count(*) FROM outbox.webhooks o WHERE o.tenant = $11) < $12)";

/// What webhook `id` becomes under `change`, checked as a whole: the
/// rules of the tenant it will belong to apply whoever edits it (an admin
/// editing a tenant's webhook, or moving one into a tenant, included).
pub async fn edited(
    client: &Client,
    id: i64,
    change: WebhookChange,
    rules: &tenants::Rules,
) -> Result<CheckedWebhook> {
    let current = get(client, id).await?;
    change.over(&current).check_with(rules)
}

/// Writes an edit checked by `edited`: name, URL, subscriptions, headers
/// (a value of `HIDDEN` keeps the stored one), the tenant, and the rate
/// limit and ordering where given. A webhook moved into a tenant counts
/// against that tenant's `rules.max_webhooks`.
pub async fn update(
    client: &Client,
    id: i64,
    webhook: &CheckedWebhook,
    rules: &tenants::Rules,
) -> Result<()> {
    let n = client
        .execute(
            UPDATE,
            &[
                &id,
                &webhook.name,
                &webhook.url,
                &webhook.event_types,
                &webhook.headers,
                &HIDDEN,
                &webhook.rate_limit.is_some(),
                &webhook.rate_limit.flatten(),
                &webhook.ordered,
                &webhook.ordering_policy,
                &webhook.tenant,
                &rules.max_webhooks,
            ],
        )
        .await
        .map_err(refused)?;
    if n == 0 {
        webhook_by_id(client, id).await?;
        return Err(too_many(webhook.tenant.as_deref(), rules));
    }
    Ok(())
}

/// Patterns that match no event type of the catalog: most often a typo, and
/// a typo means events silently never arrive. The catalog documents, it
/// does not gate, so callers warn rather than refuse.
pub async fn uncatalogued(client: &Client, patterns: &[String]) -> Result<Vec<String>> {
    let catalog: Vec<String> = client
        .query("SELECT name FROM outbox.event_types", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(patterns
        .iter()
        .filter(|p| *p != matching::MATCH_ALL)
        .filter(|p| !catalog.iter().any(|t| matching::pattern_matches(p, t)))
        .cloned()
        .collect())
}

/// Enables a webhook; false when it was enabled already.
pub async fn enable(client: &Client, id: i64) -> Result<(WebhookRef, bool)> {
    let hook = webhook_by_id(client, id).await?;
    if hook.enabled {
        return Ok((hook, false));
    }
    client
        .execute(
            "UPDATE outbox.webhooks SET enabled = true, disabled_reason = NULL, disabled_at = NULL WHERE id = $1",
            &[&hook.id],
        )
        .await?;
    Ok((hook, true))
}

/// Disables a webhook; the number of waiting deliveries cancelled, or None
/// when it was disabled already.
pub async fn disable(
    client: &mut Client,
    id: i64,
    reason: &str,
) -> Result<(WebhookRef, Option<i64>)> {
    let hook = webhook_by_id(client, id).await?;
    if !hook.enabled {
        return Ok((hook, None));
    }
    // The trigger on `enabled` cancels the waiting deliveries in this same
    // transaction, stamped with its now(): that is how they are counted.
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE outbox.webhooks SET enabled = false, disabled_reason = $2, disabled_at = now() WHERE id = $1",
        &[&hook.id, &reason],
    )
    .await?;
    let cancelled = cancelled_now(&tx, hook.id).await?;
    tx.commit().await?;
    Ok((hook, Some(cancelled)))
}

async fn cancelled_now(tx: &tokio_postgres::Transaction<'_>, id: i64) -> Result<i64> {
    Ok(tx
        .query_one(
            "SELECT count(*) FROM outbox.deliveries WHERE webhook_id = $1 AND state = 'cancelled' AND updated_at = now()",
            &[&id],
        )
        .await?
        .get(0))
}

/// A new secret (shown this once) and until when the old one signs too.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rotated {
    pub id: i64,
    pub secret: String,
    #[serde(serialize_with = "ser_opt_time")]
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Rotates the secret through outbox.rotate_secret; the old one keeps
/// signing for `overlap` (zero: not at all).
pub async fn rotate_secret(client: &Client, id: i64, overlap: Duration) -> Result<Rotated> {
    let hook = webhook_by_id(client, id).await?;
    let secret: String = client
        .query_one(
            "SELECT outbox.rotate_secret($1, make_interval(secs => $2::float8))",
            &[&hook.id, &overlap.as_secs_f64()],
        )
        .await?
        .get(0);
    let until: Option<DateTime<Utc>> = client
        .query_one(
            "SELECT previous_secret_expires_at FROM outbox.webhook_secrets WHERE webhook_id = $1",
            &[&hook.id],
        )
        .await?
        .get(0);
    Ok(Rotated {
        id,
        secret,
        previous_secret_expires_at: until,
    })
}

/// Deletes a webhook; the number of waiting deliveries cancelled.
pub async fn remove(client: &mut Client, id: i64) -> Result<(WebhookRef, i64)> {
    let hook = webhook_by_id(client, id).await?;
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM outbox.webhooks WHERE id = $1", &[&hook.id])
        .await?;
    let cancelled = cancelled_now(&tx, hook.id).await?;
    tx.commit().await?;
    Ok((hook, cancelled))
}

/// For the console and the API, which serve people who pick from documented
/// events: every pattern (other than `*`) must match a catalogued type.
pub async fn require_catalogued(client: &Client, patterns: &[String]) -> Result<()> {
    match uncatalogued(client, patterns).await?.first() {
        Some(p) => Err(Error::invalid(
            "events",
            format!("{p:?} matches no event type in the catalog; check the spelling or add the type to the catalog first"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(enabled: bool, paused: bool, failing: bool) -> WebhookSummary {
        let at = DateTime::parse_from_rfc3339("2026-11-22T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        WebhookSummary {
            id: 1,
            name: "a".into(),
            url: "https://a.example/".into(),
            event_types: vec!["*".into()],
            enabled,
            disabled_reason: (!enabled).then(|| "the endpoint answered 410 Gone".into()),
            headers: serde_json::json!({}),
            created_at: at,
            last_attempt_at: None,
            last_outcome: None,
            last_attempt_age_seconds: None,
            attempts_last_hour: 0,
            delivered_last_hour: 0,
            success_rate_last_hour: None,
            pending: 0,
            previous_secret_expires_at: None,
            failing_since: failing.then_some(at),
            paused_until: paused.then_some(at),
            tenant: None,
            rate_limit: None,
            ordered: false,
            ordering_policy: "skip".into(),
        }
    }

    #[test]
    fn health_reads_enabled_then_the_pause_then_the_failing_streak() {
        for (enabled, paused, failing, word, text) in [
            (
                false,
                true,
                true,
                "disabled",
                "disabled: the endpoint answered 410 Gone",
            ),
            (
                true,
                true,
                true,
                "paused",
                "paused until 2026-11-22 14:00:00 UTC",
            ),
            (
                true,
                false,
                true,
                "failing",
                "enabled, failing since 2026-11-22 14:00:00 UTC",
            ),
            (true, false, false, "enabled", "enabled"),
        ] {
            let health = summary(enabled, paused, failing).health();
            assert_eq!((health.as_str(), health.to_string().as_str()), (word, text));
        }
    }
}
