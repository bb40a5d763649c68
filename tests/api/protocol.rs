//! HTTP-level behaviour every endpoint shares: problem bodies, request ids, limits.

use gatehouse_tests::{Backend, PASSWORD, assert_problem, on_both_backends, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

on_both_backends!(
    malformed_json_is_a_malformed_request,
    a_body_that_is_not_json_is_an_unsupported_media_type,
    a_body_over_the_limit_is_refused,
    an_unknown_route_is_a_not_found_problem,
    a_wrong_method_is_a_method_not_allowed_problem,
    every_response_carries_a_request_id,
);

async fn malformed_json_is_a_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in ["{", "{\"email\": }", "not json", "{\"email\": \"a@example.com\",}", ""] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_problem(response, StatusCode::BAD_REQUEST, "malformed_request").await;
    }
}

async fn a_body_that_is_not_json_is_an_unsupported_media_type(backend: Backend) {
    let app = spawn_app(backend).await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("content-type", content_type)
            .body(r#"{"email":"a@example.com","password":"x"}"#)
            .send()
            .await
            .expect("sent");
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
}

async fn a_body_over_the_limit_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let huge = "x".repeat(70 * 1024);

    let response = app.register(&json!({"email": "ada@example.com", "password": PASSWORD, "display_name": huge})).await;

    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

async fn an_unknown_route_is_a_not_found_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/", "/api/v1/nope", "/api/v1/users/me/nope", "/health"] {
        let response = app.get(path, None).await;
        assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

async fn a_wrong_method_is_a_method_not_allowed_problem(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/api/v1/auth/login", None).await;
    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert_eq!(allow.as_deref(), Some("POST"));

    let response = app.client.delete(app.url("/health/live")).send().await.expect("sent");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    // `/users/{id}/avatar` would take `me` as an id; the path names `/users/me/avatar`, which
    // has no GET. A malformed id elsewhere is still a 404.
    app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    let response = app.get("/api/v1/users/me/avatar", Some(&token)).await;
    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert_eq!(allow.as_deref(), Some("PUT, DELETE"));
    let response = app.get("/api/v1/users/not-an-id/avatar", Some(&token)).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}

async fn every_response_carries_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;

    let generated = app.get("/health/live", None).await;
    let echoed = app.client.get(app.url("/health/live")).header("x-request-id", "abc-123").send().await.expect("sent");
    let replaced =
        app.client.get(app.url("/nope")).header("x-request-id", "bad id\twith spaces").send().await.expect("sent");

    let id = |r: &reqwest::Response| r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(id(&generated).is_some_and(|v| uuid::Uuid::parse_str(&v).is_ok()), "{:?}", id(&generated));
    assert_eq!(id(&echoed).as_deref(), Some("abc-123"));
    assert!(id(&replaced).is_some_and(|v| v != "bad id\twith spaces"), "an unsafe id is replaced");
}
