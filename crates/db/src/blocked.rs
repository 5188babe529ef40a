//! Deliveries whose target the SSRF guard refused, made due at once when a
//! daemon starts.
//!
//! Such a delivery is retried on the usual schedule, and what allows its
//! target is `OUTBOXD_ALLOW_PRIVATE_TARGETS`, read at start. So the start is
//! when the answer may have changed: waiting for a retry hours away, or a
//! replay by hand, would make the change look as if it did nothing.

use outboxd_core::outcome::BLOCKED_PREFIX;

use crate::{Error, Pool};

const DUE_NOW: &str = "
UPDATE outbox.deliveries
   SET next_attempt_at = now(), updated_at = now()
 WHERE state = 'pending' AND next_attempt_at > now() AND starts_with(last_error, $1)";

/// Makes every waiting delivery whose last attempt was refused by the guard
/// due now; returns how many.
pub async fn retry_now(pool: &Pool) -> Result<u64, Error> {
    let client = pool.get().await?;
    Ok(client.execute(DUE_NOW, &[&BLOCKED_PREFIX]).await?)
}
