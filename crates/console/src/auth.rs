//! Who may use the console and the API, their sessions, and CSRF
//! protection of the forms.
//!
//! The API takes `Authorization: Bearer <token>`; the browser signs in once
//! with the same token, or opens a tenant's portal link, and gets a session
//! cookie (HttpOnly). Sessions are rows of `outbox.console_sessions`: the
//! cookie holds a random token, the row its SHA-256 (keyed by the admin
//! token, so a new token ends every session) and the tenant (none for an
//! admin), so every replica knows them and signing out ends one everywhere. A form's CSRF token is an HMAC of the session's token under
//! a key derived from the admin token, checked on every POST. Secrets are
//! compared in constant time. Without a token (allowed on loopback only)
//! there is no login, but sessions, CSRF tokens and the same-origin checks
//! stay.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_postgres::Client;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "outboxd_session";

/// How long a browser session lasts at most; then the admin signs in again
/// (a portal session ends sooner when its link's ttl is shorter).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

pub struct Auth {
    token: Option<String>,
    key: Vec<u8>,
}

impl Auth {
    pub fn new(token: Option<String>) -> Auth {
        let key = match &token {
            Some(t) => Sha256::digest(format!("outboxd-console-session\0{t}").as_bytes()).to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Auth { token, key }
    }

    /// False when no token is configured: everyone on loopback may enter.
    pub fn requires_login(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `given` is the token, in time independent of where they differ
    /// (both are hashed first so their lengths do not show either).
    pub fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            None => true,
            Some(t) => {
                let a = Sha256::digest(t.as_bytes());
                let b = Sha256::digest(given.as_bytes());
                bool::from(a.as_slice().ct_eq(b.as_slice()))
            }
        }
    }

    /// The API's check of an `Authorization` header (the scheme's name is
    /// case-insensitive, as HTTP has it).
    pub fn bearer_ok(&self, header: Option<&str>) -> bool {
        if self.token.is_none() {
            return true;
        }
        let given = header
            .map(str::trim)
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        given.is_some_and(|t| self.token_matches(t))
    }

    fn mac(&self, purpose: &str, value: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The CSRF token of a session, for the hidden field of its forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.mac("csrf", &session.token)
    }

    pub fn csrf_ok(&self, session: &Session, given: Option<&str>) -> bool {
        let want = self.csrf_token(session);
        given.is_some_and(|g| bool::from(want.as_bytes().ct_eq(g.as_bytes())))
    }
}

/// A browser session: the cookie's token and whose it is.
#[derive(Debug, Clone)]
pub struct Session {
    token: String,
    /// None: an admin's; else the tenant whose portal this is.
    pub tenant: Option<String>,
    /// How long the cookie is to live.
    pub ttl: Duration,
}

impl Session {
    pub fn cookie_value(&self) -> &str {
        &self.token
    }
}

const OPEN: &str = "
INSERT INTO outbox.console_sessions (token_sha256, tenant, expires_at)
VALUES ($1, $2, now() + $3 * interval '1 second')";

/// Ended sessions go when a new one starts: there are few, and no other
/// task need know of them.
const PURGE: &str = "DELETE FROM outbox.console_sessions WHERE expires_at < now()";

const FIND: &str = "
SELECT tenant, extract(epoch FROM expires_at - now())::float8
  FROM outbox.console_sessions WHERE token_sha256 = $1 AND expires_at > now()";

const END: &str = "DELETE FROM outbox.console_sessions WHERE token_sha256 = $1";

impl Auth {
    /// The row's key of a cookie's token, under the admin token's key too:
    /// a new admin token ends every session, as it should.
    fn digest(&self, token: &str) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(&self.key);
        h.update(token.as_bytes());
        h.finalize().to_vec()
    }

    /// Starts a session of `tenant` (None: an admin) for `ttl`.
    pub async fn open(
        &self,
        client: &Client,
        tenant: Option<&str>,
        ttl: Duration,
    ) -> Result<Session, tokio_postgres::Error> {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        client.execute(PURGE, &[]).await?;
        client
            .execute(
                OPEN,
                &[&self.digest(&token), &tenant, &(ttl.as_secs() as f64)],
            )
            .await?;
        Ok(Session {
            token,
            tenant: tenant.map(str::to_owned),
            ttl,
        })
    }

    /// The session a `Cookie` header names, if it names a live one.
    pub async fn find(
        &self,
        client: &Client,
        cookie_header: Option<&str>,
    ) -> Result<Option<Session>, tokio_postgres::Error> {
        let Some(token) = cookie_token(cookie_header) else {
            return Ok(None);
        };
        let row = client.query_opt(FIND, &[&self.digest(token)]).await?;
        Ok(row.map(|r| Session {
            token: token.to_owned(),
            tenant: r.get(0),
            ttl: Duration::from_secs_f64(r.get::<_, f64>(1).max(0.0)),
        }))
    }

    /// Ends a session on every replica.
    pub async fn end(
        &self,
        client: &Client,
        session: &Session,
    ) -> Result<(), tokio_postgres::Error> {
        client.execute(END, &[&self.digest(&session.token)]).await?;
        Ok(())
    }
}

