//! The request a receiver sees, exactly as docs/architecture.md describes it.
//!
//! Standard Webhooks headers (`webhook-id` stable per event, the attempt's
//! `webhook-timestamp`, `webhook-signature` with one entry per live secret),
//! then the webhook's own headers, which may not replace the signed ones.
//! A tenant's webhook carries only the headers a tenant may set, whoever
//! wrote them (the schema refuses the others since V24; rows from before it
//! may still hold some).

use bytes::Bytes;
use chrono::SecondsFormat;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::Full;
use outboxd_core::{matching, message, signing};
use outboxd_db::{Claimed, Webhook};

pub const USER_AGENT_VALUE: &str = concat!("outboxd/", env!("CARGO_PKG_VERSION"));

/// Headers a webhook's `headers` column may not set: outboxd owns them, or
/// they are hop-by-hop and would change how the request is framed (public so
/// the admin CLI refuses them up front; crates/db/migrations/V5 refuses the same list).
pub const RESERVED: [&str; 14] = [
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Why a request could not be built; recorded as the attempt's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    BadUrl(String),
    BadSecret(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::BadUrl(e) => write!(f, "invalid URL: {e}"),
            BuildError::BadSecret(e) => f.write_str(e),
        }
    }
}

/// Builds the signed POST for one delivery at `timestamp` (unix seconds).
pub fn build(
    webhook: &Webhook,
    delivery: &Claimed,
    timestamp: i64,
) -> Result<Request<Full<Bytes>>, BuildError> {
    if let Some(e) = &webhook.secret_error {
        return Err(BuildError::BadSecret(e.clone()));
    }
    let uri: Uri = webhook
        .url
        .parse()
        .map_err(|e: http::uri::InvalidUri| BuildError::BadUrl(e.to_string()))?;
    let created = delivery
        .created_at
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let body = message::body(&delivery.event_type, &created, &delivery.payload);
    let msg_id = message::webhook_id(delivery.event_id);
    let signature = signing::signature_header(&webhook.secrets, &msg_id, timestamp, &body);

    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    for (name, value) in &webhook.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            continue;
        };
        let tenants_may =
            webhook.tenant.is_none() || matching::tenant_may_set_header(name.as_str());
        if !RESERVED.contains(&name.as_str()) && tenants_may {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| BuildError::BadUrl(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use outboxd_core::signing::Secret;

    fn hook(headers: Vec<(&str, &str)>) -> Webhook {
        Webhook {
            id: 7,
            name: "test".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_types: vec!["*".into()],
            secrets: vec![Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
            secret_error: None,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            tenant: None,
            rate_limit: None,
            ordered: false,
        }
    }

    fn delivery() -> Claimed {
        Claimed {
            delivery_id: 1,
            lease: 1,
            attempt: 1,
            event_id: 42,
            webhook_id: 7,
            event_type: "payment.received".into(),
            payload: r#"{"amount": 10}"#.into(),
            created_at: chrono::Utc
                .with_ymd_and_hms(2026, 11, 22, 14, 0, 0)
                .unwrap(),
            ordering_key: None,
        }
    }

    #[test]
    fn request_has_the_standard_webhooks_headers_and_a_verifiable_signature() {
        let webhook = hook(vec![("x-tenant", "acme")]);
        let req = build(&webhook, &delivery(), 1_700_000_000).unwrap();
        let h = req.headers();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["webhook-id"], "evt_42");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        assert_eq!(h["x-tenant"], "acme");
        assert!(h["user-agent"].to_str().unwrap().starts_with("outboxd/"));
        let sig = h["webhook-signature"].to_str().unwrap().to_owned();
        let body = br#"{"type":"payment.received","timestamp":"2026-11-22T14:00:00.000Z","data":{"amount": 10}}"#;
        assert!(signing::verify(
            &webhook.secrets[0],
            "evt_42",
            1_700_000_000,
            body,
            &sig
        ));
    }

    #[test]
    fn custom_headers_cannot_replace_signed_ones() {
        let webhook = hook(vec![("webhook-signature", "forged"), ("bad name", "x")]);
        let req = build(&webhook, &delivery(), 1).unwrap();
        let sigs: Vec<_> = req.headers().get_all("webhook-signature").iter().collect();
        assert_eq!(sigs.len(), 1);
        assert_ne!(sigs[0], "forged");
    }

    #[test]
    fn a_tenants_webhook_carries_only_the_headers_a_tenant_may_set() {
        let headers = vec![
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "10.0.0.1"),
            ("content-encoding", "gzip"),
        ];
        let platform = build(&hook(headers.clone()), &delivery(), 1).unwrap();
        assert_eq!(platform.headers()["x-forwarded-for"], "10.0.0.1");
        let mut tenants = hook(headers);
        tenants.tenant = Some("acme".into());
        let req = build(&tenants, &delivery(), 1).unwrap();
        let h = req.headers();
        assert_eq!(h["authorization"], "Bearer t");
        assert!(h.get("x-forwarded-for").is_none(), "{h:?}");
        assert!(h.get("content-encoding").is_none(), "{h:?}");
    }

    #[test]
    fn a_bad_secret_is_an_error_not_an_unsigned_request() {
        let mut webhook = hook(vec![]);
        webhook.secrets.clear();
        webhook.secret_error = Some("bad secret: invalid base64".into());
        assert!(matches!(
            build(&webhook, &delivery(), 1),
            Err(BuildError::BadSecret(_))
        ));
    }
}
