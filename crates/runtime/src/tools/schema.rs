//! A deliberately small JSON-Schema check for model-supplied arguments: object shape, `required`,
//! `additionalProperties: false`, and per-property `type`, `enum`, `minimum`/`maximum`,
//! `maxLength`. Enough for the manifests crewgate writes; anything it does not understand passes.

use serde_json::{Map, Value};

/// Checks `args` against `schema`; the error says what to fix, for the model.
pub fn validate_arguments(schema: &Value, args: &Value) -> Result<(), String> {
    check(schema, args, "arguments")
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else { return Ok(()) };
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, value),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, value)),
            _ => true,
        };
        if !ok {
            return Err(format!("{path} must be of type {t}, got {}", type_name(value)));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!("{path} must be one of {}", Value::Array(allowed.clone())));
    }
    if let Some(n) = value.as_f64() {
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
    }
    if let (Some(s), Some(max)) = (value.as_str(), schema.get("maxLength").and_then(Value::as_u64))
        && u64::try_from(s.chars().count()).unwrap_or(u64::MAX) > max
    {
        return Err(format!("{path} must be at most {max} characters long"));
    }
    if let Some(obj) = value.as_object() {
        check_object(schema, obj, path)?;
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
    for (key, v) in obj {
        match props.and_then(|p| p.get(key)) {
            Some(sub) => check(sub, v, &format!("{path}.{key}"))?,
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<&str> =
                    props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                return Err(format!("{path} has an unknown property {key:?}; known: {known:?}"));
            }
            None => {}
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
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_valid_and_explains_invalid() {
        let schema = json!({
            "type": "object",
            "properties": {
                "days": {"type": "integer", "minimum": 1, "maximum": 31},
                "kind": {"type": "string", "enum": ["a", "b"]},
                "q": {"type": "string", "maxLength": 3}
            },
            "required": ["days"],
            "additionalProperties": false
        });
        assert_eq!(validate_arguments(&schema, &json!({"days": 7})), Ok(()));
        assert_eq!(validate_arguments(&schema, &json!({"days": 7.0, "kind": "b", "q": "abc"})), Ok(()));
        let cases = [
            (json!([]), "must be of type \"object\", got array"),
            (json!({}), "lacks the required property \"days\""),
            (json!({"days": "7"}), "arguments.days must be of type \"integer\", got string"),
            (json!({"days": 0}), "at least 1"),
            (json!({"days": 40}), "at most 31"),
            (json!({"days": 1, "kind": "c"}), "one of [\"a\",\"b\"]"),
            (json!({"days": 1, "q": "abcd"}), "at most 3 characters"),
            (json!({"days": 1, "evil": true}), "unknown property \"evil\""),
        ];
        for (args, needle) in cases {
            let err = validate_arguments(&schema, &args).unwrap_err();
            assert!(err.contains(needle), "{args}: {err}");
        }
    }
}
