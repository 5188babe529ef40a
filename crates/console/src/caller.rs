//! Who is calling: the platform's admin, or one tenant through its portal
//! session. The guard decides and puts a `Caller` on the request; every
//! handler that reads or changes a webhook or a delivery asks it first,
//! so a tenant's session reaches its own webhooks and deliveries only
//! (anything else answers 404, as if it did not exist) and platform-only
//! operations answer 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use outboxd_admin::tenants;
use tokio_postgres::Client;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    Admin,
    Tenant(String),
}

/// A platform-only operation asked for by a tenant.
pub(crate) struct Forbidden;

impl Forbidden {
    pub const STATUS: StatusCode = StatusCode::FORBIDDEN;
    pub const MESSAGE: &'static str =
        "this is the platform's to do: a tenant's portal manages its own webhooks only";
}

impl Caller {
    /// The tenant whose data this caller sees; None: everything.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Admin => None,
            Caller::Tenant(t) => Some(t),
        }
    }

    pub fn admin_only(&self) -> Result<(), Forbidden> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(_) => Err(Forbidden),
        }
    }

    /// NotFound for a tenant when webhook `id` is not its own.
    pub async fn owns_webhook(&self, client: &Client, id: i64) -> outboxd_admin::Result<()> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(t) => tenants::owns_webhook(client, t, id).await,
        }
    }

    /// The same, on a connection taken for the check alone (a test event
    /// must not hold one while its request is out).
    pub async fn owns_webhook_in(
        &self,
        pool: &outboxd_db::Pool,
        id: i64,
    ) -> outboxd_admin::Result<()> {
        if let Caller::Tenant(t) = self {
            let client = pool
                .get()
                .await
                .map_err(|e| outboxd_admin::Error::Unavailable(e.to_string()))?;
            tenants::owns_webhook(&client, t, id).await?;
        }
        Ok(())
    }

    /// NotFound for a tenant when delivery `id` is not to its own webhook.
    pub async fn owns_delivery(&self, client: &Client, id: i64) -> outboxd_admin::Result<()> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Tenant(t) => tenants::owns_delivery(client, t, id).await,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    /// The guard always sets one; a request without is treated as a
    /// tenant of none, which owns nothing.
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::Tenant(String::new())))
    }
}
