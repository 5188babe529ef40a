//! Portal links for a tenant, made the same way by the CLI
//! (`outboxd portal-link`) and the API (`POST /api/tenants/{tenant}/portal-link`).

use std::time::Duration;

use outboxd_core::portal_link::{self, Claims, Keys};

use crate::{tenants, Error, Result};

/// Longest a link may stay valid.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a link stays valid unless told otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The signing keys from configuration: `OUTBOXD_PORTAL_KEYS` when set,
/// else derived from the admin token; None with neither.
pub fn keys(configured: Option<&str>, admin_token: Option<&str>) -> Option<Keys> {
    configured
        .and_then(Keys::configured)
        .or_else(|| admin_token.map(Keys::from_admin_token))
}

/// A link to `tenant`'s portal under `base` (the console's address as
/// users reach it), valid for `ttl`.
pub fn link(keys: &Keys, base: &str, tenant: &str, ttl: Duration) -> Result<String> {
    let tenant = tenants::id(tenant)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid(
            "ttl",
            "a link's ttl is more than 0 and at most 7d (e.g. 15m, 1h, 1d)",
        ));
    }
    let issued = chrono::Utc::now().timestamp();
    let claims = Claims {
        tenant,
        issued,
        expires: issued + ttl.as_secs() as i64,
        nonce: nonce(),
    };
    Ok(format!(
        "{}{}?{}",
        base.trim_end_matches('/'),
        portal_link::PATH,
        keys.sign(&claims)
    ))
}

fn nonce() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
