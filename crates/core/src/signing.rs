//! Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
//! `"{msg_id}.{timestamp}.{body}"`, sent as `v1,<base64>`. Several signatures may share
//! one header, space-separated, so a secret can be rotated without a gap: sign with the
//! new and the old secret until every receiver has switched.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of secrets in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";

/// Version tag of the only signature scheme defined (symmetric HMAC-SHA256).
const VERSION_PREFIX: &str = "v1,";

/// Standard base64 that does not insist on padding: secrets are pasted by people, and a
/// missing `=` carries no information.
const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret string was refused. Never contains the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("webhook secret is empty; expected whsec_<base64> or base64 key bytes")]
    EmptySecret,
    #[error(
        "webhook secret is not valid base64; expected whsec_<base64> (standard alphabet): {0}"
    )]
    InvalidBase64(#[from] base64::DecodeError),
}

/// An HMAC key. `Debug` hides the bytes so a secret cannot leak through a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Parses `whsec_<base64>` or a bare base64 string into key bytes. Surrounding
    /// whitespace is ignored (secrets often arrive from files and environment variables).
    pub fn parse(s: &str) -> Result<Secret, SigningError> {
        let s = s.trim();
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        if encoded.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        let key = LENIENT_STANDARD.decode(encoded)?;
        if key.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        Ok(Secret(key))
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(key: Vec<u8>) -> Secret {
        Secret(key)
    }

    /// The key bytes, for callers that must store or compare them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in the `whsec_<base64>` form receivers are given.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Secret, SigningError> {
        Secret::parse(s)
    }
}

