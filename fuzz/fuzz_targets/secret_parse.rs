//! Fuzzes `signing::Secret::parse`, which reads webhook secrets (`whsec_<base64>` or bare
//! base64) that admins type into `outbox.webhooks` and that arrive from files and
//! environment variables. Checks: it never panics; `FromStr` agrees with it; surrounding
//! whitespace never changes the answer; an accepted secret is non-empty, round-trips
//! through `to_whsec` (and its bare base64 form) to the same key, and was written in the
//! canonical base64 of its bytes (padding aside); a refusal never echoes the secret.
#![no_main]

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use outboxd_core::signing::{Secret, SECRET_PREFIX};

fuzz_target!(|s: &str| {
    let parsed = Secret::parse(s);

    let via_from_str = s.parse::<Secret>();
    assert_eq!(parsed.as_ref().ok(), via_from_str.as_ref().ok());

    let padded = format!(" \t{s}\r\n ");
    let parsed_padded = Secret::parse(&padded);
    assert_eq!(parsed.as_ref().ok(), parsed_padded.as_ref().ok());

    let encoded = {
        let t = s.trim();
        t.strip_prefix(SECRET_PREFIX).unwrap_or(t)
    };

    match parsed {
        Ok(secret) => {
            assert!(!secret.as_bytes().is_empty(), "accepted an empty key");

            let whsec = secret.to_whsec();
            assert!(whsec.starts_with(SECRET_PREFIX));
            let again = Secret::parse(&whsec).expect("to_whsec output must parse");
            assert_eq!(again, secret);
            let bare = Secret::parse(&whsec[SECRET_PREFIX.len()..]).expect("bare form must parse");
            assert_eq!(bare, secret);

            // Only the canonical encoding of the key is accepted (trailing bits must be
            // zero), so two different strings without padding never name the same key.
            assert_eq!(
                encoded.trim_end_matches('='),
                STANDARD_NO_PAD.encode(secret.as_bytes()),
                "non-canonical base64 accepted"
            );
        }
        Err(err) => {
            // The message is a fixed template plus base64's reason (numbers and fixed
            // words only), so no run of 16 base64-alphabet characters can appear in it
            // unless it was copied from the input.
            let shown = format!("{err} {err:?}");
            for run in encoded
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/'))
                .filter(|run| run.len() >= 16)
            {
                assert!(!shown.contains(run), "error text leaks the secret: {shown}");
            }
        }
    }
});
