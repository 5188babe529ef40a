//! Zapier REST Hooks: subscribe (`POST /api/hooks` with `target_url` and
//! `event`, answered with the new webhook's id), unsubscribe
//! (`DELETE /api/hooks/{id}`) and a sample (`GET /api/hooks/sample?event=`)
//! shaped like the body a subscriber receives, with the catalog's example
//! payload as `data`. A subscription is an ordinary webhook, so it shows in
//! the console; a receiver that answers 410 Gone unsubscribes itself.

use hyper::StatusCode;
use outboxd_admin::webhooks::{self, WebhookInput};
use outboxd_admin::{event_types, validate};
use outboxd_deliverer::TargetPolicy;
use serde::Deserialize;
use serde_json::json;
use tokio_postgres::Client;

use crate::api::{ApiError, ApiResult};
use crate::http;

#[derive(Deserialize)]
pub(crate) struct Subscribe {
    target_url: String,
    event: String,
}

pub(crate) async fn subscribe(client: &Client, s: Subscribe) -> ApiResult {
    let checked = WebhookInput {
        name: format!("Zapier: {}", s.event.trim()),
        url: s.target_url,
        events: vec![s.event],
        headers: Vec::new(),
        rate_limit: None,
    }
    .check()?;
    webhooks::require_catalogued(client, &checked.event_types).await?;
    // A REST Hook subscription has no one to show a warning to.
    let created = webhooks::create(client, checked, &TargetPolicy::default()).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"id": created.id, "target_url": created.webhook.url,
                "event": created.webhook.event_types[0]}),
    ))
}

pub(crate) async fn unsubscribe(client: &mut Client, id: i64) -> ApiResult {
    let (hook, _) = webhooks::remove(client, id).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"id": hook.id, "removed": true}),
    ))
}

pub(crate) async fn sample(client: &Client, query: &[(String, String)]) -> ApiResult {
    let Some(event) = http::non_blank(query, "event") else {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "give ?event=<event type>".into(),
            field: Some("event"),
        });
    };
    validate::event_type(event)?;
    let t = event_types::get(client, event).await?;
    let now = outboxd_admin::format::rfc3339(chrono::Utc::now());
    // A struct, not json!: the example may be nested deeper than a
    // serde_json::Value can hold, and is written out as stored.
    #[derive(serde::Serialize)]
    struct Sample {
        r#type: String,
        timestamp: String,
        data: outboxd_admin::json::StoredJson,
    }
    Ok(http::json(
        StatusCode::OK,
        &[Sample {
            r#type: t.name,
            timestamp: now,
            data: t.example_payload,
        }],
    ))
}