/// The signature `v1,<base64 HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}")>`.
pub fn sign(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(msg_id, timestamp, body).finalize().into_bytes();
    format!("{VERSION_PREFIX}{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one signature per secret, space-separated,
/// in the order given (put the newest secret first).
pub fn signature_header(secrets: &[Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| sign(secret, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True if any `v1,` entry of `header` is a valid signature by `secret`. Entries of
/// other versions and malformed entries are skipped; tags are compared in constant time.
pub fn verify(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mac = secret.mac(msg_id, timestamp, body);
    header
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix(VERSION_PREFIX))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|tag| mac.clone().verify_slice(&tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_secret() -> Secret {
        Secret::parse(VECTOR_SECRET).unwrap()
    }

    #[test]
    fn standard_webhooks_published_vector() {
        let secret = vector_secret();
        assert_eq!(sign(&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
        assert!(verify(
            &secret,
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY,
            VECTOR_SIG
        ));
    }

    #[test]
    fn bare_base64_is_the_same_key() {
        let bare = Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(bare, vector_secret());
        assert_eq!(vector_secret().to_whsec(), VECTOR_SECRET);
    }

    #[test]
    fn secret_parsing() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("whsec_aGVsbG8=", Some(b"hello")),
            ("whsec_aGVsbG8", Some(b"hello")),
            ("aGVsbG8=", Some(b"hello")),
            ("  whsec_aGVsbG8=\n", Some(b"hello")),
            ("", None),
            ("whsec_", None),
            ("   ", None),
            ("whsec_not base64!", None),
            ("whsec_aGVsbG8-", None),
            ("whsec_whsec_aGVsbG8=", None),
        ];
        for (input, want) in cases {
            match (Secret::parse(input), want) {
                (Ok(secret), Some(bytes)) => assert_eq!(secret.as_bytes(), *bytes, "{input:?}"),
                (Err(_), None) => {}
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn parse_errors_are_clear() {
        let empty = Secret::parse("whsec_").unwrap_err();
        assert!(matches!(empty, SigningError::EmptySecret));
        assert!(empty.to_string().contains("whsec_<base64>"));
        let bad = Secret::parse("whsec_s3cr3t!").unwrap_err();
        assert!(matches!(bad, SigningError::InvalidBase64(_)));
        assert!(bad.to_string().contains("not valid base64"));
        assert!(!bad.to_string().contains("s3cr3t"));
    }

    #[test]
    fn debug_hides_the_key() {
        let secret = Secret::from_bytes(b"hunter2".to_vec());
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_eq!(format!("{:?}", Some(secret)), "Some(Secret(..))");
    }

    #[test]
    fn tampering_fails_verification() {
        let secret = vector_secret();
        let other = Secret::from_bytes(b"another key".to_vec());
        let cases: &[(&Secret, &str, i64, &[u8], &str)] = &[
            (
                &secret,
                VECTOR_ID,
                VECTOR_TS,
                br#"{"test": 2432232315}"#,
                VECTOR_SIG,
            ),
            (&secret, VECTOR_ID, VECTOR_TS + 1, VECTOR_BODY, VECTOR_SIG),
            (
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJeK",
                VECTOR_TS,
                VECTOR_BODY,
                VECTOR_SIG,
            ),
            (&other, VECTOR_ID, VECTOR_TS, VECTOR_BODY, VECTOR_SIG),
            (&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY, ""),
            (&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY, "v1,"),
            (&secret, VECTOR_ID, VECTOR_TS, VECTOR_BODY, "v1,!!!"),
            (
                &secret,
                VECTOR_ID,
                VECTOR_TS,
                VECTOR_BODY,
                "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                &secret,
                VECTOR_ID,
                VECTOR_TS,
                VECTOR_BODY,
                "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                &secret,
                VECTOR_ID,
                VECTOR_TS,
                VECTOR_BODY,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE",
            ),
        ];
        for (key, id, ts, body, header) in cases {
            assert!(!verify(key, id, *ts, body, header), "{id} {ts} {header:?}");
        }
    }

    #[test]
    fn unknown_versions_are_skipped() {
        let header = format!("v1a,abc v2,xyz {VECTOR_SIG}");
        assert!(verify(
            &vector_secret(),
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY,
            &header
        ));
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let new = Secret::from_bytes(b"new key".to_vec());
        let old = vector_secret();
        let header = signature_header(
            &[new.clone(), old.clone()],
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY,
        );
        assert_eq!(
            header,
            format!(
                "{} {VECTOR_SIG}",
                sign(&new, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
            )
        );
        assert!(verify(&new, VECTOR_ID, VECTOR_TS, VECTOR_BODY, &header));
        assert!(verify(&old, VECTOR_ID, VECTOR_TS, VECTOR_BODY, &header));
        let stranger = Secret::from_bytes(b"stranger".to_vec());
        assert!(!verify(
            &stranger,
            VECTOR_ID,
            VECTOR_TS,
            VECTOR_BODY,
            &header
        ));
        assert_eq!(signature_header(&[], VECTOR_ID, VECTOR_TS, VECTOR_BODY), "");
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            key in proptest::collection::vec(any::<u8>(), 1..64),
            id in "[a-zA-Z0-9_]{1,40}",
            ts in any::<i64>(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let secret = Secret::from_bytes(key);
            let sig = sign(&secret, &id, ts, &body);
            prop_assert!(sig.starts_with("v1,"));
            prop_assert!(verify(&secret, &id, ts, &body, &sig));
            prop_assert!(!verify(&secret, &id, ts.wrapping_add(1), &body, &sig));
            let mut tampered = body.clone();
            tampered.push(b' ');
            prop_assert!(!verify(&secret, &id, ts, &tampered, &sig));
        }

        #[test]
        fn whsec_round_trips(key in proptest::collection::vec(any::<u8>(), 1..64)) {
            let secret = Secret::from_bytes(key.clone());
            let parsed = Secret::parse(&secret.to_whsec()).unwrap();
            prop_assert_eq!(parsed.as_bytes(), &key[..]);
        }

        #[test]
        fn verify_never_panics_on_garbage(header in ".{0,200}") {
            let _ = verify(&vector_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY, &header);
            let _ = Secret::parse(&header);
        }
    }
}
