//! A small JSON-Schema validator for the subset our manifests use: `type`, `properties`,
//! `required`, `additionalProperties: false`, `enum`, `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `items`, `anyOf`, and `format`
//! (`date-time`, `date`, `email`). Hand-written because the `jsonschema` crate would pull a
//! regex engine and an HTTP stack for remote refs we never use. Keywords outside the subset are
//! ignored, so a manifest must not rely on them (a unit test checks every manifest only uses these).

use serde_json::{Map, Value};

#[cfg(test)]
pub(crate) const KNOWN_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "items",
    "anyOf",
    "format",
    "description",
    "default",
];

/// Checks `value` against `schema`; the message names the offending path, for the model.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "arguments")
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else { return Ok(()) };
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            return Err(format!("{path} must be {} (got {})", article(t), type_name(value)));
        }
        // `["string", "null"]`: any one of them.
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if !names.is_empty() && !names.iter().any(|t| type_matches(t, value)) {
                let wanted: Vec<String> = names.iter().map(|t| article(t)).collect();
                return Err(format!("{path} must be {} (got {})", wanted.join(" or "), type_name(value)));
            }
        }
        _ => {}
    }
    if let Some(Value::Array(options)) = schema.get("anyOf") {
        let mut reasons = Vec::new();
        for option in options {
            match check(option, value, path) {
                Ok(()) => {
                    reasons.clear();
                    break;
                }
                Err(e) => reasons.push(e),
            }
        }
        if !reasons.is_empty() {
            return Err(reasons.join("; or "));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{path} must be one of {}", list.join(", ")));
    }
    match value {
        Value::Number(n) => check_number(schema, n, path)?,
        Value::String(s) => check_string(schema, s, path)?,
        Value::Array(items) => check_array(schema, items, path)?,
        Value::Object(obj) => check_object(schema, obj, path)?,
        Value::Null | Value::Bool(_) => {}
    }
    Ok(())
}

fn check_number(schema: &Map<String, Value>, n: &serde_json::Number, path: &str) -> Result<(), String> {
    let Some(n) = n.as_f64() else { return Ok(()) };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        return Err(format!("{path} must be at least {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        return Err(format!("{path} must be at most {max}"));
    }
    Ok(())
}

fn check_string(schema: &Map<String, Value>, s: &str, path: &str) -> Result<(), String> {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        return Err(if min == 1 {
            format!("{path} must not be empty")
        } else {
            format!("{path} must be at least {min} characters long")
        });
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        return Err(format!("{path} must be at most {max} characters long"));
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") if !is_rfc3339_date_time(s) => {
            Err(format!("{path} must be an RFC 3339 date-time with offset, e.g. 2026-03-01T09:00:00+01:00"))
        }
        Some("date") if !is_date(s) => Err(format!("{path} must be a date YYYY-MM-DD")),
        Some("email") if !is_email(s) => Err(format!("{path} must be an e-mail address, got {s:?}")),
        _ => Ok(()),
    }
}

fn check_array(schema: &Map<String, Value>, items: &[Value], path: &str) -> Result<(), String> {
    let n = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        return Err(format!("{path} must have at least {min} item(s)"));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        return Err(format!("{path} must have at most {max} items"));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn check_object(schema: &Map<String, Value>, obj: &Map<String, Value>, path: &str) -> Result<(), String> {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                return Err(format!("{path} lacks the required property {key:?}"));
            }
        }
    }
    for (key, value) in obj {
        let child = format!("{path}.{key}");
        match props.and_then(|p| p.get(key)) {
            Some(sub) => check(sub, value, &child)?,
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let known: Vec<&str> =
                        props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    return Err(format!(
                        "{path} has an unknown property {key:?} (allowed: {})",
                        known.join(", ")
                    ));
                }
                Some(sub @ Value::Object(_)) => check(sub, value, &child)?,
                _ => {}
            },
        }
    }
    Ok(())
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        // 3.0 is an integer for JSON Schema; models sometimes send it.
        "integer" => {
            v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
    }
}

