//! Canonical JSON as the Go Notary clients produce it (docker/go `canonical/json`): object
//! keys sorted by their bytes, no whitespace, strings escaping only `"` and `\` (control
//! characters and non-ASCII written as they are, no Unicode normalisation), integers only
//! (an integral float is written as an integer, any other is an error). Signatures are
//! made and checked over these bytes of the re-decoded `signed` object, never over a
//! file's own bytes.

use serde_json::{Number, Value};

/// Why a value has no canonical form.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("canonical JSON has no form for the non-integral number {0}")]
    Float(String),
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value)?;
    Ok(out)
}

fn write(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &Number) -> Result<(), CanonicalError> {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else {
        // Go decodes every number into a float64 and writes an integral one as an int64.
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() != 0.0 || !f.is_finite() || f.abs() >= 9.2e18 {
            return Err(CanonicalError::Float(n.to_string()));
        }
        out.extend_from_slice((f as i64).to_string().as_bytes());
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_by_bytes_and_writes_no_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x"], "B": {"z": 0, "_type": "Root"}});
        assert_eq!(
            to_vec(&v).unwrap(),
            br#"{"B":{"_type":"Root","z":0},"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let v = json!("a\"b\\c\n\u{1}é<>&");
        assert_eq!(to_vec(&v).unwrap(), "\"a\\\"b\\\\c\n\u{1}é<>&\"".as_bytes());
    }

    #[test]
    fn integral_floats_are_integers_and_others_are_refused() {
        let v: Value =
            serde_json::from_str(r#"{"n": 3.0, "m": -12, "u": 18446744073709551615}"#).unwrap();
        assert_eq!(
            to_vec(&v).unwrap(),
            br#"{"m":-12,"n":3,"u":18446744073709551615}"#
        );
        let f: Value = serde_json::from_str("1.5").unwrap();
        assert_eq!(to_vec(&f), Err(CanonicalError::Float("1.5".into())));
    }
}
