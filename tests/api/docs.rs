//! The OpenAPI document and Swagger UI.

use gatehouse_tests::{Backend, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

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