fn article(t: &str) -> String {
    match t {
        "object" | "array" | "integer" => format!("an {t}"),
        _ => format!("a {t}"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` with a plausible month and day.
pub(crate) fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (y, m, d) = (&s[0..4], &s[5..7], &s[8..10]);
    if !(digits(y) && digits(m) && digits(d)) {
        return false;
    }
    let (m, d) = (m.parse::<u8>().unwrap_or(0), d.parse::<u8>().unwrap_or(0));
    (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`. Google rejects times without
/// an offset, so we do too, before sending anything.
pub(crate) fn is_rfc3339_date_time(s: &str) -> bool {
    let Some((date, rest)) = s.split_once(['T', 't']) else { return false };
    if !is_date(date) || rest.len() < 9 {
        return false;
    }
    let (hms, zone) = rest.split_at(8);
    let h = hms.as_bytes();
    if h[2] != b':' || h[5] != b':' || !digits(&hms[0..2]) || !digits(&hms[3..5]) || !digits(&hms[6..8]) {
        return false;
    }
    let zone = match zone.strip_prefix('.') {
        Some(frac) => {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            &frac[n..]
        }
        None => zone,
    };
    if zone == "Z" || zone == "z" {
        return true;
    }
    let zb = zone.as_bytes();
    zb.len() == 6
        && (zb[0] == b'+' || zb[0] == b'-')
        && zb[3] == b':'
        && digits(&zone[1..3])
        && digits(&zone[4..6])
}

/// A bare address `local@domain.tld` without spaces, angle brackets or line breaks.
pub(crate) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>,;\"()[]\\".contains(c))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        assert!(is_rfc3339_date_time("2026-03-01T09:00:00+01:00"));
        assert!(is_rfc3339_date_time("2026-03-01T09:00:00.123Z"));
        assert!(!is_rfc3339_date_time("2026-03-01T09:00:00"));
        assert!(!is_rfc3339_date_time("2026-03-01 09:00"));
        assert!(is_date("2026-12-31"));
        assert!(!is_date("2026-13-01"));
        assert!(is_email("a.b+c@x.example"));
        assert!(!is_email("Ann <a@x.com>"));
        assert!(!is_email("a@x.com\r\nBcc: evil@y.com"));
    }

    #[test]
    fn messages_name_the_path() {
        let schema = json!({"type":"object","additionalProperties":false,"required":["to"],
            "properties":{"to":{"type":"array","items":{"type":"string","format":"email"}},"n":{"type":"integer","maximum":5}}});
        assert!(validate(&schema, &json!({"to":["a@b.co"]})).is_ok());
        let e = validate(&schema, &json!({"to":["nope"]})).unwrap_err();
        assert!(e.contains("arguments.to[0]"), "{e}");
        let e = validate(&schema, &json!({"to":[], "x":1})).unwrap_err();
        assert!(e.contains("unknown property \"x\""), "{e}");
        let e = validate(&schema, &json!({"to":[], "n": 9})).unwrap_err();
        assert!(e.contains("at most 5"), "{e}");
        assert!(validate(&schema, &json!({})).unwrap_err().contains("required property \"to\""));
        assert!(validate(&schema, &json!("x")).unwrap_err().contains("must be an object"));
    }

    #[test]
    fn a_list_of_types_accepts_any_of_them() {
        let schema = json!({"type": ["string", "null"], "maxLength": 2});
        assert!(validate(&schema, &json!("ab")).is_ok());
        assert!(validate(&schema, &Value::Null).is_ok());
        assert_eq!(
            validate(&schema, &json!(3)).unwrap_err(),
            "arguments must be a string or a null (got a number)"
        );
        assert!(validate(&schema, &json!("abc")).unwrap_err().contains("at most 2 characters"));
    }

    #[test]
    fn any_of() {
        let schema =
            json!({"anyOf":[{"type":"string","format":"date"},{"type":"string","format":"date-time"}]});
        assert!(validate(&schema, &json!("2026-01-02")).is_ok());
        assert!(validate(&schema, &json!("2026-01-02T10:00:00Z")).is_ok());
        assert!(validate(&schema, &json!("tomorrow")).is_err());
    }
}
