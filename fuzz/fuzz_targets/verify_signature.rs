//! Fuzzes `signing::verify` (and `sign` / `signature_header`), the check a receiver runs
//! on a `webhook-signature` header it did not write: the header, id, timestamp and body
//! all come from the network. Checks: it never panics; it accepts a header only if one
//! of its whitespace-separated entries is exactly `sign(key, ..)` (no truncated tags, no
//! alternative base64 spellings); a header made by `signature_header` verifies under a
//! key iff one of the signing keys is the same HMAC key and the signed string
//! `"{id}.{timestamp}.{body}"` is the same, whatever garbage is put around it.
//!
//! "The same HMAC key" is not "the same bytes": HMAC pads keys with zeros to the block
//! size (64 bytes for SHA-256) and hashes longer keys first, so `k` and `k || 0x00`, or
//! a long key and its SHA-256, are one key. That is HMAC, not a bug in outboxd, and the
//! invariant below accounts for it.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outboxd_core::signing::{sign, signature_header, verify, Secret};
use sha2::{Digest, Sha256};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    /// The receiver's key.
    key: &'a [u8],
    /// What the receiver got.
    msg_id: &'a str,
    timestamp: i64,
    body: &'a [u8],
    /// Header garbage, verified alone and wrapped around a real signature header.
    junk: &'a str,
    junk_after: bool,
    /// What the sender signed: its keys (the receiver's own key may be among them).
    signer_keys: Vec<&'a [u8]>,
    receiver_key_at: Option<u8>,
    signed_msg_id: &'a str,
    signed_timestamp: i64,
    signed_body: &'a [u8],
}

/// The 64-byte block HMAC-SHA256 actually keys with.
fn hmac_block(key: &[u8]) -> [u8; 64] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    block
}

fn signed_string(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut s = format!("{msg_id}.{timestamp}.").into_bytes();
    s.extend_from_slice(body);
    s
}

fuzz_target!(|input: Input<'_>| {
    let key = Secret::from_bytes(input.key.to_vec());
    let (id, ts, body) = (input.msg_id, input.timestamp, input.body);

    // 1. Arbitrary header: accepted only if it carries the exact signature.
    let expected = sign(&key, id, ts, body);
    let junk_ok = verify(&key, id, ts, body, input.junk);
    let carries_exact = input.junk.split_ascii_whitespace().any(|e| e == expected);
    assert_eq!(junk_ok, carries_exact, "junk header {:?}", input.junk);

    // 2. A real header from the sender, with garbage around it.
    let mut signers: Vec<Secret> = input
        .signer_keys
        .iter()
        .take(4)
        .map(|k| Secret::from_bytes(k.to_vec()))
        .collect();
    if let Some(at) = input.receiver_key_at {
        signers.insert(usize::from(at) % (signers.len() + 1), key.clone());
    }
    let real = signature_header(
        &signers,
        input.signed_msg_id,
        input.signed_timestamp,
        input.signed_body,
    );
    assert_eq!(
        real.split(' ').filter(|e| !e.is_empty()).count(),
        signers.len()
    );
    let header = if input.junk_after {
        format!("{real} {}", input.junk)
    } else {
        format!("{} {real}", input.junk)
    };

    let same_message = signed_string(id, ts, body)
        == signed_string(
            input.signed_msg_id,
            input.signed_timestamp,
            input.signed_body,
        );
    let same_key = signers
        .iter()
        .any(|s| hmac_block(s.as_bytes()) == hmac_block(key.as_bytes()));
    assert_eq!(
        verify(&key, id, ts, body, &header),
        junk_ok || (same_message && same_key),
        "same_message={same_message} same_key={same_key}"
    );

    // Every signature in the header verifies alone under its own key.
    for (signer, entry) in signers.iter().zip(real.split(' ')) {
        assert!(verify(
            signer,
            input.signed_msg_id,
            input.signed_timestamp,
            input.signed_body,
            entry
        ));
    }
});
