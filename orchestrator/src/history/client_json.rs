//! Values a client sent (an orchestration's input, an event's data), decoded into the type
//! the code asks for. Durable Functions' Python client JSON-encodes them once more than
//! needed (`"{\"a\": 1}"` for `{"a": 1}`), as the extension stores them for its Python
//! SDK, which decodes twice. A Rust orchestration gets the value it declared either way:
//!
//! - a string that is itself a JSON string literal (`"\"hello\""`) is taken as that string;
//! - otherwise the value is decoded as sent, and only if that fails and it is a string
//!   holding JSON is the JSON inside decoded instead.
//!
//! So a genuine string input stays as sent, unless it is exactly a quoted JSON string,
//! the one shape that cannot be told apart.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes a client-sent value into `T`, accepting one extra layer of JSON encoding.
pub fn decode_client_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    let inner = match &value {
        Value::String(text) => serde_json::from_str::<Value>(text).ok(),
        _ => None,
    };
    if let Some(Value::String(unquoted)) = &inner {
        if let Ok(decoded) = serde_json::from_value(Value::String(unquoted.clone())) {
            return Ok(decoded);
        }
    }
    match serde_json::from_value(value) {
        Ok(decoded) => Ok(decoded),
        Err(error) => match inner {
            Some(inner) => serde_json::from_value(inner).map_err(|_| error),
            None => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Files {
        files: Vec<String>,
    }

    #[test]
    fn a_doubly_encoded_object_decodes_as_the_object() {
        let sent = Value::String(r#"{"files": ["a.csv"]}"#.into());
        let files: Files = decode_client_value(sent).unwrap();
        assert_eq!(files.files, vec!["a.csv"]);
    }

    #[test]
    fn a_plain_object_decodes_as_sent() {
        let files: Files = decode_client_value(json!({"files": ["b.csv"]})).unwrap();
        assert_eq!(files.files, vec!["b.csv"]);
    }

    #[test]
    fn genuine_strings_stay_as_sent() {
        for text in ["hello", "5", "true", "{not json", "[1, 2]", "null"] {
            let got: String = decode_client_value(Value::String(text.into())).unwrap();
            assert_eq!(got, text);
        }
    }

    #[test]
    fn a_doubly_encoded_string_is_unquoted() {
        let got: String = decode_client_value(Value::String("\"approved\"".into())).unwrap();
        assert_eq!(got, "approved");
    }

    #[test]
    fn a_doubly_encoded_number_decodes_into_a_number() {
        let got: u64 = decode_client_value(Value::String("42".into())).unwrap();
        assert_eq!(got, 42);
        let kept: Value = decode_client_value(Value::String("42".into())).unwrap();
        assert_eq!(kept, json!("42"), "an untyped reader sees what was sent");
    }

    #[test]
    fn a_mismatch_reports_the_error_of_the_value_as_sent() {
        let error = decode_client_value::<Files>(json!({"other": 1})).unwrap_err();
        assert!(error.to_string().contains("files"), "{error}");
    }
}
