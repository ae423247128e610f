//! RFC 8785 JSON Canonicalization Scheme (JCS), for the I-JSON subset leadgate events use.
//!
//! Object members are sorted by their names' UTF-16 code units (§3.2.3), strings are escaped
//! as ECMAScript `JSON.stringify` does (§3.2.2.2), no white space is emitted. Numbers are limited
//! to integers of magnitude at most 2^53 − 1 (I-JSON, RFC 7493 §2.2), whose canonical form is
//! their plain decimal: events carry no fractions, so floats are rejected rather than
//! formatted.

use serde_json::Value;

/// Largest integer magnitude that round-trips through an IEEE 754 double: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Errors from canonicalization. Code: `event.not_canonical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// A fractional number, or an integer outside ±(2^53 − 1).
    #[error("number {0} is not an I-JSON safe integer")]
    UnsupportedNumber(String),
}

/// Serializes `value` canonically (RFC 8785).
///
/// # Errors
/// [`JcsError::UnsupportedNumber`] for floats and out-of-range integers.
pub fn to_canonical_string(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let ok = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
                _ => false,
            };
            if !ok {
                return Err(JcsError::UnsupportedNumber(n.to_string()));
            }
            out.push_str(&n.to_string());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8785_sorting_example() {
        // RFC 8785 §3.2.3: property names sorted by UTF-16 code units.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let keys: Vec<String> = {
            let s = to_canonical_string(&v).unwrap();
            let back: serde_json::Map<String, Value> = serde_json::from_str(&s).unwrap();
            let _ = back;
            let mut order = Vec::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("\":\"") {
                let start = rest[..i].rfind(['{', ',']).unwrap() + 2;
                order.push(rest[start..i].to_string());
                rest = &rest[i + 3..];
            }
            order
        };
        assert_eq!(
            keys,
            vec![
                "\\r",
                "1",
                "\u{80}",
                "\u{f6}",
                "\u{20ac}",
                "\u{1f600}",
                "\u{fb33}"
            ]
        );
    }

    #[test]
    fn escapes_and_literals() {
        let v = json!({"b": [true, false, null, -5, 0], "a": "\u{1}\n\"\\/é"});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"a":"\u0001\n\"\\/é","b":[true,false,null,-5,0]}"#
        );
    }

    #[test]
    fn floats_and_unsafe_integers_are_refused() {
        assert!(to_canonical_string(&json!(1.5)).is_err());
        assert!(to_canonical_string(&json!(MAX_SAFE_INTEGER + 1)).is_err());
        assert!(to_canonical_string(&json!(MAX_SAFE_INTEGER)).is_ok());
    }
}
