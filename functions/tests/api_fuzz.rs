//! Generated requests (random methods, paths, query strings, headers and bodies) never get a
//! 5xx, never panic the server, and leave it serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use proptest::prelude::*;
use support::{app, KEY};

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("instances".to_owned()),
        Just("orchestrators".to_owned()),
        Just("fan".to_owned()),
        Just("collect".to_owned()),
        Just("raiseEvent".to_owned()),
        Just("terminate".to_owned()),
        Just("restart".to_owned()),
        "[a-zA-Z0-9%#?._~-]{0,12}",
        "(%[0-9A-F]{2}){1,4}",
        "\\PC{0,6}".prop_map(|s| s.replace('/', "%2F")),
    ]
}

fn request() -> impl Strategy<Value = (String, String, String, bool, String)> {
    (
        prop_oneof![
            Just("GET"),
            Just("POST"),
            Just("DELETE"),
            Just("PUT"),
            Just("PATCH")
        ]
        .prop_map(str::to_owned),
        proptest::collection::vec(segment(), 0..5).prop_map(|s| format!("/api/{}", s.join("/"))),
        prop_oneof![
            Just(String::new()),
            Just("?showHistory=true".to_owned()),
            "\\?[a-zA-Z]{1,12}=[a-zA-Z0-9,:%-]{0,20}",
        ],
        any::<bool>(),
        prop_oneof![
            Just(String::new()),
            Just("{}".to_owned()),
            Just("12".to_owned()),
            Just("{\"a\":[1,2,{\"b\":null}]}".to_owned()),
            "\\PC{0,40}",
        ],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_gets_a_server_error((method, path, query, with_key, body) in request()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let app = app(16 * 1024);
            let uri = format!("{path}{query}");
            if axum::http::Uri::try_from(uri.as_str()).is_err() {
                return; // not a request a client can send
            }
            let key_header = [("x-functions-key", KEY), ("content-type", "application/json")];
            let headers: &[(&str, &str)] = if with_key { &key_header } else { &[] };
            let reply = app.call_with(&method, &uri, Some(&body), headers).await;
            assert!(reply.status.as_u16() < 500, "{method} {uri} {body:?} → {}: {:?}", reply.status, reply.body);
            // Still serving.
            let health = app.call("GET", "/api/instances", None).await;
            assert_eq!(health.status, StatusCode::OK);
            app.worker.shutdown().await;
        });
    }
}
