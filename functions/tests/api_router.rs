//! Every endpoint of the management API in process (no socket): success and each
//! documented error code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::{app, KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_name_the_configured_origin_whatever_host_the_caller_sends() {
    let app = app(1 << 20);
    let reply = app
        .call_with(
            "POST",
            "/api/orchestrators/fan",
            Some("3"),
            &[
                ("x-functions-key", KEY),
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "gopher"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    for (field, url) in reply.body.as_object().unwrap() {
        if field != "id" {
            assert!(
                url.as_str().unwrap().starts_with("http://app.test/api/"),
                "{field}: {url}"
            );
        }
    }
    assert!(reply.headers["location"]
        .to_str()
        .unwrap()
        .starts_with("http://app.test/api/"));
    // Without it the runtime's drop can wait on the worker's blocking work (a hang seen).
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_a_code_and_durable_functions_fields_and_are_json_for_405_and_413() {
    let app = app(64);
    let unknown = app.call("POST", "/api/orchestrators/nope", Some("1")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["code"], "UnknownOrchestration");
    assert_eq!(unknown.body["ExceptionMessage"], unknown.body["error"]);
    let too_big = "1".repeat(100);
    let large = app
        .call("POST", "/api/orchestrators/fan", Some(&too_big))
        .await;
    assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(large.body["code"], "BodyTooLarge", "{:?}", large.body);
    let wrong = app.call("PUT", "/api/instances/x", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.body["code"], "MethodNotAllowed", "{:?}", wrong.body);
    let listed = app.call("GET", "/api/instances/", None).await;
    assert_eq!(listed.status, StatusCode::OK, "the clients' trailing slash");
    // A failed instance's status carries its failure with the engine's FFD code.
    let started = app
        .call("POST", "/api/orchestrators/fan", Some("\"x\""))
        .await;
    let id = started.body["id"].as_str().unwrap().to_owned();
    let failed = app.poll_until_done(&id).await;
    assert_eq!(failed.body["runtimeStatus"], "Failed");
    let details = &failed.body["failureDetails"];
    assert_eq!(details["errorType"], "InputDeserialization", "{details}");
    assert_eq!(details["errorCode"], "FFD-DA01");
    assert_eq!(details["isNonRetriable"], true);
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_answers_202_with_the_check_status_body_and_polling_reaches_200() {
    let app = app(1 << 20);
    let reply = app.call("POST", "/api/orchestrators/fan", Some("25")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let status_uri = format!("http://app.test/api/instances/{id}");
    assert_eq!(reply.body["statusQueryGetUri"], json!(status_uri));
    // Location long-polls (the 202 pattern's poller learns of the end when it happens);
    // statusQueryGetUri is the plain status.
    assert_eq!(
        reply.headers["location"],
        format!("{status_uri}?waitSeconds=10").as_str()
    );
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        reply.body["sendEventPostUri"],
        json!(format!("{status_uri}/raiseEvent/{{eventName}}"))
    );
    assert_eq!(
        reply.body["terminatePostUri"],
        json!(format!("{status_uri}/terminate?reason={{text}}"))
    );
    for field in [
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
        "rewindPostUri",
    ] {
        assert!(
            reply.body[field].as_str().unwrap().starts_with(&status_uri),
            "{field}"
        );
    }
    // Following Location as the 202 pattern says (each GET waits up to 10 s for the end)
    // reaches the finished status.
    let mut location = reply.headers["location"].to_str().unwrap().to_owned();
    let followed = loop {
        let answer = app
            .call("GET", location.trim_start_matches("http://app.test"), None)
            .await;
        if answer.status != StatusCode::ACCEPTED {
            break answer;
        }
        location = answer.headers["location"].to_str().unwrap().to_owned();
    };
    assert_eq!(followed.status, StatusCode::OK, "{:?}", followed.body);
    assert_eq!(followed.body["runtimeStatus"], "Completed");
    let done = app.poll_until_done(&id).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["runtimeStatus"], "Completed");
    assert_eq!(done.body["output"], json!(flowforge_tests::fan_sum(25)));
    assert_eq!(done.body["input"], json!(25));
    assert_eq!(done.body["name"], "fan");
    let created = done.body["createdTime"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.len() == 20,
        "Durable Functions' format: {created}"
    );

    let with_history = app
        .call(
            "GET",
            &format!("/api/instances/{id}?showHistory=true&showHistoryOutput=true"),
            None,
        )
        .await;
    let events = with_history.body["historyEvents"].as_array().unwrap();
    assert_eq!(events[0]["EventType"], "ExecutionStarted");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["EventType"] == "TaskCompleted")
            .count(),
        25
    );
    assert_eq!(events.last().unwrap()["EventType"], "ExecutionCompleted");
    assert!(with_history.body.get("historyNext").is_none());

    // The same history a page at a time: `historyNext` leads from page to page, the pages
    // together are the whole history, and the last page has no `historyNext`.
    let mut paged = Vec::new();
    let mut from = Some(0);
    let mut pages = 0;
    while let Some(at) = from {
        let page = app
            .call(
                "GET",
                &format!("/api/instances/{id}?showHistory=true&showHistoryOutput=true&historyTop=20&historyFrom={at}"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        paged.extend(page.body["historyEvents"].as_array().unwrap().clone());
        from = page
            .body
            .get("historyNext")
            .and_then(serde_json::Value::as_u64);
        pages += 1;
    }
    assert!(pages > 2, "{pages} pages");
    assert_eq!(&paged, events);
    // Below 0 and above the document's maximum (2^53 - 1) are refused alike.
    for from in ["-1", "9007199254740992"] {
        let bad = app
            .call(
                "GET",
                &format!("/api/instances/{id}?showHistory=true&historyTop=20&historyFrom={from}"),
                None,
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{:?}", bad.body);
        assert!(bad.body["error"].as_str().unwrap().contains("historyFrom"));
    }
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_instances_answer_202_and_take_events_suspend_resume_terminate() {
    let app = app(1 << 20);
    let reply = app
        .call("POST", "/api/orchestrators/collect/web-1", Some("2"))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let running = app.call("GET", "/api/instances/web-1", None).await;
    assert_eq!(running.status, StatusCode::ACCEPTED);
    assert!(running.headers.contains_key("location"));
    let again = app
        .call("POST", "/api/orchestrators/collect/web-1", Some("2"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);

    assert_eq!(
        app.call("POST", "/api/instances/web-1/suspend?reason=look", None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.call(
            "POST",
            "/api/instances/web-1/raiseEvent/item",
            Some("{\"a\":1}")
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.call("POST", "/api/instances/web-1/resume?reason=go", None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.call("POST", "/api/instances/web-1/raiseEvent/item", Some("2"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let done = app.poll_until_done("web-1").await;
    assert_eq!(done.body["output"], json!([{"a": 1}, 2]));
    let gone = app
        .call("POST", "/api/instances/web-1/raiseEvent/item", Some("3"))
        .await;
    assert_eq!(gone.status, StatusCode::GONE, "{:?}", gone.body);
    assert_eq!(
        app.call("POST", "/api/instances/web-1/terminate?reason=x", None)
            .await
            .status,
        StatusCode::GONE
    );

    app.call("POST", "/api/orchestrators/collect/web-2", Some("5"))
        .await;
    assert_eq!(
        app.call("POST", "/api/instances/web-2/terminate?reason=enough", None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let done = app.poll_until_done("web-2").await;
    assert_eq!(done.body["runtimeStatus"], "Terminated");
    assert_eq!(done.body["output"], "enough");

    let restarted = app
        .call(
            "POST",
            "/api/instances/web-2/restart?restartWithNewInstanceId=false",
            None,
        )
        .await;
    assert_eq!(restarted.status, StatusCode::ACCEPTED);
    assert_eq!(restarted.body["id"], "web-2");
    let fresh = app.call("POST", "/api/instances/web-1/restart", None).await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert_ne!(fresh.body["id"], "web-1");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_the_continuation_header_and_purge() {
    let app = app(1 << 20);
    for i in 0..7 {
        app.call(
            "POST",
            &format!("/api/orchestrators/fan/page-{i}"),
            Some("1"),
        )
        .await;
        app.poll_until_done(&format!("page-{i}")).await;
    }
    app.call("POST", "/api/orchestrators/collect/page-running", Some("1"))
        .await;
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut headers = vec![("x-functions-key", KEY)];
        if let Some(t) = &token {
            headers.push(("x-ms-continuation-token", t.as_str()));
        }
        let reply = app
            .call_with(
                "GET",
                "/api/instances?runtimeStatus=Completed&instanceIdPrefix=page-&top=3",
                None,
                &headers,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let page = reply.body.as_array().unwrap();
        assert!(page.len() <= 3);
        ids.extend(
            page.iter()
                .map(|s| s["instanceId"].as_str().unwrap().to_owned()),
        );
        token = reply
            .headers
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_owned());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(ids, (0..7).map(|i| format!("page-{i}")).collect::<Vec<_>>());

    let purged = app.call("DELETE", "/api/instances/page-0", None).await;
    assert_eq!(
        (purged.status, purged.body.clone()),
        (StatusCode::OK, json!({"instancesDeleted": 1}))
    );
    assert_eq!(
        app.call("GET", "/api/instances/page-0", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call("DELETE", "/api/instances/page-running", None)
            .await
            .status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.call("DELETE", "/api/instances", None).await.status,
        StatusCode::BAD_REQUEST
    );
    let many = app
        .call(
            "DELETE",
            "/api/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Completed",
            None,
        )
        .await;
    assert_eq!(
        (many.status, many.body.clone()),
        (StatusCode::OK, json!({"instancesDeleted": 6}))
    );
    let none = app
        .call(
            "DELETE",
            "/api/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Completed",
            None,
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_error_code() {
    let app = app(64 * 1024);
    let cases: Vec<(&str, &str, Option<&str>, StatusCode)> = vec![
        ("GET", "/api/instances/nope", None, StatusCode::NOT_FOUND),
        (
            "POST",
            "/api/instances/nope/raiseEvent/x",
            Some("1"),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/instances/nope/terminate",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/instances/nope/suspend",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/instances/nope/resume",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/instances/nope/restart",
            None,
            StatusCode::NOT_FOUND,
        ),
        ("DELETE", "/api/instances/nope", None, StatusCode::NOT_FOUND),
        (
            "POST",
            "/api/orchestrators/fan",
            Some("{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/orchestrators/no-such-orchestration",
            Some("1"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/orchestrators/fan/a%23b",
            Some("1"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/orchestrators/fan/a%3Fb",
            Some("1"),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/api/instances/a%5Cb", None, StatusCode::BAD_REQUEST),
        (
            "GET",
            "/api/instances?runtimeStatus=Sleeping",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/instances?createdTimeFrom=yesterday",
            None,
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/api/instances?top=0", None, StatusCode::BAD_REQUEST),
        (
            "GET",
            "/api/instances/x?showHistory=maybe",
            None,
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/api/no/such/route", None, StatusCode::NOT_FOUND),
    ];
    for (method, uri, body, expected) in cases {
        let reply = app.call(method, uri, body).await;
        assert_eq!(reply.status, expected, "{method} {uri}: {:?}", reply.body);
        let message = reply.body["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "{method} {uri}: an error says what is wrong: {:?}",
            reply.body
        );
    }
    // Wrong content type.
    let reply = app
        .call_with(
            "POST",
            "/api/orchestrators/fan",
            Some("1"),
            &[("x-functions-key", KEY), ("content-type", "text/plain")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["error"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    // Raise-event with a body that is not JSON.
    app.call("POST", "/api/orchestrators/collect/err-1", Some("1"))
        .await;
    assert_eq!(
        app.call("POST", "/api/instances/err-1/raiseEvent/item", Some("oops"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // Too large.
    let big = format!("\"{}\"", "x".repeat(70 * 1024));
    assert_eq!(
        app.call("POST", "/api/orchestrators/fan", Some(&big))
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_required_as_header_or_code_parameter() {
    let app = app(1 << 20);
    let none = app.call_with("GET", "/api/instances", None, &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(
        !none.body["error"].as_str().unwrap().contains(KEY),
        "never echo the key"
    );
    let wrong = app
        .call_with(
            "GET",
            "/api/instances",
            None,
            &[("x-functions-key", "guess")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let header = app
        .call_with("GET", "/api/instances", None, &[("x-functions-key", KEY)])
        .await;
    assert_eq!(header.status, StatusCode::OK);
    let code = app
        .call_with("GET", &format!("/api/instances?code={KEY}"), None, &[])
        .await;
    assert_eq!(code.status, StatusCode::OK);
    let start = app
        .call_with("POST", "/api/orchestrators/fan", Some("1"), &[])
        .await;
    assert_eq!(
        start.status,
        StatusCode::UNAUTHORIZED,
        "nothing starts without the key"
    );
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_matches_the_routes() {
    let app = app(1 << 20);
    let reply = app.call_with("GET", "/api/openapi.json", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let paths: Vec<&String> = reply.body["paths"].as_object().unwrap().keys().collect();
    let served = [
        "/orchestrators/{name}",
        "/orchestrators/{name}/{instanceId}",
        "/instances",
        "/instances/",
        "/instances/{instanceId}",
        "/instances/{instanceId}/raiseEvent/{eventName}",
        "/instances/{instanceId}/terminate",
        "/instances/{instanceId}/suspend",
        "/instances/{instanceId}/resume",
        "/instances/{instanceId}/rewind",
        "/instances/{instanceId}/restart",
        "/instances/{instanceId}/logs",
        "/deadletters",
        "/deadletters/{id}",
        "/deadletters/{id}/requeue",
        "/schedules",
        "/schedules/{name}",
        "/schedules/{name}/pause",
        "/schedules/{name}/resume",
        "/schedules/{name}/backfill",
        "/schedules/{name}/trigger",
        "/eventgrid/landing",
        "/openapi.json",
    ];
    let mut documented: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
    documented.sort();
    let mut expected = served.to_vec();
    expected.sort();
    assert_eq!(documented, expected);
    // The served document is the one in the repository, with the registered
    // orchestrations as the start routes' `name` enum.
    let mut served = reply.body.clone();
    for route in [
        "/orchestrators/{name}",
        "/orchestrators/{name}/{instanceId}",
    ] {
        let name = served["paths"][route]["post"]["parameters"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["name"] == "name")
            .unwrap();
        let names = name["schema"].as_object_mut().unwrap().remove("enum");
        assert!(names.unwrap().as_array().unwrap().contains(&json!("fan")));
    }
    let names = served["components"]["schemas"]["ScheduleSpec"]["properties"]["orchestration"]
        .as_object_mut()
        .unwrap()
        .remove("enum");
    assert!(names.unwrap().as_array().unwrap().contains(&json!("fan")));
    let file: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    assert_eq!(
        file, served,
        "the served document is the one in the repository"
    );
    app.worker.shutdown().await;
}

#[tokio::test]
async fn schedules_and_the_dashboard_are_behind_the_key() {
    let app = app(1 << 20);
    let reply = app.call("GET", "/api/schedules", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let nightly = &reply.body[0];
    assert_eq!(nightly["name"], "nightly");
    assert_eq!(nightly["cron"], "0 30 2 * * *");
    assert_eq!(nightly["next"].as_array().unwrap().len(), 5);
    let recent = nightly["recent"].as_array().unwrap();
    assert_eq!(
        recent.len(),
        5,
        "a daily schedule has five in the last week"
    );
    assert!(recent.iter().all(|r| r["runtimeStatus"].is_null()));
    assert!(recent[0]["instanceId"]
        .as_str()
        .unwrap()
        .starts_with("schedule-nightly-"));
    for path in ["/api/schedules", "/api/ui/"] {
        let refused = app.call_with("GET", path, None, &[]).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let page = app.call("GET", "/api/ui/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'nonce-"),
        "{csp}"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    let html = page.body.as_str().unwrap();
    assert!(html.contains(&format!("<script type=\"module\" nonce=\"{nonce}\">")));
    assert!(!html.contains("{{"), "every placeholder filled");
    let again = app.call("GET", "/api/ui/", None).await;
    let other = again.headers["content-security-policy"].to_str().unwrap();
    assert_ne!(csp, other, "a fresh nonce per response");
    app.worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_logs_answer_per_instance_and_refuse_bad_paging() {
    let app = app(1 << 20);
    let started = app
        .call("POST", "/api/orchestrators/fan/logs-1", Some("2"))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_until_done("logs-1").await.status, StatusCode::OK);
    let logs = app.call("GET", "/api/instances/logs-1/logs", None).await;
    assert_eq!(logs.status, StatusCode::OK, "{}", logs.body);
    assert_eq!(logs.body["instanceId"], "logs-1");
    assert!(logs.body["attempts"].is_array(), "{}", logs.body);
    let unknown = app.call("GET", "/api/instances/nobody/logs", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body["code"].as_str().is_some(), "{}", unknown.body);
    for bad in ["top=0", "top=1001", "top=many"] {
        let reply = app
            .call("GET", &format!("/api/instances/logs-1/logs?{bad}"), None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
        assert!(reply.body["code"].as_str().is_some(), "{}", reply.body);
    }
    let keyless = app
        .call_with("GET", "/api/instances/logs-1/logs", None, &[])
        .await;
    assert_eq!(keyless.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_seconds_answers_with_the_finished_status_instead_of_a_poll() {
    let app = app(1 << 20);
    // Start and wait: the finished status, 200, instead of the check-status 202.
    let started = app
        .call(
            "POST",
            "/api/orchestrators/fan/waited-fan?waitSeconds=30",
            Some("3"),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{:?}", started.body);
    assert_eq!(started.body["runtimeStatus"], "Completed");
    assert_eq!(started.body["output"], json!(flowforge_tests::fan_sum(3)));
    // A long poll on a run waiting for an event answers once the event finishes it.
    let started = app
        .call(
            "POST",
            "/api/orchestrators/collect/waited-collect?waitSeconds=0",
            Some("1"),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let (polled, raised) = tokio::join!(
        app.call("GET", "/api/instances/waited-collect?waitSeconds=30", None),
        app.call(
            "POST",
            "/api/instances/waited-collect/raiseEvent/item",
            Some("\"x\"")
        ),
    );
    assert_eq!(raised.status, StatusCode::ACCEPTED);
    assert_eq!(polled.status, StatusCode::OK, "{:?}", polled.body);
    assert_eq!(polled.body["runtimeStatus"], "Completed");
    assert_eq!(polled.body["output"], json!(["x"]));
    let too_long = app
        .call("GET", "/api/instances/waited-collect?waitSeconds=61", None)
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    app.worker.shutdown().await;
}
