//! Who may use the console and the API, and CSRF protection of its forms.
//!
//! The API takes `Authorization: Bearer <token>`; the browser logs in once
//! with the same token and gets a session cookie (HttpOnly, SameSite=Strict).
//! Sessions are stateless: `issued-random.mac`, an HMAC under a key derived
//! from the token, so every replica accepts them, a restart keeps them,
//! they end after `SESSION_TTL_SECS`, and changing the token ends them all. A form's CSRF token is another HMAC of the
//! session's nonce, checked on every POST. Secrets are compared in constant
//! time. Without a token (allowed on loopback only) there is no login, but
//! sessions, CSRF tokens and the same-origin checks stay.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE: &str = "outboxd_session";

/// How long a browser session lasts; then the admin logs in again.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

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

    /// The API's check of an `Authorization` header.
    pub fn bearer_ok(&self, header: Option<&str>) -> bool {
        if self.token.is_none() {
            return true;
        }
        // The scheme is case-insensitive (RFC 7235): `bearer` is `Bearer`.
        match header.and_then(|h| h.trim_start().split_once(' ')) {
            Some((scheme, given)) if scheme.eq_ignore_ascii_case("bearer") => {
                self.token_matches(given.trim())
            }
            _ => false,
        }
    }

    fn mac(&self, purpose: &str, nonce: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A new session, issued now.
    pub fn new_session(&self) -> Session {
        let issued = chrono::Utc::now().timestamp();
        let nonce = format!(
            "{issued}-{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>())
        );
        Session { nonce }
    }

    pub fn cookie_value(&self, session: &Session) -> String {
        format!("{}.{}", session.nonce, self.mac("session", &session.nonce))
    }

    /// The session of a `Cookie` header, if it carries a valid one.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<Session> {
        let value = cookie_header?
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)?
            .1;
        let (nonce, mac) = value.split_once('.')?;
        let want = self.mac("session", nonce);
        if !bool::from(want.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let issued: i64 = nonce.split_once('-')?.0.parse().ok()?;
        let age = chrono::Utc::now().timestamp() - issued;
        (0..SESSION_TTL_SECS).contains(&age).then(|| Session {
            nonce: nonce.to_owned(),
        })
    }

    /// The CSRF token of a session, for the hidden field of its forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.mac("csrf", &session.nonce)
    }

    pub fn csrf_ok(&self, session: &Session, given: Option<&str>) -> bool {
        let want = self.csrf_token(session);
        given.is_some_and(|g| bool::from(want.as_bytes().ct_eq(g.as_bytes())))
    }
}

/// A browser session, known by its nonce.
#[derive(Debug, Clone)]
pub struct Session {
    nonce: String,
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, the whole site.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_TTL_SECS}")
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
        assert!(!a.bearer_ok(Some("s3cret")));
        assert!(!a.bearer_ok(None));
        assert!(Auth::new(None).bearer_ok(None));
    }

    #[test]
    fn sessions_and_csrf_are_bound_to_the_token() {
        let a = Auth::new(Some("t1".into()));
        let s = a.new_session();
        let cookie = format!("x=1; {COOKIE}={}", a.cookie_value(&s));
        let back = a.session(Some(&cookie)).expect("valid session");
        let csrf = a.csrf_token(&back);
        assert!(a.csrf_ok(&back, Some(&csrf)));
        assert!(!a.csrf_ok(&back, Some("forged")));
        assert!(!a.csrf_ok(&back, None));
        // Another token: the same cookie is no session.
        let b = Auth::new(Some("t2".into()));
        assert!(b.session(Some(&cookie)).is_none());
        assert!(a.session(Some(&format!("{COOKIE}=abc.def"))).is_none());
        // A well-signed session past its lifetime is no session either.
        let old = Session {
            nonce: format!(
                "{}-x",
                chrono::Utc::now().timestamp() - SESSION_TTL_SECS - 1
            ),
        };
        let stale = format!("{COOKIE}={}", a.cookie_value(&old));
        assert!(a.session(Some(&stale)).is_none());
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
