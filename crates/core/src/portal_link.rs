//! Portal links: a URL that signs a browser in to one tenant's portal.
//!
//! The query carries the tenant, when the link was issued and when it
//! expires, a nonce (a link works once; the console records used nonces)
//! and an HMAC-SHA256 over all four under a key only the platform holds.
//! The key is derived from the admin token unless one is configured, so a
//! link made by the CLI opens on every replica with nothing else shared,
//! and the token itself never appears in a link. Several keys may be
//! given: the first signs, any verifies, which is how a key is rotated.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The path a link opens.
pub const PATH: &str = "/portal/open";

/// What a valid link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub tenant: String,
    pub issued: i64,
    pub expires: i64,
    pub nonce: String,
}

/// Why a link does not sign anyone in, in words for the person holding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is incomplete or was changed: it is not one the platform made")]
    Malformed,
    #[error("the link's signature does not match: it was changed, or made with another key")]
    BadSignature,
    #[error("the link expired")]
    Expired,
}

/// Signing keys, the first signing and every one verifying.
#[derive(Clone)]
pub struct Keys(Vec<Vec<u8>>);

impl Keys {
    /// The key derived from the admin token.
    pub fn from_admin_token(token: &str) -> Keys {
        Keys(vec![derive(token)])
    }

    /// Configured keys (comma-separated secrets, the first the current one),
    /// each stretched the same way; None when there is none.
    pub fn configured(list: &str) -> Option<Keys> {
        let keys: Vec<Vec<u8>> = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(derive)
            .collect();
        (!keys.is_empty()).then_some(Keys(keys))
    }

    fn mac(key: &[u8], tenant: &str, issued: i64, expires: i64, nonce: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
        for part in [tenant, &issued.to_string(), &expires.to_string(), nonce] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// The link's query string (without `?`).
    pub fn sign(&self, claims: &Claims) -> String {
        let sig = Self::mac(
            &self.0[0],
            &claims.tenant,
            claims.issued,
            claims.expires,
            &claims.nonce,
        );
        form_pairs(&[
            ("tenant", &claims.tenant),
            ("issued", &claims.issued.to_string()),
            ("expires", &claims.expires.to_string()),
            ("nonce", &claims.nonce),
            ("sig", &URL_SAFE_NO_PAD.encode(sig)),
        ])
    }

    /// The claims of a link's query pairs, if it is whole, signed by one of
    /// the keys and not expired at `now` (Unix seconds).
    pub fn verify(&self, pairs: &[(String, String)], now: i64) -> Result<Claims, LinkError> {
        let get = |n: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .ok_or(LinkError::Malformed)
        };
        let tenant = get("tenant")?;
        let issued: i64 = get("issued")?.parse().map_err(|_| LinkError::Malformed)?;
        let expires: i64 = get("expires")?.parse().map_err(|_| LinkError::Malformed)?;
        let nonce = get("nonce")?;
        let sig = URL_SAFE_NO_PAD
            .decode(get("sig")?)
            .map_err(|_| LinkError::Malformed)?;
        let valid = self.0.iter().any(|key| {
            let want = Self::mac(key, tenant, issued, expires, nonce);
            bool::from(want.ct_eq(&sig))
        });
        if !valid {
            return Err(LinkError::BadSignature);
        }
        if now >= expires {
            return Err(LinkError::Expired);
        }
        Ok(Claims {
            tenant: tenant.to_owned(),
            issued,
            expires,
            nonce: nonce.to_owned(),
        })
    }
}

fn derive(secret: &str) -> Vec<u8> {
    Sha256::digest(format!("outboxd-portal-link\0{secret}").as_bytes()).to_vec()
}

/// `a=1&b=2`, each value percent-encoded where needed (tenant ids and
/// base64url need nothing, but a link must stay a link whatever it holds).
fn form_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn claims() -> Claims {
        Claims {
            tenant: "acme".into(),
            issued: 1_000,
            expires: 4_600,
            nonce: "n0nce".into(),
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let keys = Keys::from_admin_token("t0ken");
        let q = keys.sign(&claims());
        assert!(!q.contains("t0ken"));
        assert_eq!(keys.verify(&pairs(&q), 1_001), Ok(claims()));
        assert_eq!(keys.verify(&pairs(&q), 4_600), Err(LinkError::Expired));
    }

    #[test]
    fn a_changed_link_does_not_verify() {
        let keys = Keys::from_admin_token("t0ken");
        let q = keys.sign(&claims());
        for (from, to) in [
            ("tenant=acme", "tenant=globex"),
            ("expires=4600", "expires=9999"),
            ("nonce=n0nce", "nonce=other"),
        ] {
            let changed = q.replace(from, to);
            assert_eq!(
                keys.verify(&pairs(&changed), 1_001),
                Err(LinkError::BadSignature),
                "{to}"
            );
        }
        let cut = q.replace("&nonce=n0nce", "");
        assert_eq!(keys.verify(&pairs(&cut), 1_001), Err(LinkError::Malformed));
        let other = Keys::from_admin_token("another");
        assert_eq!(
            other.verify(&pairs(&q), 1_001),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn a_rotated_key_keeps_old_links_open() {
        let old = Keys::configured("k1").unwrap();
        let rotated = Keys::configured("k2, k1").unwrap();
        let q = old.sign(&claims());
        assert!(rotated.verify(&pairs(&q), 1_001).is_ok());
        let new = rotated.sign(&claims());
        assert_eq!(
            old.verify(&pairs(&new), 1_001),
            Err(LinkError::BadSignature)
        );
        assert!(Keys::configured(" , ").is_none());
    }
}