fn cookie_token(cookie_header: Option<&str>) -> Option<&str> {
    cookie_header?
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a session. An admin's is SameSite=Strict; a portal's
/// must reach the console from inside another site's iframe, which takes
/// SameSite=None and so Secure (behind https), and Partitioned so that
/// browsers blocking third-party cookies keep it for that embedding site;
/// over plain http it is Lax.
pub fn set_cookie(session: &Session, https: bool) -> String {
    let same_site = match (&session.tenant, https) {
        (None, _) => "SameSite=Strict",
        (Some(_), true) => "SameSite=None; Secure; Partitioned",
        (Some(_), false) => "SameSite=Lax",
    };
    format!(
        "{COOKIE}={}; Path=/; HttpOnly; {same_site}; Max-Age={}",
        session.token,
        session.ttl.as_secs()
    )
}

/// `Set-Cookie` that ends the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Browsers say where a request comes from; a request that says it comes
/// from another site is refused, whatever else it carries. `host` is the
/// request's Host header.
pub fn same_origin(origin: Option<&str>, fetch_site: Option<&str>, host: Option<&str>) -> bool {
    if let Some(site) = fetch_site {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (origin, host) {
        (None, _) => true,
        (Some("null"), _) => false,
        (Some(o), Some(h)) => {
            let o = o.trim_end_matches('/');
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(h))
        }
        (Some(_), None) => false,
    }
}

/// Without a token the console trusts loopback only; a Host header naming
/// anything else is a DNS-rebinding page pretending to be local.
pub fn loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_bearers() {
        let a = Auth::new(Some("s3cret".into()));
        assert!(a.token_matches("s3cret"));
        assert!(!a.token_matches("s3cre"));
        assert!(a.bearer_ok(Some("Bearer s3cret")));
        assert!(a.bearer_ok(Some("bearer s3cret")));
        assert!(a.bearer_ok(Some("BEARER  s3cret")));
        assert!(!a.bearer_ok(Some("Basic s3cret")));
        assert!(!a.bearer_ok(Some("Bearers3cret")));
        assert!(!a.bearer_ok(Some("Bearer nope")));
        assert!(!a.bearer_ok(Some("Basic s3cret")));
        assert!(!a.bearer_ok(Some("s3cret")));
        assert!(!a.bearer_ok(None));
        assert!(Auth::new(None).bearer_ok(None));
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_the_key() {
        let a = Auth::new(Some("t1".into()));
        let s = Session {
            token: "abc".into(),
            tenant: None,
            ttl: SESSION_TTL,
        };
        let csrf = a.csrf_token(&s);
        assert!(a.csrf_ok(&s, Some(&csrf)));
        assert!(!a.csrf_ok(&s, Some("forged")));
        assert!(!a.csrf_ok(&s, None));
        let other = Session {
            token: "abd".into(),
            ..s.clone()
        };
        assert!(!a.csrf_ok(&other, Some(&csrf)));
        assert!(!Auth::new(Some("t2".into())).csrf_ok(&s, Some(&csrf)));
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_token(Some("x=1; outboxd_session=abc")), Some("abc"));
        assert_eq!(cookie_token(Some("outboxd_session=")), None);
        assert_eq!(cookie_token(None), None);
        let portal = Session {
            token: "t".into(),
            tenant: Some("acme".into()),
            ttl: Duration::from_secs(60),
        };
        assert!(set_cookie(&portal, true).contains("SameSite=None; Secure"));
        assert!(set_cookie(&portal, false).contains("SameSite=Lax"));
        assert!(set_cookie(&portal, false).contains("Max-Age=60"));
        let admin = Session {
            tenant: None,
            ..portal
        };
        assert!(set_cookie(&admin, true).contains("SameSite=Strict"));
    }

    #[test]
    fn origins() {
        let h = Some("127.0.0.1:8080");
        assert!(same_origin(None, None, h));
        assert!(same_origin(
            Some("http://127.0.0.1:8080"),
            Some("same-origin"),
            h
        ));
        assert!(!same_origin(Some("http://evil.example"), None, h));
        assert!(!same_origin(None, Some("cross-site"), h));
        assert!(!same_origin(Some("null"), None, h));
    }

    #[test]
    fn loopback_hosts() {
        for ok in ["127.0.0.1:80", "localhost:9", "[::1]:8080", "localhost"] {
            assert!(loopback_host(Some(ok)), "{ok}");
        }
        for bad in ["evil.example:80", "10.0.0.1:80", "[2001:db8::1]:80"] {
            assert!(!loopback_host(Some(bad)), "{bad}");
        }
        assert!(!loopback_host(None));
    }
}
