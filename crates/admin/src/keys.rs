//! Halted ordering keys: the keys of ordered webhooks under the `halt`
//! policy whose delivery finally failed, so that nothing more of the key
//! goes until an admin acts. Listed from the view `outbox.halted_keys`;
//! skipped through `outbox.skip_halted` (the failed delivery stays failed,
//! the key's next one goes); replayed with `replay::delivery` (the failed
//! delivery is sent again first). The rules live in the SQL functions, so
//! the CLI, the console and psql act the same way.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use crate::format::ser_time;
use crate::{Error, Result};

/// `$1` a webhook id or null, `$2` a tenant or null.
const HALTED: &str = "
SELECT webhook_id, webhook_name, tenant, ordering_key, delivery_id, event_id, event_type,
       failed_at, last_status, last_error, waiting
  FROM outbox.halted_keys
 WHERE ($1::int8 IS NULL OR webhook_id = $1)
   AND ($2::text IS NULL OR tenant = $2)
 ORDER BY failed_at, delivery_id
 LIMIT 1000";

/// One halted key: the delivery that halts it and what waits behind it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HaltedKey {
    pub webhook_id: i64,
    pub webhook_name: String,
    pub tenant: Option<String>,
    pub ordering_key: String,
    /// The failed delivery: replay it (sent again first) or skip it.
    pub delivery_id: i64,
    pub event_id: i64,
    pub event_type: Option<String>,
    #[serde(serialize_with = "ser_time")]
    pub failed_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// Deliveries of the key held behind it.
    pub waiting: i64,
}

/// The halted keys (at most 1,000, the longest halted first), of one
/// webhook and/or one tenant if given.
pub async fn halted(
    client: &Client,
    webhook_id: Option<i64>,
    tenant: Option<&str>,
) -> Result<Vec<HaltedKey>> {
    let rows = client.query(HALTED, &[&webhook_id, &tenant]).await?;
    Ok(rows
        .iter()
        .map(|r| HaltedKey {
            webhook_id: r.get(0),
            webhook_name: r.get(1),
            tenant: r.get(2),
            ordering_key: r.get(3),
            delivery_id: r.get(4),
            event_id: r.get(5),
            event_type: r.get(6),
            failed_at: r.get(7),
            last_status: r.get(8),
            last_error: r.get(9),
            waiting: r.get(10),
        })
        .collect())
}

/// What skipping a halted key did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The failed delivery, now released (it stays failed).
    pub delivery_id: i64,
    /// 1 when the key's next delivery was made pending, 0 when none waited.
    pub promoted: i32,
}

/// Releases the key halted by this failed delivery: it stays failed and
/// the key's next delivery goes. A delivery that does not exist is
/// NotFound; one that halts nothing is a Conflict.
pub async fn skip(client: &Client, delivery_id: i64) -> Result<Skipped> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM outbox.deliveries WHERE id = $1",
            &[&delivery_id],
        )
        .await?
        .is_some();
    if !exists {
        return Err(Error::NotFound(format!(
            "no delivery with id {delivery_id}"
        )));
    }
    match client
        .query_one("SELECT outbox.skip_halted($1)", &[&delivery_id])
        .await
    {
        Ok(row) => Ok(Skipped {
            delivery_id,
            promoted: row.get(0),
        }),
        Err(e) if e.code().is_some_and(|c| c.code() == "P0002") => Err(Error::Conflict(format!(
            "delivery {delivery_id} is not halting a key: only the failed delivery of an ordered webhook under the halt policy, not yet skipped, can be (see `outboxd keys halted`)"
        ))),
        Err(e) => Err(e.into()),
    }
}
