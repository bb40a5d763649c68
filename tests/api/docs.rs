//! The OpenAPI document and Swagger UI.

use gatehouse_tests::{Backend, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_each_one_is_served() {
    let app = spawn_app(Backend::Sqlite).await;

    let response = app.get("/api-docs/openapi.json", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    for expected in ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/users/me", "/health/live", "/health/ready"]
    {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let url = app.url(&path.replace("{id}", &uuid::Uuid::now_v7().to_string()));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let response = app.client.request(method.clone(), url).send().await.expect("sent");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                !(status == StatusCode::NOT_FOUND && body["detail"] == "No such resource."),
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app(Backend::Sqlite).await;

    let response = app.get("/docs/", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "the Swagger UI page");
    let response = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(response.status(), StatusCode::OK, "assets are embedded, no CDN");
}

#[tokio::test]
async fn the_documented_docs_address_without_a_slash_leads_to_swagger_ui() {
    let app = spawn_app(Backend::Sqlite).await;
    let readme = include_str!("../../README.md");
    assert!(readme.contains("http://127.0.0.1:8080/docs>"), "the README points at /docs");

    let response = app.get("/docs", None).await;

    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT, "/docs redirects");
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(location.as_deref(), Some("/docs/"));
    let followed = reqwest::get(app.url("/docs")).await.expect("the redirect is followed");
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(followed.url().path(), "/docs/");
    assert!(followed.text().await.expect("html").contains("swagger-ui"), "the Swagger UI page");
}

/// The example of `status` with `name` in the served document, following a shared response.
fn documented_example(doc: &Value, path: &str, method: &str, status: &str, name: &str) -> Value {
    let mut response = &doc["paths"][path][method]["responses"][status];
    if let Some(reference) = response["$ref"].as_str() {
        response = doc.pointer(reference.trim_start_matches('#')).expect("the shared response exists");
    }
    let example = &response["content"]["application/problem+json"]["examples"][name]["value"];
    assert!(example.is_object(), "{method} {path} documents a {status} example named {name}");
    example.clone()
}

#[tokio::test]
async fn documented_error_examples_are_the_bodies_the_server_sends() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app.get("/api-docs/openapi.json", None).await.json().await.expect("json");
    app.register_user("ada@example.com").await;

    let cases = [
        ("/api/v1/users/me", "get", "401", "unauthorized", app.get("/api/v1/users/me", None).await),
        (
            "/api/v1/auth/login",
            "post",
            "401",
            "invalid_credentials",
            app.login(&json!({"email": "nobody@example.com", "password": "not the password"})).await,
        ),
        (
            "/api/v1/auth/register",
            "post",
            "409",
            "email_taken",
            app.register(&json!({"email": "ada@example.com", "password": "another long passphrase"})).await,
        ),
        (
            "/api/v1/auth/register",
            "post",
            "400",
            "malformed_request",
            app.client
                .post(app.url("/api/v1/auth/register"))
                .header("content-type", "application/json")
                .body(r#"{"email": "ada@example.com" "password": "x"}"#)
                .send()
                .await
                .expect("sent"),
        ),
        (
            "/api/v1/auth/register",
            "post",
            "415",
            "unsupported_media_type",
            app.client.post(app.url("/api/v1/auth/register")).body("ada@example.com").send().await.expect("sent"),
        ),
        (
            "/api/v1/users",
            "get",
            "403",
            "forbidden",
            app.get("/api/v1/users", Some(&app.access_token("ada@example.com").await)).await,
        ),
        (
            "/api/v1/auth/verify-email",
            "post",
            "400",
            "invalid_token",
            app.post_json("/api/v1/auth/verify-email", &json!({"token": "not-a-token"})).await,
        ),
        (
            "/api/v1/auth/refresh",
            "post",
            "400",
            "malformed_query",
            app.client
                .post(app.url("/api/v1/auth/refresh?cookie=maybe"))
                .json(&json!({"refresh_token": "x"}))
                .send()
                .await
                .expect("sent"),
        ),
    ];

    for (path, method, status, name, response) in cases {
        assert_eq!(response.status().as_str(), status, "{method} {path}");
        let sent: Value = response.json().await.expect("a problem body");
        assert_eq!(sent, documented_example(&doc, path, method, status, name), "{method} {path}: the {name} example");
    }
}
