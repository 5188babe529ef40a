//! What the delivery log keeps of a receiver's answer: text PostgreSQL stores.
//!
//! A `text` column refuses the NUL character, and one refused value would
//! fail the whole batch of results it is written with. Response bodies,
//! error reasons and anything else that came from a receiver pass through
//! here first: NUL becomes U+FFFD, and a body that is compressed or binary
//! is kept as a short description instead of as mangled bytes.

use std::borrow::Cow;

use crate::message::{truncate_utf8, MAX_RESPONSE_BODY_KEPT, MAX_RESPONSE_BODY_READ};

/// `text` with every NUL replaced by U+FFFD, the one character of valid
/// UTF-8 a PostgreSQL `text` value cannot hold.
pub fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// [`storable_text`] for an owned string, allocating only when it changes.
pub fn into_storable(text: String) -> String {
    match storable_text(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => clean,
    }
}

/// What the log keeps of a response body: `kept` is the start of it, `read`
/// how many bytes were read in all, `content_encoding` the response's
/// `content-encoding`. A body compressed by the receiver, or one holding a
/// NUL byte (binary), is described rather than shown; text is kept up to
/// [`MAX_RESPONSE_BODY_KEPT`] bytes, invalid UTF-8 replaced.
pub fn response_body(kept: &[u8], read: usize, content_encoding: Option<&str>) -> Option<String> {
    if kept.is_empty() {
        return None;
    }
    let size = if read >= MAX_RESPONSE_BODY_READ {
        format!("at least {read} bytes")
    } else {
        format!("{read} bytes")
    };
    let encoding = content_encoding
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));
    if let Some(encoding) = encoding {
        // The name comes from the receiver: keep it short and plain.
        let name: String = encoding
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ',' | ' ' | '.'))
            .take(32)
            .collect();
        return Some(format!("[{name}-encoded body, {size}: not shown]"));
    }
    if kept.contains(&0) {
        return Some(format!("[binary body, {size}: not shown]"));
    }
    Some(truncate_utf8(kept, MAX_RESPONSE_BODY_KEPT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nul_is_replaced_and_nothing_else_changes() {
        let cases = [
            ("", ""),
            ("ok", "ok"),
            ("a\0b", "a\u{fffd}b"),
            ("\0\0", "\u{fffd}\u{fffd}"),
            ("tab\tand\u{1}ctl", "tab\tand\u{1}ctl"),
            ("é\0", "é\u{fffd}"),
        ];
        for (text, want) in cases {
            assert_eq!(storable_text(text), want, "{text:?}");
            assert_eq!(into_storable(text.to_owned()), want, "{text:?}");
        }
        assert!(matches!(storable_text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn bodies_are_kept_as_text_or_described() {
        let gzip = [0x1f, 0x8b, 0x08, 0x00, 0x00];
        type Case<'a> = (&'a [u8], usize, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (b"", 0, None, None),
            (b"", 0, Some("gzip"), None),
            (b"ok", 2, None, Some("ok")),
            (b"ok", 2, Some("identity"), Some("ok")),
            (
                b"ok\0\0yes",
                7,
                None,
                Some("[binary body, 7 bytes: not shown]"),
            ),
            (
                &gzip,
                25,
                Some("gzip"),
                Some("[gzip-encoded body, 25 bytes: not shown]"),
            ),
            (
                b"text",
                4,
                Some(" br "),
                Some("[br-encoded body, 4 bytes: not shown]"),
            ),
            (
                b"x",
                70_000,
                Some("gzip"),
                Some("[gzip-encoded body, at least 70000 bytes: not shown]"),
            ),
            (
                b"x",
                1,
                Some("x\u{7f}<b>"),
                Some("[xb-encoded body, 1 bytes: not shown]"),
            ),
            (b"caf\xe9", 4, None, Some("caf\u{fffd}")),
        ];
        for (kept, read, encoding, want) in cases {
            assert_eq!(
                response_body(kept, *read, *encoding).as_deref(),
                *want,
                "{kept:?} {encoding:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_body_is_storable_and_bounded(
            kept in proptest::collection::vec(any::<u8>(), 0..5000),
            encoding in proptest::option::of(".{0,80}"),
        ) {
            let read = kept.len();
            if let Some(body) = response_body(&kept, read, encoding.as_deref()) {
                prop_assert!(!body.contains('\0'));
                // A replacement character is 3 bytes for an invalid byte.
                prop_assert!(body.len() <= MAX_RESPONSE_BODY_KEPT * 3);
            }
        }

        #[test]
        fn storable_text_has_no_nul(text in ".{0,200}") {
            let clean = storable_text(&text);
            prop_assert!(!clean.contains('\0'));
            prop_assert_eq!(clean.chars().count(), text.chars().count());
        }
    }
}
