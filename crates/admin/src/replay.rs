//! Replays: finished deliveries back to `pending` with a fresh attempt
//! budget, through the SQL functions outbox.replay and outbox.replay_failed,
//! so every caller and psql replay the same way. The daemon picks them up on
//! its next claim.
//!
//! A disabled or removed webhook is refused: the daemon would only cancel
//! the replayed deliveries again.

use chrono::{DateTime, Utc};
use outboxd_core::DeliveryState;
use serde::Serialize;
use tokio_postgres::Client;

use crate::{webhook_by_id, Error, Result};

const DELIVERY: &str = "
SELECT d.state, d.webhook_id, w.name, w.enabled
  FROM outbox.deliveries d
  LEFT JOIN outbox.webhooks w ON w.id = d.webhook_id
 WHERE d.id = $1";

/// What a replay of one delivery did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = ReplayedDelivery)]
pub struct ReplayedOne {
    pub delivery_id: i64,
    /// The state before the replay.
    #[schema(value_type = String)]
    pub previous_state: DeliveryState,
    /// 0 when the delivery was not finished (pending already).
    pub replayed: i32,
}

/// Replays one delivery, whatever its finished state.
pub async fn delivery(client: &Client, id: i64) -> Result<ReplayedOne> {
    let Some(row) = client.query_opt(DELIVERY, &[&id]).await? else {
        return Err(Error::NotFound(format!("no delivery with id {id}")));
    };
    let state: DeliveryState = row.get(0);
    let webhook_id: i64 = row.get(1);
    match (row.get::<_, Option<String>>(2), row.get::<_, Option<bool>>(3)) {
        (None, _) => {
            return Err(Error::Conflict(format!(
                "delivery {id} cannot be replayed: its webhook {webhook_id} was removed"
            )))
        }
        (Some(name), Some(false)) => {
            return Err(Error::Conflict(format!(
                "delivery {id} cannot be replayed: webhook {webhook_id} {name:?} is disabled (enable it first)"
            )))
        }
        _ => {}
    }
    let n: i32 = client
        .query_one("SELECT outbox.replay($1)", &[&id])
        .await?
        .get(0);
    Ok(ReplayedOne {
        delivery_id: id,
        previous_state: state,
        replayed: n,
    })
}

/// Which finished deliveries of a webhook to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Failed,
    Cancelled,
    Delivered,
    /// failed, cancelled and delivered
    Finished,
}

impl Which {
    pub fn as_str(self) -> &'static str {
        match self.states() {
            [one] => one.as_str(),
            _ => "finished",
        }
    }

    /// The states it puts back.
    pub fn states(self) -> &'static [DeliveryState] {
        use DeliveryState as S;
        match self {
            Which::Failed => &[S::Failed],
            Which::Cancelled => &[S::Cancelled],
            Which::Delivered => &[S::Delivered],
            Which::Finished => &[S::Failed, S::Cancelled, S::Delivered],
        }
    }
}

/// States other than `failed` go through outbox.replay one by one, which
/// keeps the rules of a replay in the SQL function; in event order, so
/// that of an ordered key's replays the earliest becomes its head (a
/// volatile function in the select list runs after the sort).
const REPLAY_STATES: &str = "
SELECT coalesce(sum(s.n), 0)::int4
  FROM (SELECT outbox.replay(id) AS n
          FROM outbox.deliveries
         WHERE webhook_id = $1 AND state = ANY($2) AND created_at >= $3
         ORDER BY event_id) s";

/// Replays the deliveries of a webhook created since `since`; the number
/// replayed.
pub async fn webhook(
    client: &Client,
    webhook_id: i64,
    since: DateTime<Utc>,
    which: Which,
) -> Result<i32> {
    let hook = webhook_by_id(client, webhook_id).await?;
    if !hook.enabled {
        return Err(Error::Conflict(format!(
            "{hook} is disabled: enable it first, or the replayed deliveries would be cancelled again"
        )));
    }
    if which == Which::Failed {
        return Ok(client
            .query_one("SELECT outbox.replay_failed($1, $2)", &[&hook.id, &since])
            .await?
            .get(0));
    }
    let states: Vec<&str> = which.states().iter().map(|s| s.as_str()).collect();
    Ok(client
        .query_one(REPLAY_STATES, &[&hook.id, &states, &since])
        .await?
        .get(0))
}
