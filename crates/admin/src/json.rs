//! JSON read back from the database: payloads and catalog examples.
//!
//! PostgreSQL stores JSON nested to any depth; serde_json parses at most 128
//! levels. Stored JSON is therefore read as text and parsed only to be
//! pretty-printed: a value too deep to parse is shown as PostgreSQL wrote
//! it, and serialized verbatim (as a raw JSON value), never a panic.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A stored JSON value: its text as PostgreSQL wrote it, and the parsed
/// value when serde_json can hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJson {
    text: String,
    parsed: Option<serde_json::Value>,
}

impl StoredJson {
    /// From the `::text` of a jsonb column.
    pub fn from_text(text: String) -> StoredJson {
        let parsed = serde_json::from_str(&text).ok();
        StoredJson { text, parsed }
    }

    /// The text as stored (compact, one line).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Pretty-printed when it could be parsed, else the stored text.
    pub fn pretty(&self) -> String {
        self.parsed
            .as_ref()
            .and_then(|v| serde_json::to_string_pretty(v).ok())
            .unwrap_or_else(|| self.text.clone())
    }
}

impl Serialize for StoredJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.parsed {
            Some(v) => v.serialize(serializer),
            // RawValue checks the text without building a tree, so depth
            // does not matter; jsonb text is valid JSON.
            None => match RawValue::from_string(self.text.clone()) {
                Ok(raw) => raw.serialize(serializer),
                Err(_) => self.text.serialize(serializer),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn shallow_json_is_parsed_and_deep_json_kept_as_text() {
        let cases = [
            (
                r#"{"a": 1}"#.to_owned(),
                "{\n  \"a\": 1\n}".to_owned(),
                r#"{"a":1}"#.to_owned(),
            ),
            (nested(3), "[\n  [\n    []\n  ]\n]".into(), nested(3)),
            (nested(200), nested(200), nested(200)),
            (nested(10_000), nested(10_000), nested(10_000)),
        ];
        for (text, pretty, serialized) in cases {
            let j = StoredJson::from_text(text.clone());
            assert_eq!(j.text(), text);
            assert_eq!(j.pretty(), pretty);
            assert_eq!(serde_json::to_string(&j).unwrap(), serialized);
            assert!(serde_json::to_string_pretty(&[&j]).is_ok());
        }
    }
}
