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

/// Headers that frame a message on one connection: the host and Kestrel set their own, and
/// a copied `content-length` that disagrees with the host's rendering makes Kestrel fail
/// the response.
const FRAMING_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// An HTTP output binding value: status code as a string, headers without framing ones, an
/// explicit content type, and the body as a string. The host writes a string body as is;
/// anything else it re-renders with `ToString()` (RawScriptResult.cs): JSON objects come
/// out re-indented, `true` as `True`, a JSON string without its quotes.
pub fn http_output(status: u16, mut headers: BTreeMap<String, String>, body: &[u8]) -> Value {
    headers.retain(|name, _| !FRAMING_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
    if !body.is_empty()
        && !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        headers.insert("content-type".into(), "text/plain; charset=utf-8".into());
    }
    let body = String::from_utf8_lossy(body).into_owned();
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
    fn http_bodies_go_back_as_strings_without_framing_headers() {
        let headers = BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            ("content-length".to_owned(), "11".to_owned()),
            ("Transfer-Encoding".to_owned(), "chunked".to_owned()),
            (
                "location".to_owned(),
                "https://x/api/instances/a".to_owned(),
            ),
        ]);
        let out = http_output(202, headers, br#"{"a": true}"#);
        assert_eq!(out["statusCode"], "202");
        assert_eq!(out["body"], json!(r#"{"a": true}"#));
        let names: Vec<&str> = out["headers"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, ["content-type", "location"]);
        let plain = http_output(200, BTreeMap::new(), b"ok");
        assert_eq!(
            plain["headers"]["content-type"],
            "text/plain; charset=utf-8"
        );
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
