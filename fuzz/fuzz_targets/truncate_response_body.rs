//! Fuzzes `message::truncate_utf8`, which turns the first bytes of a receiver's
//! response body (arbitrary bytes, not necessarily UTF-8) into the text kept in the
//! delivery log. Checks: it never panics for any bytes and limit; the text is the lossy
//! decode of a prefix cut at most 3 bytes before the limit; and wherever the input is
//! valid UTF-8 up to the limit, the result is exactly the longest whole-character prefix
//! of at most `max` bytes (no character is cut, none is dropped needlessly).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outboxd_core::message::truncate_utf8;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    max: u16,
    bytes: &'a [u8],
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|input: Input<'_>| {
    let bytes = input.bytes;
    // Mostly limits inside or just past the input, where the cutting happens.
    let max = usize::from(input.max) % (bytes.len() + 8);
    let got = truncate_utf8(bytes, max);

    if bytes.len() <= max {
        assert_eq!(got, lossy(bytes));
        return;
    }
    let lowest = max.saturating_sub(3);
    assert!(
        (lowest..=max).any(|cut| got == lossy(&bytes[..cut])),
        "{got:?} is not a prefix cut near {max}"
    );
    assert!(got.len() <= 3 * max);

    let valid_up_to = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    if max <= valid_up_to {
        let text = std::str::from_utf8(&bytes[..valid_up_to]).unwrap();
        let mut cut = max.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        assert_eq!(got, &text[..cut], "valid text cut wrongly at {max}");
    }
});
