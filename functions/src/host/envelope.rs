//! The custom-handler payloads, decoded tolerantly: string values may be JSON-serialised a
//! second time, scalars may arrive as strings, bodies may be base64.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// A queue message's text: a JSON string holding our JSON (possibly encoded twice), or the
/// JSON object itself.
pub fn queue_message_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => {
            let mut text = text.clone();
            // Unwrap extra layers of JSON string encoding.
            while let Ok(Value::String(inner)) = serde_json::from_str::<Value>(&text) {
                text = inner;
            }
            Some(text)
        }
        Value::Object(_) | Value::Array(_) => Some(value.to_string()),
        _ => None,
    }
}

/// A number that may arrive as a number or a string.
pub fn lenient_u32(value: Option<&Value>) -> Option<u32> {
    match value? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().trim_matches('"').parse().ok(),
        _ => None,
    }
}

/// A boolean that may arrive as a bool or a string.
pub fn lenient_bool(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A text field that may arrive double-encoded.
pub fn lenient_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => Some(inner),
            _ => Some(s.clone()),
        },
        other => Some(other.to_string()),
    }
}

/// The response envelope.
pub fn response(outputs: Value, logs: Vec<String>) -> Value {
    json!({ "Outputs": outputs, "Logs": logs, "ReturnValue": Value::Null })
}

/// An HTTP output binding value: status code as a string, headers, and the body as JSON
/// when it is JSON (so a body that looks like base64 is never decoded by the host).
pub fn http_output(status: u16, headers: BTreeMap<String, String>, body: &[u8]) -> Value {
    let is_json = headers
        .get("content-type")
        .is_some_and(|t| t.contains("json"));
    let body = match (is_json, serde_json::from_slice::<Value>(body)) {
        (true, Ok(value)) => value,
        _ => Value::String(String::from_utf8_lossy(body).into_owned()),
    };
    json!({ "statusCode": status.to_string(), "headers": headers, "body": body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_decode_however_the_host_wraps_them() {
        let ours = r#"{"v":1,"kind":"Activity"}"#;
        assert_eq!(queue_message_text(&json!(ours)).unwrap(), ours);
        let twice = serde_json::to_string(ours).unwrap();
        assert_eq!(queue_message_text(&json!(twice)).unwrap(), ours);
        assert_eq!(queue_message_text(&json!({"v": 1})).unwrap(), r#"{"v":1}"#);
        assert_eq!(queue_message_text(&json!("hello")).unwrap(), "hello");
        assert_eq!(queue_message_text(&json!("\"hello\"")).unwrap(), "hello");
        assert_eq!(queue_message_text(&json!(3)), None);
    }

    #[test]
    fn scalars_arrive_as_numbers_or_strings() {
        assert_eq!(lenient_u32(Some(&json!("3"))), Some(3));
        assert_eq!(lenient_u32(Some(&json!(4))), Some(4));
        assert_eq!(lenient_u32(Some(&json!("x"))), None);
        assert!(lenient_bool(Some(&json!("True"))));
        assert!(!lenient_bool(None));
    }
}
